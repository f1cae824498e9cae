"""Poll scheduling: when to ask a job "done yet?".

A small strategy object: the scheduler asks for the delay before a job's first poll and between
later polls, and reports what it learned when a job finishes. Time is an argument, never read.
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

    def observe(self, workflow: str, lower: float, upper: float) -> None:
        """A job finished between ``lower`` and ``upper`` seconds after submission."""
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

    def observe(self, workflow: str, lower: float, upper: float) -> None:
        return None
