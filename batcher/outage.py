"""POSTs in a row without a clear answer: send one at a time, then stop (pure; time passed in).

A 5xx, a timeout or a reset on a POST is an unknown outcome: the provider may have started, and
billed, the job (``../shared/segmind-api.md``: no idempotency key). Each job retries its own POST
with backoff, but during an outage every row of the manifest does the same, at full concurrency:
a provider that accepts jobs and then answers 502 bills each of them up to ``retry.max_attempts``
times. So the run as a whole backs off too, as a circuit breaker does (Nygard, *Release It!*):

- **Closed**: POSTs go as usual. Any clear answer (accepted, refused, 429) resets the count.
- **Open**, after :data:`OPEN_AFTER` POSTs in a row without a clear answer: one POST at a time
  (a probe; the others wait, polls go on as usual), each spaced from the last answerless one by a
  backoff that doubles up to ``retry.max_delay``. The first clear answer closes it.
- **Given up**, after ``probes`` more answerless POSTs: the run stops submitting (in-flight jobs
  are still polled and downloaded) and the next run tries again. With the default retry settings
  that is after five to ten minutes of outage (probes 2, 4, 8 ... 120 s apart at most).

A POST that never connected is not counted either way: nothing left the machine, so nothing can
be billed (each job defers itself, see :mod:`batcher.actions`). Neither is one cut off by the run
stopping (a signal): that says nothing about the provider.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .backoff import backoff_ceiling

#: Answerless POSTs in a row that open the circuit.
OPEN_AFTER = 3


@dataclass
class SubmitCircuit:
    """Counts answerless POSTs in a row and says when the next may go (see the module notes)."""

    #: Backoff between probes: ``retry.base_delay`` doubling up to ``retry.max_delay``.
    base: float = 2.0
    cap: float = 120.0
    #: Answerless probes after opening before the run stops submitting.
    probes: int = 10
    rng: random.Random = field(default_factory=random.Random)
    #: POSTs in a row without a clear answer.
    streak: int = 0
    #: While open: when the next probe may go (the clock's monotonic seconds).
    next_probe: float = 0.0

    @property
    def open(self) -> bool:
        return self.streak >= OPEN_AFTER

    @property
    def given_up(self) -> bool:
        return self.streak >= OPEN_AFTER + self.probes

    def allows(self, now: float, submitting: int) -> bool:
        """Whether a POST may go at ``now`` with ``submitting`` POSTs in progress."""
        return self.streak < OPEN_AFTER or (submitting == 0 and now >= self.next_probe)

    def answered(self) -> None:
        """A clear answer: the provider is there. Closes the circuit."""
        self.streak = 0

    def no_answer(self, now: float) -> bool:
        """A POST without a clear answer at ``now``. True if this one opened the circuit."""
        self.streak += 1
        if self.streak < OPEN_AFTER:
            return False
        # Equal jitter: spread, but never back to back (full jitter may draw almost nothing).
        ceiling = backoff_ceiling(self.streak - OPEN_AFTER + 1, base=self.base, cap=self.cap)
        self.next_probe = now + self.rng.uniform(ceiling / 2, ceiling)
        return self.streak == OPEN_AFTER
