"""Rate control: when may the next request (submit or poll, one shared budget) go out?

A small strategy object (after aiometer's meters and Netflix concurrency-limits' limit classes):
the scheduler asks :meth:`RateController.wait_time`, calls :meth:`acquire` as it sends, and
reports each answer. Time is an argument, never read here, so a policy is testable as a table of
numbers and runs unchanged under a simulated clock at any time scale.
"""

from __future__ import annotations

import random
from typing import Protocol

from .backoff import full_jitter

#: Successes between two 429s that mean we are close to the limit (a gentle step down)...
NEAR_LIMIT_SUCCESSES = 32
#: ...and the cut of the current rate when we are not (the bound stays what was observed).
HARD_CUT = 0.7
#: ...while the bound tightens by this much each time.
TIGHTEN = 0.95


class RateController(Protocol):
    """The run's request budget."""

    def wait_time(self, now: float) -> float:
        """Seconds until the next request may be sent (0: now)."""
        ...

    def acquire(self, now: float) -> None:
        """A request is being sent now."""
        ...

    def on_success(self, now: float) -> None:
        """An answer that was not a 429 arrived."""
        ...

    def on_throttled(self, now: float, retry_after: float | None, sent_at: float | None = None) -> float:
        """A 429 arrived for a request sent at ``sent_at``; ``retry_after`` is what the server
        said, if anything. Returns the time until which the whole run pauses."""
        ...

    @property
    def rate(self) -> float:
        """The current target, in requests per second."""
        ...


class AdaptiveRate:
    """A token bucket that finds the account's limit and then stays just under it.

    - **Known limit** (``ceiling``, the plan's documented rate): paced at it, never faster.
    - **Unknown limit, before the first 429**: slow start, as TCP does: each success raises the
      rate by ``start_growth``, so the limit is reached in a few dozen requests at any time scale.
    - **Growth only when the rate is used**: the target rises (in every phase) only after a
      request had to wait for a token; a run that sends less than its target learns nothing
      about the limit from its successes (TCP's congestion window validation, RFC 7661).
    - **A 429**: the whole run pauses until the server's reset time (``Retry-After`` or
      ``x-rate-limit-reset-at-utc``), or for a fully jittered, growing backoff when it gave none.
      The rate we were sending at bounds the limit from above; the target drops just under that
      bound, and deeper for each 429 in a row. (Not AIMD's halving: a sawtooth between R/2 and R
      wastes a quarter of a scarce budget.)
    - **After that**: the target climbs back to just under the bound, then probes above it by
      ``probe`` per request, so a raised limit is found again at the cost of about one 429 every
      hundred requests, whatever the time scale.
    """

    def __init__(
        self,
        initial: float,
        *,
        ceiling: float | None = None,
        floor: float = 1 / 600,
        burst: int = 1,
        start_growth: float = 0.1,
        growth: float = 0.04,
        margin: float = 0.98,
        probe: float = 0.0002,
        backoff_base: float = 2.0,
        backoff_cap: float = 120.0,
        max_wait: float = 900.0,
        rng: random.Random | None = None,
    ) -> None:
        self._ceiling = ceiling
        self._rate = min(initial, ceiling) if ceiling else initial
        self._floor = floor
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._start_growth = start_growth
        self._growth = growth
        self._margin = margin
        self._probe = probe
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_wait = max_wait
        self._rng = rng or random.Random()
        #: The learned bound on the limit (requests/s), once a 429 has taught one.
        self.learned: float | None = None
        self.paused_until = 0.0
        self.throttles = 0
        self._streak = 0  # consecutive 429s
        self._last_throttle = float("-inf")
        self._since_throttle = 0
        #: Whether a request had to wait for a token since the rate last grew.
        self._used_up = False

    @property
    def rate(self) -> float:
        return self._rate

    def _refill(self, now: float) -> None:
        if self._stamp is not None:
            self._tokens = min(self._burst, self._tokens + max(0.0, now - self._stamp) * self._rate)
        self._stamp = now

    def wait_time(self, now: float) -> float:
        self._refill(now)
        pause = max(0.0, self.paused_until - now)
        if self._tokens >= 1.0:
            return pause
        self._used_up = True
        return max(pause, (1.0 - self._tokens) / self._rate)

    def acquire(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def on_success(self, now: float) -> None:
        self._streak = 0
        self._since_throttle += 1
        if not self._used_up:
            # Application-limited (RFC 7661's rule for TCP): a success says nothing about a
            # rate we are not using, and growing anyway would leave a target far above the
            # limit for the next burst of demand to run into.
            return
        self._used_up = False
        if self._ceiling is not None:
            self._rate = min(self._ceiling, self._rate * (1 + self._growth))
        elif self.learned is None:
            self._rate *= 1 + self._start_growth  # slow start: find the limit from below
        elif self._rate < self.learned * self._margin:
            self._rate = min(self.learned * self._margin, self._rate * (1 + self._growth))
        else:
            # Probe above the bound by ``probe`` per request: scale-free, one 429 about every
            # ln(1/margin)/probe requests (some 100 with the defaults).
            self._rate *= 1 + self._probe
            self.learned = max(self.learned, self._rate / self._margin)

    def on_throttled(self, now: float, retry_after: float | None, sent_at: float | None = None) -> float:
        self.throttles += 1
        if sent_at is not None and sent_at <= self._last_throttle:
            # Sent before the last 429 was known: the same event, not new evidence.
            if retry_after is not None:
                self.paused_until = max(self.paused_until, now + min(retry_after, self._max_wait))
            return self.paused_until
        self._last_throttle = now
        self._streak += 1
        # The rate we were sending at bounds the limit from above. Near the limit (many
        # successes since the last 429) step just under it; far above it (a 429 again soon, or
        # several in a row) cut hard, as a search down from an overshoot should.
        bound = self._rate if self._streak == 1 else self._rate / self._margin
        near = self._since_throttle >= NEAR_LIMIT_SUCCESSES and self._streak == 1
        if self._ceiling is None:
            learned = bound if self.learned is None else min(self.learned, bound)
            if not near:
                # A 429 again soon after the last: the bound is still above the limit (a server's
                # burst let us run fast for a while). Tighten it a little each time, not to the cut.
                learned = min(learned, bound * TIGHTEN)
            if self.learned is not None and self._streak > 1:
                # Refused again with no success since the last 429: the request sent after the
                # pause was refused whatever our rate (an incident, a limit lowered for a while).
                # The rate is cut deeper each time, but the bound steps down only a little: it
                # followed the cut rate down (50 a minute to 6 in four 429s), and the probe above
                # it climbs back 0.02% a request, so the run crawled for the rest of its life.
                learned = max(learned, self.learned * TIGHTEN)
            self.learned = learned
        cut = self._margin**2 if near else HARD_CUT**self._streak
        self._rate = max(self._floor, bound * cut)
        self._since_throttle = 0
        if retry_after is None:
            wait = full_jitter(self._streak, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
        else:
            wait = min(retry_after, self._max_wait)
        self.paused_until = max(self.paused_until, now + wait)
        self._tokens = min(self._tokens, 0.0)
        return self.paused_until
