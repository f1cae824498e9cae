"""``batcher status``: what a ledger says, in one streaming pass, without taking its lock.

A running batch holds the ledger's ``flock``; this module only reads (``read_records`` stops at a
torn tail, which is a record still being written), so it is safe to run beside a live run.

The pass itself is :mod:`batcher.fold`; this module turns it into a :class:`StatusReport` and
renders that as text or JSON. What a job needs next is decided by
:meth:`~batcher.state.JobState.next_step`, so ``status`` and ``run`` never disagree about it.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .fold import InvalidRow, JobFacts, LedgerFold, RunSpan, fold_ledger
from .ledger import parse_iso
from .state import IN_FLIGHT, JobState, Next

#: Final states that count as failures (the job did not produce its outputs).
FAILURE_STATUSES = frozenset({"failed", "expired", "download_failed"})
#: The steps a next run takes, in the order they are shown.
NEXT_STEPS = (Next.ATTACH, Next.DOWNLOAD, Next.UNKNOWN, Next.SUBMIT)

IN_FLIGHT_CAP = 20
FAILURE_GROUP_CAP = 20
MESSAGE_CAP = 300

# Request ids are 32 hex digits, UUIDs appear in gateway pages, and fractional numbers are
# retry-after seconds or timings: all differ per job and would split one reason into thousands.
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_DECIMAL = re.compile(r"\b\d+\.\d+\b")
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalise_error(message: object) -> str:
    """One failure reason for many jobs: ids, hex and timings replaced, whitespace collapsed."""
    text = str(message) if message is not None else "(no error message)"
    text = _UUID.sub("…", text)
    text = _HEX.sub("…", text)
    text = _DECIMAL.sub("N", text)
    text = _SPACE.sub(" ", text).strip() or "(no error message)"
    return text if len(text) <= MESSAGE_CAP else text[: MESSAGE_CAP - 1] + "…"


def clean(text: object) -> str:
    """Ledger text made safe for a terminal: control characters (ANSI escapes!) become ``?``."""
    return _CONTROL.sub("?", str(text))


def human_duration(seconds: float | None) -> str:
    """``42s``, ``3m 12s``, ``5h 02m``, ``2d 03h``; ``-`` for unknown."""
    if seconds is None or seconds != seconds:  # NaN
        return "-"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def money(usd: float) -> str:
    return f"${usd:,.2f}"


def price(usd: float | None) -> str:
    """A unit price to the tenth of a cent (workflow prices are like $0.1006): ``$0.1006``, ``$2.00``."""
    if usd is None:
        return "unknown"
    text = f"{usd:,.4f}".rstrip("0")
    return "$" + (text + "0" * (2 - len(text.split(".")[1])))


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# --- the report ------------------------------------------------------------------------


@dataclass(frozen=True)
class InFlight:
    """A job submitted and not finished: the provider is (or was) working on it."""

    job_id: str
    workflow: str | None
    status: str
    submitted_ts: str | None
    age_seconds: float | None


@dataclass(frozen=True)
class FailureGroup:
    """Jobs that failed for the same (normalised) reason."""

    message: str
    count: int
    retryable: int
    statuses: tuple[str, ...]
    examples: tuple[str, ...]


@dataclass(frozen=True)
class Spend:
    """Billed submissions of one workflow (one ``submitted`` line is one billed job)."""

    workflow: str
    submissions: int
    price_usd: float | None

    @property
    def usd(self) -> float | None:
        return None if self.price_usd is None else self.submissions * self.price_usd


@dataclass(frozen=True)
class StatusReport:
    """Everything ``batcher status`` shows, computed from one pass over the ledger."""

    ledger: str
    lines: int
    jobs: int
    by_state: Mapping[str, int]
    spend: tuple[Spend, ...]
    in_flight: tuple[InFlight, ...]
    in_flight_total: int
    failures: tuple[FailureGroup, ...]
    failed_jobs: int
    invalid_rows: tuple[InvalidRow, ...]
    invalid_total: int
    next_run: Mapping[str, int]
    retry_failed: bool
    first_ts: str | None
    last_ts: str | None
    runs: tuple[RunSpan, ...]
    unknown_outcomes: int = 0

    @property
    def submissions(self) -> int:
        return sum(s.submissions for s in self.spend)

    @property
    def spend_usd(self) -> float:
        """Spend at list prices of the submissions whose price is known."""
        return sum(s.usd for s in self.spend if s.usd is not None)

    @property
    def unpriced_submissions(self) -> int:
        return sum(s.submissions for s in self.spend if s.price_usd is None)

    @property
    def next_run_total(self) -> int:
        return sum(self.next_run.values())

    @property
    def active_seconds(self) -> float | None:
        spans = [r.seconds for r in self.runs if r.seconds is not None]
        return sum(spans) if spans else None


def summarize(
    fold: LedgerFold,
    *,
    ledger: str,
    prices: Mapping[str, float | None],
    now: float,
    retry_failed: bool = False,
) -> StatusReport:
    """The report of a finished fold. ``now`` is a POSIX time (ledger times are wall-clock)."""
    by_state: Counter[str] = Counter()
    kinds: Counter[tuple[str, bool, bool]] = Counter()
    in_flight: list[tuple[str, str, JobFacts]] = []
    groups: dict[str, list[Any]] = {}
    normalised: dict[object, str] = {}
    failed = 0
    for job_id, job in fold.jobs.items():
        by_state[job.status] += 1
        kinds[(job.status, job.retryable, job.poll)] += 1
        if job.status in IN_FLIGHT:
            # ISO times in one format sort as text; jobs without one go last.
            in_flight.append((job.submitted_ts or "~", job_id, job))
        elif job.status in FAILURE_STATUSES:
            failed += 1
            key = normalised.get(job.error)
            if key is None:
                key = normalised[job.error] = normalise_error(job.error)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, 0, set(), []]
            group[0] += 1
            group[1] += job.retryable
            group[2].add(job.status)
            if len(group[3]) < 3:
                group[3].append(job_id)
    next_run: Counter[str] = Counter()
    for (status, retryable, poll), n in kinds.items():
        step = JobState(status=status, retryable=retryable, poll_url="known" if poll else None).next_step(
            retry_failed=retry_failed
        )
        if step is not Next.NOTHING:
            next_run[step.value] += n
    oldest = heapq.nsmallest(IN_FLIGHT_CAP, in_flight, key=lambda item: (item[0], item[1]))
    flights = []
    for _, job_id, job in oldest:
        started = parse_iso(job.submitted_ts) if job.submitted_ts else None
        age = max(0.0, now - started) if started is not None else None
        flights.append(InFlight(job_id, job.workflow, job.status, job.submitted_ts, age))
    failures = sorted(
        (FailureGroup(msg, g[0], g[1], tuple(sorted(g[2])), tuple(g[3])) for msg, g in groups.items()),
        key=lambda f: (-f.count, f.message),
    )
    spend = tuple(
        Spend(workflow or "(unknown workflow)", n, prices.get(workflow) if workflow else None)
        for workflow, n in sorted(fold.submitted.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    )
    return StatusReport(
        ledger=ledger,
        lines=fold.lines,
        jobs=len(fold.jobs),
        by_state=dict(sorted(by_state.items(), key=lambda kv: (-kv[1], kv[0]))),
        spend=spend,
        in_flight=tuple(flights),
        in_flight_total=len(in_flight),
        failures=tuple(failures[:FAILURE_GROUP_CAP]),
        failed_jobs=failed,
        invalid_rows=tuple(fold.invalid),
        invalid_total=fold.invalid_total,
        next_run={step.value: next_run[step.value] for step in NEXT_STEPS},
        retry_failed=retry_failed,
        first_ts=fold.first_ts,
        last_ts=fold.last_ts,
        runs=tuple(fold.runs),
        unknown_outcomes=fold.unknown_outcomes,
    )


def ledger_status(
    path: Path, *, prices: Mapping[str, float | None], now: float, retry_failed: bool = False
) -> StatusReport:
    """Read a ledger (never locking it, never touching the network) and summarise it."""
    fold = fold_ledger(path)
    return summarize(fold, ledger=str(path), prices=prices, now=now, retry_failed=retry_failed)


# --- output ----------------------------------------------------------------------------

_NEXT_WORDS = {
    "attach": "re-attach (poll again, never re-POST)",
    "download": "download outputs",
    "unknown": "POST outcome unknown (resubmit)",
    "submit": "submit",
}


def _short_ts(ts: str | None) -> str:
    return clean(ts.replace("T", " ")[:19] + " UTC") if ts else "-"


def render_status_text(report: StatusReport) -> str:
    """Plain, aligned lines for a terminal or a log (ledger text has its control characters removed)."""
    head: list[tuple[str, str]] = []  # (heading, text)
    rows: dict[str, list[tuple[str, str, str]]] = {}  # heading -> (label, number, note)
    active = report.active_seconds
    head.append(("Ledger", clean(report.ledger)))
    span = f", {_short_ts(report.first_ts)} to {_short_ts(report.last_ts)}" if report.first_ts else ""
    active_note = f" (active {human_duration(active)})" if active else ""
    head.append(("Lines", f"{report.lines:,} in {plural(len(report.runs), 'run')}{span}{active_note}"))
    head.append(("Jobs", f"{report.jobs:,}"))
    rows["Jobs"] = [
        (clean(state), f"{n:,}", f"{100 * n / report.jobs:5.1f}%") for state, n in report.by_state.items()
    ]
    head.append(
        (
            "Spend",
            f"{money(report.spend_usd)} at list prices for {plural(report.submissions, 'billed submission')}",
        )
    )
    rows["Spend"] = [
        (
            clean(s.workflow),
            f"{s.submissions:,}",
            f"x {price(s.price_usd)} = {money(s.usd or 0)}" if s.price_usd is not None else "(price unknown)",
        )
        for s in report.spend
    ]
    if report.unknown_outcomes:
        rows["Spend"].append(
            ("POST outcome unknown", f"{report.unknown_outcomes:,}", "(may have been billed)")
        )
    flag = " with --retry-failed" if report.retry_failed else ""
    head.append(("Next run", f"{plural(report.next_run_total, 'known job')} would run{flag}"))
    rows["Next run"] = [
        (_NEXT_WORDS.get(step, step), f"{n:,}", "") for step, n in report.next_run.items() if n
    ]
    width = min(40, max((len(label) for section in rows.values() for label, _, _ in section), default=0))
    number = max((len(n) for section in rows.values() for _, n, _ in section), default=0)
    out: list[str] = []
    for heading, text in head:
        out.append(f"{heading:<10}{text}")
        for label, n, note in rows.get(heading, []):
            out.append(f"  {label:<{width}}  {n:>{number}}  {note}".rstrip())
    if report.in_flight_total:
        shown = len(report.in_flight)
        more = f", oldest {shown} shown" if shown < report.in_flight_total else ""
        out.append(f"{'In flight':<10}{report.in_flight_total:,} submitted, not finished{more}")
        ids = max(len(clean(f.job_id)) for f in report.in_flight)
        wfs = max(len(clean(f.workflow or "?")) for f in report.in_flight)
        for f in report.in_flight:
            out.append(
                f"  {clean(f.job_id):<{ids}}  {clean(f.workflow or '?'):<{wfs}}  "
                f"submitted {_short_ts(f.submitted_ts)}  age {human_duration(f.age_seconds)}"
            )
    if report.failed_jobs:
        reasons = plural(len(report.failures), "reason")
        out.append(f"{'Failures':<10}{plural(report.failed_jobs, 'job')} did not complete, {reasons} shown")
        count = max(len(f"{g.count:,}") for g in report.failures)
        for g in report.failures:
            retry = f", {g.retryable:,} retried next run" if g.retryable else ""
            out.append(f"  {g.count:>{count},}  {'/'.join(g.statuses)}{retry}: {clean(g.message)}")
    if report.invalid_total:
        out.append(f"{'Invalid':<10}{plural(report.invalid_total, 'manifest row')} refused by the last run")
        for row in report.invalid_rows:
            where = f"{clean(row.source or '?')}:{row.line if row.line is not None else '?'}"
            what = f"{clean(row.field)}: " if row.field else ""
            fix = f" ({clean(row.fix)})" if row.fix else ""
            out.append(f"  {where}  {what}{clean(row.error or '')}{fix}")
        if report.invalid_total > len(report.invalid_rows):
            out.append(f"  ... and {report.invalid_total - len(report.invalid_rows):,} more")
    return "\n".join(out)


def status_json(report: StatusReport) -> dict[str, Any]:
    """The report as JSON-able data (``batcher status --json``)."""
    return {
        "ledger": report.ledger,
        "lines": report.lines,
        "jobs": report.jobs,
        "by_state": dict(report.by_state),
        "spend": {
            "usd": round(report.spend_usd, 6),
            "submissions": report.submissions,
            "unpriced_submissions": report.unpriced_submissions,
            "by_workflow": [
                {"workflow": s.workflow, "submissions": s.submissions, "price_usd": s.price_usd, "usd": s.usd}
                for s in report.spend
            ],
            "unknown_outcomes": report.unknown_outcomes,
        },
        "next_run": {"total": report.next_run_total, "retry_failed": report.retry_failed, **report.next_run},
        "in_flight": {
            "total": report.in_flight_total,
            "oldest": [
                {
                    "job_id": f.job_id,
                    "workflow": f.workflow,
                    "status": f.status,
                    "submitted": f.submitted_ts,
                    "age_seconds": None if f.age_seconds is None else round(f.age_seconds, 3),
                }
                for f in report.in_flight
            ],
        },
        "failures": {
            "jobs": report.failed_jobs,
            "groups": [
                {
                    "message": g.message,
                    "count": g.count,
                    "retryable": g.retryable,
                    "statuses": list(g.statuses),
                    "examples": list(g.examples),
                }
                for g in report.failures
            ],
        },
        "invalid": {
            "total": report.invalid_total,
            "rows": [
                {
                    "row_id": r.row_id,
                    "source": r.source,
                    "line": r.line,
                    "field": r.field,
                    "error": r.error,
                    "fix": r.fix,
                }
                for r in report.invalid_rows
            ],
        },
        "first_ts": report.first_ts,
        "last_ts": report.last_ts,
        "runs": {
            "count": len(report.runs),
            "active_seconds": report.active_seconds,
            "list": [
                {"started": r.started, "seconds": r.seconds, "lines": r.lines, "submissions": r.submissions}
                for r in report.runs
            ],
        },
    }
