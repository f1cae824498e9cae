"""Poll scheduling: when to ask a job "done yet?".

A small strategy object: the scheduler asks for the delay before a job's first poll and between
later polls. Policies that learn read a shared :class:`~batcher.durations.DurationModel`, which
the engine feeds as jobs finish. Time is an argument, never read.
"""

from __future__ import annotations

from typing import Protocol


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
