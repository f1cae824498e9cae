"""Reasons to stop submitting: the budget, the time window, a failure rate (pure; time passed in).

The scheduler asks every guard before each POST (new jobs and retries alike). The first guard
that objects stops submissions for the rest of the run; jobs already in flight are still polled
and downloaded, and whatever is left runs next time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .durations import DurationModel
from .stats import RunStats


class SubmitGuard(Protocol):
    def objection(self, *, workflow: str, price: float | None, now: float) -> str | None:
        """Why this job may not be submitted now (and no later job either), or None."""
        ...


@dataclass
class BudgetGuard:
    """``--budget USD``: never submit a job that could take the run's spend past the budget.

    Counts every POST that may have been billed at full price: answered 200, outcome unknown
    (5xx, timeout, reset: lost responses are billed), or still on the wire (``stats.committed_usd``).
    """

    budget: float
    stats: RunStats

    def objection(self, *, workflow: str, price: float | None, now: float) -> str | None:
        if price is None:
            return (
                f"budget: workflow {workflow} has no known price, so a job of it could exceed "
                f"${self.budget:.2f}; give it a jobs/ definition with price_usd"
            )
        if self.stats.committed_usd + price > self.budget + 1e-9:
            return (
                f"budget: ${self.stats.committed_usd:.2f} committed, and the next job "
                f"(${price:.4f}) would pass the ${self.budget:.2f} budget"
            )
        return None


@dataclass
class WindowGuard:
    """``--max-runtime``: stop submitting early enough for in-flight jobs to finish in the window.

    The margin is what a job is expected to need: the 90th percentile of durations seen so far
    (this run and the ledger's), plus two poll intervals to notice it; before anything is known,
    ``fallback`` seconds.
    """

    deadline: float
    durations: DurationModel
    poll_interval: float
    fallback: float

    def margin(self, workflow: str) -> float:
        p90 = self.durations.quantile(workflow, 0.9)
        return (p90 if p90 is not None else self.fallback) + 2.0 * self.poll_interval

    def objection(self, *, workflow: str, price: float | None, now: float) -> str | None:
        if now + self.margin(workflow) > self.deadline:
            return "max runtime: too little time left for another job to finish inside the window"
        return None


@dataclass
class FailureRateGuard:
    """``--halt-on-failure-rate``: a broken workflow or input source stops early (GNU parallel's
    ``--halt soon,fail=P%``), once ``min_finished`` jobs have finished in this run."""

    rate: float
    min_finished: int
    stats: RunStats

    def objection(self, *, workflow: str, price: float | None, now: float) -> str | None:
        finished = self.stats.finished()
        if finished < self.min_finished:
            return None
        failed = sum(n for state, n in self.stats.outcomes.items() if state not in ("completed", "deferred"))
        if failed / finished > self.rate:
            return (
                f"failure rate: {failed} of {finished} finished jobs failed "
                f"(over {self.rate:.0%}); fix the cause, then run again"
            )
        return None
