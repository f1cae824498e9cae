"""What batcher has learned of how long each workflow's jobs take (pure; time is an argument).

A poll only brackets a job's duration: it finished after the last poll that found it unfinished
(``lower``) and by the poll that found it done (``upper``). Only *tight* brackets (``upper`` within
``TIGHT`` times ``lower``) say where a duration lies; a first poll that finds a job done says
only "by then". So the model keeps tight brackets for quantiles, and the upper bounds of all of
them for the cruder question "how late is surely late enough". Sparse polling produces few tight
brackets, and mostly in the upper tail; to keep that from dragging the quantiles up, the first
``CORE`` tight brackets of a workflow are kept for good beside a window of recent ones.

The ledger of earlier runs seeds the model (``generated`` lines carry the bracket), so a nightly
run starts knowing its workflows.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: A bracket is tight when upper <= TIGHT * lower. Under contested requests the poll policy
#: spaces polls up to 2x a job's age while learning, and a due poll then waits its turn for the
#: budget: at 2.05 most of those brackets came out at 2.1-2.4x and were thrown away, and a run
#: under pressure from its start learned nothing for minutes (0 tight brackets in 240 s of 30 s
#: jobs, simulated). 2.6 leaves the 2x spacing 30% for queueing.
TIGHT = 2.6
#: Tight brackets kept for good per workflow, and recent ones kept besides.
CORE = 32
WINDOW = 480


@dataclass
class _Workflow:
    core: list[float] = field(default_factory=list)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    uppers: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))
    sorted_points: list[float] | None = None
    sorted_uppers: list[float] | None = None


def _at(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of a non-empty sorted list (the value at rank ``q·n``, clamped)."""
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered))))]


class DurationModel:
    """Per-workflow duration brackets and their quantiles."""

    def __init__(self) -> None:
        self._wf: dict[str, _Workflow] = {}

    def observe(self, workflow: str, lower: float, upper: float) -> None:
        """A job of ``workflow`` finished after ``lower`` and by ``upper`` seconds."""
        upper = max(0.0, upper)
        lower = max(0.0, min(lower, upper))
        wf = self._wf.get(workflow)
        if wf is None:  # not setdefault: that builds a _Workflow (two 480-slot deques) every call
            wf = self._wf[workflow] = _Workflow()
        wf.uppers.append(upper)
        wf.sorted_uppers = None
        if lower > 0 and upper <= TIGHT * lower:
            point = (lower * upper) ** 0.5  # geometric midpoint: durations are log-normal-ish
            if len(wf.core) < CORE:
                wf.core.append(point)
            else:
                wf.recent.append(point)
            wf.sorted_points = None

    def tight(self, workflow: str) -> int:
        """How many tight brackets the model has for ``workflow``."""
        wf = self._wf.get(workflow)
        return len(wf.core) + len(wf.recent) if wf else 0

    def _points(self, workflow: str) -> list[float]:
        wf = self._wf.get(workflow)
        if wf is None:
            return []
        if wf.sorted_points is None:
            wf.sorted_points = sorted([*wf.core, *wf.recent])
        return wf.sorted_points

    def quantile(self, workflow: str, q: float) -> float | None:
        """The ``q`` quantile of durations from tight brackets, or None before any."""
        points = self._points(workflow)
        return _at(points, q) if points else None

    def cdf(self, workflow: str, t: float) -> float | None:
        """The share of jobs that had finished by ``t`` seconds (None: nothing known)."""
        points = self._points(workflow)
        if not points:
            return None
        return bisect.bisect_right(points, t) / len(points)

    def upper_quantile(self, workflow: str, q: float) -> float | None:
        """The ``q`` quantile of every bracket's upper bound, tight or not: "done by then" for a
        share ``q`` of the jobs, so never below the true quantile, and blind to nothing (a job
        found done at its first poll counts, where tight brackets miss it)."""
        wf = self._wf.get(workflow)
        if wf is None or not wf.uppers:
            return None
        if wf.sorted_uppers is None:
            wf.sorted_uppers = sorted(wf.uppers)
        return _at(wf.sorted_uppers, q)

    def upper_median(self, workflow: str) -> float | None:
        """The median of every bracket's upper bound: "done by then" for half the jobs."""
        return self.upper_quantile(workflow, 0.5)

    def seed_from_ledger(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Learn from earlier runs' ledger lines; returns how many jobs were learned from.

        ``generated`` lines carry ``finished_after``/``finished_by`` (seconds since submission);
        ``workflow`` comes from the job's ``submitting`` line. Only a job generated in the run that
        submitted it teaches anything: that run measured its bracket on one monotonic clock. One
        re-attached by a later run (older ledgers recorded its bracket too) was timed across the
        gap between two runs on the wall clock, which a clock set back or forward (or wrong in
        either run) turns into durations shorter than any job's, or days long. Values that are
        not finite numbers (a hand edit: ``Infinity`` is valid to Python's JSON) are skipped.
        """
        workflow_of: dict[str, tuple[str, int]] = {}
        runs = 0
        learned = 0
        for rec in records:
            job_id, status = rec.get("job_id"), rec.get("status")
            if not isinstance(job_id, str):
                if status == "run" and job_id is None:
                    runs += 1
                continue
            if status == "submitting" and isinstance(rec.get("workflow"), str):
                workflow_of[job_id] = (rec["workflow"], runs)
            elif status == "generated" and job_id in workflow_of:
                workflow, run = workflow_of.pop(job_id)
                lo, hi = recorded_seconds(rec.get("finished_after")), recorded_seconds(rec.get("finished_by"))
                if run == runs and lo is not None and hi is not None and lo <= hi:
                    self.observe(workflow, lo, hi)
                    learned += 1
        return learned


def recorded_seconds(value: object) -> float | None:
    """A number of seconds a ledger line records: a finite number, not negative; else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
