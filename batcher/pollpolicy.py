"""Poll scheduling: when to ask a job "done yet?".

A small strategy object: the scheduler asks for the delay before a job's first poll and between
later polls. Policies that learn read a shared :class:`~batcher.durations.DurationModel`, which
the engine feeds as jobs finish, and the scheduler's *budget pressure* (0: requests to spare,
1: every request is contested). Time is an argument, never read here, and nothing assumes a
time scale: every delay is a quantile of learned durations or a multiple of a job's age.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .durations import DurationModel


class PollPolicy(Protocol):
    def first_delay(self, workflow: str) -> float:
        """Seconds from a job's submission to its first poll."""
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

    def next_delay(self, workflow: str, elapsed: float, polls: int) -> float:
        return self.interval


def _between(low: float, high: float, share: float) -> float:
    return low + (high - low) * min(1.0, max(0.0, share))


class AdaptivePolls:
    """Polls timed from learned durations and priced by budget pressure.

    - **Learning** (fewer than ``min_samples`` tight brackets for the workflow): the first poll
      comes at a quarter of the current guess and later ones at 1.5x the job's age, bracketing
      each duration within 1.5x; when requests are contested, at half the guess and 2x the age.
      The guess starts at ``guess`` (the configured interval), shrinks to the median "done by"
      time seen, and becomes the median of the first tight brackets as soon as there is one.
    - **Known durations, requests to spare** (pressure 0): first poll at the 10th percentile,
      then every 10% of the job's age, so a job is noticed within about 10% of its duration.
    - **Known durations, every request contested** (pressure 1): first poll at the 85th
      percentile, then at the point where 80% of the jobs still running will have finished:
      little more than one poll per job, which is what a rate-bound run needs (each request is
      a submission not made).
    - In between, everything slides with the pressure.
    """

    def __init__(
        self,
        durations: DurationModel,
        *,
        guess: float,
        pressure: Callable[[], float],
        min_samples: int = 6,
    ) -> None:
        self._durations = durations
        self._guess = guess
        self._pressure = pressure
        self._min = min_samples

    def _known(self, workflow: str) -> bool:
        return self._durations.tight(workflow) >= self._min

    def _current_guess(self, workflow: str) -> float:
        """The first tight brackets, as soon as there are any; before that, the configured guess,
        cut down to the median "done by" time seen (first polls that found jobs done)."""
        if self._durations.tight(workflow):
            median = self._durations.quantile(workflow, 0.5)
            assert median is not None
            return median
        seen = self._durations.upper_median(workflow)
        return min(self._guess, seen) if seen is not None else self._guess

    def first_delay(self, workflow: str) -> float:
        if not self._known(workflow):
            return self._current_guess(workflow) * _between(0.25, 0.5, self._pressure())
        q = _between(0.10, 0.85, self._pressure())
        value = self._durations.quantile(workflow, q)
        assert value is not None
        return value

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
