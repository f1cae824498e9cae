"""``batcher status`` as text and JSON, and the small formatters every report shares.

:mod:`batcher.status` counts (a :class:`~batcher.status.StatusReport` from one pass over the
ledger); this module only presents. Ledger text is untrusted: :func:`clean` removes its control
characters before it reaches a terminal.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from .ledger import iso_datetime
from .status import UNKNOWN_WORKFLOW, StatusReport

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


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


# --- the status report -----------------------------------------------------------------

_NEXT_WORDS = {
    "attach": "re-attach (poll again, never re-POST)",
    "download": "download outputs",
    "unknown": "POST outcome unknown (resubmit)",
    "submit": "submit",
}


def _next_words(step: str, report: StatusReport) -> str:
    if step == "unknown" and report.unknown_submit == "fail":
        return "POST outcome unknown (fail: ledger.unknown_submit)"
    return _NEXT_WORDS.get(step, step)


def _utc_datetime(ts: str) -> datetime | None:
    """A ledger time in UTC (one without an offset is UTC: :func:`~batcher.ledger.iso_datetime`),
    or None if it is not a time (a hand edit) or has none in UTC (an offset past year 1 or 9999)."""
    try:
        when = iso_datetime(ts)
        return None if when is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def utc_time(ts: str | None, *, seconds: bool = True) -> str:
    """A ledger time as ``2026-11-21 00:00:00 UTC`` (to the minute without ``seconds``); ``-`` for none.

    The ledger writes UTC; a time with another offset is shown in UTC, one without an offset is
    UTC (:func:`~batcher.ledger.iso_datetime`). A time a hand edit left unreadable is shown as it
    is, escaped and cut, and said not to be one: ``'yesterday' (not a time)`` (it was shown as
    ``yesterday UTC``).
    """
    if not ts:
        return "-"
    when = _utc_datetime(ts)
    if when is None:
        return clean(repr(ts if len(ts) <= 32 else ts[:31] + "…")) + " (not a time)"
    text = when.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    return (text if seconds else text[:16]) + " UTC"


def iso_utc(ts: str | None) -> str | None:
    """A ledger time for ``status --json``: ``2026-11-21T00:00:00.000Z`` (UTC, to the millisecond,
    as the ledger and ``--log-format json`` write times), whatever form the line wrote it in
    (another offset, none, a lower-case ``z``, microseconds); None for none or one that is not a time.

    The ledger's own text was passed through: ``2026-11-21T00:10:00`` (no offset, UTC to batcher)
    read as local time in a script, and ``yesterday`` was no time at all.
    """
    when = _utc_datetime(ts) if ts else None
    if when is None:
        return None
    return when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def usd(amount: float | None) -> float | None:
    """An amount of USD for JSON: to the millionth of a dollar, without float noise (six jobs at
    $0.1006 were 0.6035999999999999)."""
    return None if amount is None else round(amount, 6)


def render_status_text(report: StatusReport) -> str:
    """Plain, aligned lines for a terminal or a log (ledger text has its control characters removed)."""
    head: list[tuple[str, str]] = []  # (heading, text)
    rows: dict[str, list[tuple[str, str, str]]] = {}  # heading -> (label, number, note)
    active = report.active_seconds
    head.append(("Ledger", clean(report.ledger)))
    span = f", {utc_time(report.first_ts)} to {utc_time(report.last_ts)}" if report.first_ts else ""
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
            clean(s.workflow or UNKNOWN_WORKFLOW),
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
    rows["Next run"] = [(_next_words(step, report), f"{n:,}", "") for step, n in report.next_run.items() if n]
    ended = report.last_run_ended is not False
    if report.not_started or report.stop_reason or report.edited_rows or report.rows_unread or not ended:
        said = [f"stopped submitting: {clean(report.stop_reason)}"] if report.stop_reason else []
        if not ended:
            said.append("no end in the ledger: killed, cut off, or still running (the next run goes on)")
        if report.not_started:
            said.append(f"{plural(report.not_started, 'job')} not started (the next run submits them)")
        if report.rows_unread:
            said.append("it stopped before reading every manifest row (the next run reads the rest)")
        if edited := report.edited_rows:
            whose, them = ("its job", "it") if edited == 1 else ("their jobs", "them")
            said.append(
                f"{plural(edited, 'row')} edited since {whose} ran (same id, other inputs): not run; "
                f"the run's warnings name {them} (a new id runs a row as it is now)"
            )
        head.append(("Last run", "; ".join(said)))
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
                f"submitted {utc_time(f.submitted_ts)}  age {human_duration(f.age_seconds)}"
            )
    if report.failed_jobs:
        unshown, unshown_jobs = report.failures_unshown
        if unshown > 0:
            reasons = (
                f"for {plural(report.failure_reasons, 'reason')}, the {len(report.failures)} commonest shown"
            )
        else:
            reasons = f"{plural(len(report.failures), 'reason')} shown"
        out.append(f"{'Failures':<10}{plural(report.failed_jobs, 'job')} did not complete, {reasons}")
        count = max(len(f"{g.count:,}") for g in report.failures)
        for g in report.failures:
            retry = f", {g.retryable:,} retried next run" if g.retryable else ""
            out.append(f"  {g.count:>{count},}  {'/'.join(g.statuses)}{retry}: {clean(g.message)}")
        if unshown > 0:
            out.append(f"  ... and {plural(unshown, 'more reason')} ({plural(unshown_jobs, 'job')})")
    if gave_up := report.gave_up_polling:
        them, their = ("it", "its") if gave_up == 1 else ("them", "their")
        out.append(
            f"{'Gave up':<10}{plural(gave_up, 'job')} still unfinished when a run stopped "
            f"polling (poll.give_up_after): paid for; the next run re-attaches {them} by {their} poll_url, "
            f"never POSTs {them} again"
        )
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
    """The report as JSON-able data (``batcher status --json``): an interface for scripts, each
    field in the README's ``status --json`` table (tests/test_docs.py holds the two together).
    Times are :func:`iso_utc`'s form, seconds to the millisecond, USD to the millionth."""
    return {
        "ledger": report.ledger,
        "lines": report.lines,
        "jobs": report.jobs,
        "by_state": dict(report.by_state),
        "spend": {
            "usd": usd(report.spend_usd),
            "submissions": report.submissions,
            "unpriced_submissions": report.unpriced_submissions,
            "by_workflow": [
                {
                    "workflow": s.workflow,
                    "submissions": s.submissions,
                    "price_usd": s.price_usd,
                    "usd": usd(s.usd),
                }
                for s in report.spend
            ],
            "unknown_outcomes": report.unknown_outcomes,
        },
        "next_run": {"total": report.next_run_total, "retry_failed": report.retry_failed, **report.next_run},
        "unknown_submit": report.unknown_submit,
        "last_run": {
            "not_started": report.not_started,
            "stop_reason": report.stop_reason,
            "edited_rows": report.edited_rows,
            "rows_unread": report.rows_unread,
            "ended": report.last_run_ended,
        },
        "in_flight": {
            "total": report.in_flight_total,
            "oldest": [
                {
                    "job_id": f.job_id,
                    "workflow": f.workflow,
                    "status": f.status,
                    "submitted": iso_utc(f.submitted_ts),
                    "age_seconds": None if f.age_seconds is None else round(f.age_seconds, 3),
                }
                for f in report.in_flight
            ],
        },
        "failures": {
            "jobs": report.failed_jobs,
            "gave_up_polling": report.gave_up_polling,
            "reasons": report.failure_reasons,
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
        "first_ts": iso_utc(report.first_ts),
        "last_ts": iso_utc(report.last_ts),
        "runs": {
            "count": len(report.runs),
            "active_seconds": report.active_seconds,
            "list": [
                {
                    "started": iso_utc(r.started),
                    "seconds": None if r.seconds is None else round(r.seconds, 3),
                    "lines": r.lines,
                    "submissions": r.submissions,
                }
                for r in report.runs
            ],
        },
    }
