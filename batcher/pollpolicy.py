"""Poll scheduling: when to ask a job "done yet?".

A small strategy object: the scheduler asks for the delay before a job's first poll and between
later polls. Policies that learn read a shared :class:`~batcher.durations.DurationModel`, which
the engine feeds as jobs finish, and the scheduler's *budget pressure* (0: requests to spare,
1: every request is contested). Time is an argument, never read here, and nothing assumes a
time scale: every delay is a quantile of learned durations or a multiple of a job's age.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

from .durations import DurationModel


class PollPolicy(Protocol):
    def first_delay(self, workflow: str) -> float:
        """Seconds from a job's submission to its first poll."""
        ...

    def first_polled(self, workflow: str, done: bool) -> None:
        """A job submitted this run had its first poll: it was (or was not) ``done``."""
        ...

    def next_delay(self, workflow: str, elapsed: float, polls: int) -> float:
        """Seconds until the next poll of a job ``elapsed`` seconds old, polled ``polls`` times."""
        ...


class FixedInterval:
    """Poll every ``interval`` seconds, as the provider's examples do (7 s)."""

    def __init__(self, interval: float = 7.0, first: float | None = None) -> None:
        self.interval = interval
        self.first = interval if first is None else first

    def first_delay(self, workflow: str) -> float:
        return self.first

    def first_polled(self, workflow: str, done: bool) -> None:
        pass

    def next_delay(self, workflow: str, elapsed: float, polls: int) -> float:
        return self.interval


def _between(low: float, high: float, share: float) -> float:
    return low + (high - low) * min(1.0, max(0.0, share))


class AdaptivePolls:
    """Polls timed from learned durations and priced by budget pressure.

    - **Learning** (fewer than ``min_samples`` tight brackets for the workflow): the first poll
      comes at a quarter of the current guess and later ones at 1.5x the job's age, bracketing
      each duration within 1.5x; when requests are contested, at the guess and 2x the age (a
      job shorter than the guess costs one poll, a longer one a bracket within 2x).
      The guess starts at ``guess`` (the configured interval), becomes the median of the tight
      brackets as soon as there is one, and is cut to the median "done by" time seen.
    - **Known durations, requests to spare** (pressure 0): first poll at the 10th percentile,
      then every 10% of the job's age (sooner if 30% of the jobs still running at that age
      finish sooner), so a job is noticed within about 10% of its duration.
    - **Known durations, every request contested** (pressure 1): first poll at the 95th
      percentile, then at the later of 1.5x the job's age and the point where 80% of the jobs
      still running will have finished: little more than one poll per job, which is what a
      rate-bound run needs (each request is a submission not made).
    - In between, everything slides with the pressure (:mod:`batcher.pressure`).
    - **Censoring.** Durations come from tight brackets, and a job already done at its first
      poll gives none, so tight brackets cannot see durations shorter than the first poll (after
      four 60 s jobs, 2 s jobs first polled at 18 s would never look short). Two corrections:
      the computed first poll is capped by the same quantile of every job's "done by" time
      (which sees those jobs), and after each first poll a tracked delay moves by
      ``exp(step * (q - done))``, a stochastic-approximation quantile tracker (Robbins-Monro)
      that settles where a share ``q`` of jobs is done by the first poll, whatever the brackets
      say. The tracker starts from the computed value once durations are known, and counts as
      much as requests are to spare: under pressure a late first poll is the cheaper one.
    """

    def __init__(
        self,
        durations: DurationModel,
        *,
        guess: float,
        pressure: Callable[[], float],
        min_samples: int = 6,
        step: float = 0.2,
    ) -> None:
        self._durations = durations
        self._guess = guess
        self._pressure = pressure
        self._min = min_samples
        self._step = step
        #: The tracked first-poll delay per workflow (see the class notes).
        self._first: dict[str, float] = {}

    def _known(self, workflow: str) -> bool:
        return self._durations.tight(workflow) >= self._min

    def _current_guess(self, workflow: str) -> float:
        """The median of the first tight brackets as soon as there are any (before that, the
        configured guess), cut down to the median "done by" time seen: jobs found done at
        their first poll give no tight bracket, only that bound."""
        guess = self._durations.quantile(workflow, 0.5) or self._guess
        seen = self._durations.upper_median(workflow)
        return min(guess, seen) if seen is not None else guess

    def _computed_first(self, workflow: str) -> float:
        if not self._known(workflow):
            return self._current_guess(workflow) * _between(0.25, 1.0, self._pressure())
        q = self._first_share()
        value = self._durations.quantile(workflow, q)
        bound = self._durations.upper_quantile(workflow, q)
        assert value is not None and bound is not None
        # Tight brackets miss the jobs done at their first poll; every job's "done by" bound
        # sees them, and the quantile cannot be later than that bound's.
        return min(value, bound)

    def _first_share(self) -> float:
        """The share of jobs the first poll should find done."""
        return _between(0.10, 0.95, self._pressure())

    def first_delay(self, workflow: str) -> float:
        computed = self._computed_first(workflow)
        tracked = self._first.get(workflow)
        if tracked is None or not self._known(workflow):
            return computed
        # The tracker matters when noticing early matters (low pressure); under pressure the
        # brackets' late bias is welcome: a later first poll is fewer polls.
        p = min(1.0, max(0.0, self._pressure()))
        return math.exp((1.0 - p) * math.log(tracked) + p * math.log(computed))

    def first_polled(self, workflow: str, done: bool) -> None:
        if not self._known(workflow):
            return  # learning: brackets first; tracking starts from what they say
        current = self.first_delay(workflow)
        self._first[workflow] = current * math.exp(self._step * (self._first_share() - float(done)))

    def next_delay(self, workflow: str, elapsed: float, polls: int) -> float:
        floor = max(elapsed, 1e-3) * 0.02  # never a busy loop, whatever the scale
        if not self._known(workflow):
            return max(floor, elapsed * _between(0.5, 1.0, self._pressure()))
        pressure = self._pressure()
        step = elapsed * _between(0.10, 0.50, pressure)
        done = self._durations.cdf(workflow, elapsed)
        if done is not None and done < 1.0:
            # Where this share of the jobs still running at this age will have finished.
            target = self._durations.quantile(workflow, done + _between(0.3, 0.8, pressure) * (1.0 - done))
            if target is not None and target > elapsed:
                step = max(step, target - elapsed) if pressure > 0.5 else min(step, target - elapsed)
        return max(floor, step)
