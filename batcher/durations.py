"""What batcher has learned of how long each workflow's jobs take (pure; time is an argument).

A poll only brackets a job's duration: it finished after the last poll that found it unfinished
(``lower``) and by the poll that found it done (``upper``). The model keeps a bounded window of
recent brackets per workflow and answers quantiles from them, so policies can time their polls
and the runtime guard can tell how long in-flight work will take. The ledger of earlier runs
seeds it (``submitted`` → ``generated`` times), so a nightly run starts knowing its workflows.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any


#: Recent observations kept per workflow: enough for stable quantiles, small enough to follow drift.
WINDOW = 512


class DurationModel:
    """Per-workflow duration brackets and their quantiles."""

    def __init__(self, window: int = WINDOW) -> None:
        self._window = window
        self._recent: dict[str, deque[tuple[float, float]]] = {}
        self._sorted: dict[str, list[float]] = {}

    def observe(self, workflow: str, lower: float, upper: float) -> None:
        """A job of ``workflow`` finished after ``lower`` and by ``upper`` seconds."""
        lower = max(0.0, min(lower, upper))
        recent = self._recent.setdefault(workflow, deque())
        recent.append((lower, upper))
        if len(recent) > self._window:
            recent.popleft()
        self._sorted.pop(workflow, None)

    def count(self, workflow: str) -> int:
        return len(self._recent.get(workflow, ()))

    def quantile(self, workflow: str, q: float) -> float | None:
        """The ``q`` quantile of durations (bracket midpoints), or None before any observation."""
        points = self._sorted.get(workflow)
        if points is None:
            recent = self._recent.get(workflow)
            if not recent:
                return None
            points = sorted((lo + hi) / 2.0 for lo, hi in recent)
            self._sorted[workflow] = points
        index = min(len(points) - 1, max(0, int(q * len(points))))
        return points[index]

    def cdf(self, workflow: str, t: float) -> float | None:
        """The share of observed jobs that had finished by ``t`` seconds (None: nothing known)."""
        if self.quantile(workflow, 0.5) is None:
            return None
        points = self._sorted[workflow]
        return bisect.bisect_right(points, t) / len(points)

    def seed_from_ledger(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Learn from earlier runs' ledger lines; returns how many jobs were learned from.

        ``generated`` lines carry ``finished_after``/``finished_by`` (seconds since submission);
        ``workflow`` comes from the job's ``submitting`` line.
        """
        workflow_of: dict[str, str] = {}
        learned = 0
        for rec in records:
            job_id, status = rec.get("job_id"), rec.get("status")
            if not isinstance(job_id, str):
                continue
            if status == "submitting" and isinstance(rec.get("workflow"), str):
                workflow_of[job_id] = rec["workflow"]
            elif status == "generated" and job_id in workflow_of:
                lo, hi = rec.get("finished_after"), rec.get("finished_by")
                if isinstance(lo, int | float) and isinstance(hi, int | float) and 0 <= lo <= hi:
                    self.observe(workflow_of.pop(job_id), float(lo), float(hi))
                    learned += 1
        return learned
