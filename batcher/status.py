"""``batcher status``: what a ledger says, in one streaming pass, without taking its lock.

A running batch holds the ledger's ``flock``; this module only reads (``read_records`` stops at a
torn tail, which is a record still being written), so it is safe to run beside a live run.

The pass itself is :mod:`batcher.fold`; this module turns it into a :class:`StatusReport` and
renders it (as text or JSON) in :mod:`batcher.status_text`. What a job needs next is decided by
:meth:`~batcher.state.JobState.next_step`, so ``status`` and ``run`` never disagree about it.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import LedgerSettings
from .fold import InvalidRow, JobFacts, LedgerFold, RunSpan, fold_ledger
from .ledger import CLOCK_SLACK, parse_iso
from .state import IN_FLIGHT, JobState, Next

#: Final states that count as failures (the job did not produce its outputs).
FAILURE_STATUSES = frozenset({"failed", "expired", "download_failed"})
#: The steps a next run takes, in the order they are shown.
NEXT_STEPS = (Next.ATTACH, Next.DOWNLOAD, Next.UNKNOWN, Next.SUBMIT)

IN_FLIGHT_CAP = 20
FAILURE_GROUP_CAP = 20
MESSAGE_CAP = 300

# Request ids are 32 hex digits, UUIDs appear in gateway pages, fractional numbers are
# retry-after seconds or timings, and URLs name each job's input or output (a provider that
# cannot fetch the inputs says so once per job, each with its own URL): all differ per job and
# would split one reason into thousands. A URL keeps its scheme and host (which CDN failed is
# the news); a dotted address or version (127.0.0.1, 1.2.3) is not a timing and is kept.
_URL = re.compile(r"\b(?P<origin>https?://[^/\s?#'\"<>()\[\]]+)[/?#][^\s'\"<>()\[\]]*", re.IGNORECASE)
_DATA_URI = re.compile(r"\bdata:[^\s'\"<>()]{16,}", re.IGNORECASE)
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_DECIMAL = re.compile(r"(?<![\d.])\d+\.\d+(?![\d.])")
_SPACE = re.compile(r"\s+")


def _url_origin(match: re.Match[str]) -> str:
    """A URL as its origin and ``/…``, keeping the punctuation that ends the sentence after it."""
    tail = match[0][len(match[0].rstrip(":,.;!")) :]
    return f"{match['origin']}/…{tail}"


def normalise_error(message: object) -> str:
    """One failure reason for many jobs: URLs cut to their host, ids, hex and timings replaced,
    whitespace collapsed."""
    text = str(message) if message is not None else "(no error message)"
    text = _URL.sub(_url_origin, text)
    text = _DATA_URI.sub("data:…", text)
    text = _UUID.sub("…", text)
    text = _HEX.sub("…", text)
    text = _DECIMAL.sub("N", text)
    text = _SPACE.sub(" ", text).strip() or "(no error message)"
    return text if len(text) <= MESSAGE_CAP else text[: MESSAGE_CAP - 1] + "…"


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
    #: Of those, the jobs the next run tries again (not counting ``--retry-failed``).
    retryable: int
    statuses: tuple[str, ...]
    examples: tuple[str, ...]


#: How text names the workflow of submissions whose ``submitting`` line the ledger lacks.
UNKNOWN_WORKFLOW = "(unknown workflow)"


@dataclass(frozen=True)
class Spend:
    """Billed submissions of one workflow (one ``submitted`` line is one billed job)."""

    #: None: the ledger does not say (no ``submitting`` line named it); text shows UNKNOWN_WORKFLOW.
    workflow: str | None
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
    #: What the next run does with a POST of unknown outcome (the last run's setting).
    unknown_submit: str = LedgerSettings.unknown_submit
    #: Jobs the last run left unstarted (the next run submits them) and why it stopped submitting.
    not_started: int = 0
    stop_reason: str | None = None
    #: Rows the last run did not run because their id is that of a job sent with other inputs.
    edited_rows: int = 0
    #: The last run stopped before it read every manifest row: the rows after those it counted
    #: in ``not_started`` are left too (the next run reads them).
    rows_unread: bool = False
    #: The last run wrote its ``run_end``: it ended in order (True), or did not (False: killed, cut
    #: off, or still running; its other ``last_run`` facts are then 0 and None); None: no run.
    last_run_ended: bool | None = None
    #: Of the failed jobs, those a run stopped polling after ``poll.give_up_after`` while the
    #: provider still had them unfinished: paid for, re-attached (never POSTed) by the next run.
    gave_up_polling: int = 0
    #: Distinct failure reasons, all of them (``failures`` holds the commonest few).
    failure_reasons: int = 0

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
    def failures_unshown(self) -> tuple[int, int]:
        """Reasons beyond those in ``failures``, and how many jobs failed for them."""
        shown_jobs = sum(g.count for g in self.failures)
        return self.failure_reasons - len(self.failures), self.failed_jobs - shown_jobs

    @property
    def next_run_total(self) -> int:
        return sum(self.next_run.values())

    @property
    def active_seconds(self) -> float | None:
        spans = [r.seconds for r in self.runs if r.seconds is not None]
        return round(sum(spans), 3) if spans else None


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
    kinds: Counter[tuple[str, bool, bool, bool]] = Counter()
    in_flight: list[tuple[str | None, str, JobFacts]] = []
    groups: dict[str, list[Any]] = {}
    normalised: dict[object, str] = {}
    failed = 0
    gave_up = 0
    # A retryable failure whose POST's outcome is unknown is failed for good next run, not retried.
    fail_unknown = fold.unknown_submit == "fail"
    if fold.done:  # completed in a run that ended in order: nothing more to show of them
        by_state["completed"] += len(fold.done)
    for job_id, job in fold.jobs.items():
        by_state[job.status] += 1
        kinds[(job.status, job.retryable, job.poll, job.post_unknown)] += 1
        if job.status in IN_FLIGHT:
            in_flight.append((job.submitted_ts, job_id, job))
        elif job.status in FAILURE_STATUSES:
            failed += 1
            gave_up += job.gave_up
            key = normalised.get(job.error)
            if key is None:
                key = normalised[job.error] = normalise_error(job.error)
            group = groups.get(key)
            if group is None:
                group = groups[key] = [0, 0, set(), []]
            group[0] += 1
            group[1] += job.retryable and not (fail_unknown and job.post_unknown and not job.poll)
            group[2].add(job.status)
            if len(group[3]) < 3:
                group[3].append(job_id)
    next_run: Counter[str] = Counter()
    for (status, retryable, poll, post_unknown), n in kinds.items():
        step = JobState(
            status=status, retryable=retryable, poll_url="known" if poll else None, post_unknown=post_unknown
        ).next_step(retry_failed=retry_failed)
        if step is not Next.NOTHING:
            next_run[step.value] += n
    # By time, not text: a time with an offset or another number of digits sorts wrong as text.
    # Jobs without a readable time go last.
    oldest = heapq.nsmallest(IN_FLIGHT_CAP, in_flight, key=_by_time)
    flights = []
    for ts, job_id, job in oldest:
        started = parse_iso(ts)
        # A time in the future (the clock was set back since, or the line came from a machine
        # whose clock was ahead) has no age: "0s" would pass for a job just sent.
        age = None if started is None or started > now + CLOCK_SLACK else max(0.0, now - started)
        flights.append(InFlight(job_id, job.workflow, job.status, ts, age))
    failures = sorted(
        (FailureGroup(msg, g[0], g[1], tuple(sorted(g[2])), tuple(g[3])) for msg, g in groups.items()),
        key=lambda f: (-f.count, f.message),
    )
    spend = tuple(
        Spend(workflow or None, n, prices.get(workflow) if workflow else None)
        for workflow, n in sorted(fold.submitted.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    )
    return StatusReport(
        ledger=ledger,
        lines=fold.lines,
        jobs=len(fold.jobs) + len(fold.done),
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
        unknown_submit=fold.unknown_submit,
        not_started=fold.not_started,
        stop_reason=fold.stop_reason,
        edited_rows=fold.edited_rows,
        rows_unread=fold.rows_unread,
        last_run_ended=fold.last_run_ended,
        gave_up_polling=gave_up,
        failure_reasons=len(failures),
    )


def _by_time(item: tuple[str | None, str, JobFacts]) -> tuple[float, str]:
    started = parse_iso(item[0])
    return (math.inf if started is None else started, item[1])


def ledger_status(
    path: Path, *, prices: Mapping[str, float | None], now: float, retry_failed: bool = False
) -> StatusReport:
    """Read a ledger (never locking it, never touching the network) and summarise it."""
    fold = fold_ledger(path)
    return summarize(fold, ledger=str(path), prices=prices, now=now, retry_failed=retry_failed)
