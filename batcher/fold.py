"""One streaming pass over a ledger, keeping only what ``status`` and ``report`` need.

Leaner than :class:`~batcher.state.LedgerState` on purpose: per job it keeps the last status, the
workflow, whether a ``poll_url`` is known, the retry flag, whether a POST's outcome is unknown, the
last error and the time of the last ``submitted`` (for the report, also the number of its last
line, to show the latest jobs); strings that repeat (statuses, workflow names)
are shared, so a million-line ledger folds in seconds and tens of megabytes
(``bench/status_speed.py``). The fields mirror what ``LedgerState.apply`` keeps, so ``status`` and
``run`` agree on every job's state. As there, a job completed in a run that ends in order is kept
from then on only by the hash of its id (:class:`~batcher.donejobs.DoneJobs`), with its workflow:
``status`` shows nothing more of it, and the report only the latest few (its gallery), which the
fold keeps aside as they are settled (``latest_done``). A job completed in a run that did not end
in order (killed) is kept there too, *held* by the offsets of its ``completed`` and ``submitted``
lines as the run's replay holds it (:class:`~batcher.state.LedgerState`), when the fold reads a
file (:func:`fold_ledger`): a line that mentions it again before a ``run_end`` finds it as it was
(its poll_url known, its submission's time read again). A killed run of a million jobs folded in
402 MB held whole.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import UNKNOWN_SUBMIT_CHOICES, LedgerSettings
from .donejobs import MAX_HELD_OFFSET, DoneJob, DoneJobs
from .durations import recorded_seconds
from .ledger import parse_iso, read_located
from .ledger_given import check_given_ledger, first_line_complete, no_ledger_records
from .reread import LineReader
from .runsahead import RunsAhead, run_ends

#: Statuses whose line carries ``error`` and ``retryable`` (as in LedgerState.apply).
_ERROR_STATUSES = frozenset({"failed", "download_failed", "expired", "deferred", "invalid", "submit_unknown"})
#: Invalid rows kept for display (all are counted).
INVALID_CAP = 50


@dataclass(frozen=True)
class InvalidRow:
    """A manifest row the last run refused (an ``invalid`` line)."""

    row_id: str | None
    source: str | None
    line: int | None
    field: str | None
    error: str | None
    fix: str | None


@dataclass(frozen=True)
class RunSpan:
    """One run: from its ``run`` line to the last line before the next run."""

    started: str | None
    #: How long it ran: what its ``run_end`` says (timed on the run's monotonic clock, so a clock
    #: stepped mid-run does not make it days long); without one, its first to its last line's time.
    seconds: float | None
    lines: int
    submissions: int


class JobFacts:
    """What the fold keeps of one job."""

    __slots__ = (
        "error",
        "gave_up",
        "last_line",
        "poll",
        "post_unknown",
        "retryable",
        "status",
        "submitted_at",
        "submitted_ts",
        "workflow",
    )

    def __init__(self) -> None:
        self.status = ""
        self.workflow: str | None = None
        self.poll = False
        self.retryable = False
        #: Its last line is a ``failed`` that gave up polling it (``poll.give_up_after``).
        self.gave_up = False
        #: As ``JobState.post_unknown``: a POST that may have been billed, no ``submitted`` since.
        self.post_unknown = False
        self.error: object = None
        self.submitted_ts: str | None = None
        #: The byte offset of its last ``submitted`` line (-1: none, or offsets not known).
        self.submitted_at = -1
        #: The line that gave it its state (its last), when the fold tracks it (``lines=True``).
        self.last_line = 0


class LedgerFold:
    """A lean fold of ledger records; :meth:`apply` each record in order, then ``status.summarize``.

    With ``durations=True`` it also records, for each ``generated`` line, the provider's time to
    produce the outputs, for the report's chart: its ``finished_by`` (timed on the run's monotonic
    clock), or, for a re-attached job and older ledgers, the seconds since its last ``submitted``;
    with ``lines=True``, each job's last line number (the report shows the latest jobs), and
    the ``latest_done`` done jobs whose last line came last (:meth:`latest_done`).
    """

    def __init__(
        self,
        *,
        durations: bool = False,
        lines: bool = False,
        latest_done: int = 0,
        ahead: RunsAhead | None = None,
        reader: LineReader | None = None,
    ) -> None:
        self.track_lines = lines
        #: Reads a held job's ``submitted`` line again (None: records come without offsets, and
        #: a killed run's completed jobs are kept whole in :attr:`jobs`).
        self.reader = reader
        #: The byte offset of the last ``run_end`` line (-1: none, or offsets not known): a held
        #: job whose ``completed`` line lies past it comes back whole when mentioned again.
        self.synced_at = -1
        #: Every job but those in :attr:`done`.
        self.jobs: dict[str, JobFacts] = {}
        #: Jobs completed in a run that ended in order (as ``LedgerState.done``).
        self.done = DoneJobs()
        #: With ``lines``: the ``latest_done`` jobs settled into :attr:`done` whose last line
        #: came last, as ``(line, job_id)`` in a min-heap.
        self._latest_done: list[tuple[int, str]] = []
        self._latest_cap = latest_done if lines else 0
        #: When each completed job moves to :attr:`done` (as ``LedgerState.ahead``).
        self.ahead = ahead or RunsAhead()
        self.lines = 0
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.submitted: Counter[str | None] = Counter()
        #: POSTs of unknown outcome: ``submit_unknown`` lines, and POSTs a killed run left unanswered.
        self.unknown_outcomes = 0
        self.invalid: list[InvalidRow] = []
        self.invalid_total = 0
        #: The last run's ``run_end``: jobs it left unstarted (rows with no line of their own
        #: when it never got to them) and why it stopped submitting, if it did.
        self.not_started = 0
        self.stop_reason: str | None = None
        #: The last run's rows edited under the id of a job that ran (not run by it).
        self.edited_rows = 0
        #: The last run stopped before it read every manifest row (more than ``not_started``
        #: are left).
        self.rows_unread = False
        #: Whether the last run wrote its ``run_end`` (ended in order); False: killed, cut off or
        #: still running; None: the ledger has no run at all.
        self.last_run_ended: bool | None = None
        self.durations: list[float] | None = [] if durations else None
        self.runs: list[RunSpan] = []
        #: The last run's ``ledger.unknown_submit``: what a POST of unknown outcome gets next.
        self.unknown_submit = LedgerSettings.unknown_submit
        #: [started, last_ts, lines, submissions, seconds by its run_end (None: not known)]
        self._run: list[Any] | None = None
        self._shared: dict[str, str] = {}
        #: Jobs whose last line is ``submitting`` (as ``LedgerState.posting``).
        self._posting: set[str] = set()

    def apply(self, rec: Mapping[str, Any], at: int = -1) -> None:
        """Fold one record; ``at``: the byte offset of its line, if known (with a :attr:`reader`,
        a killed run's completed job is then held by offsets, not whole)."""
        self.lines += 1
        ts = rec.get("ts")
        if not isinstance(ts, str):
            ts = None
        elif self.first_ts is None:
            self.first_ts = ts
        if ts is not None:
            self.last_ts = ts
        status = rec.get("status")
        job_id = rec.get("job_id")
        if job_id is None and status == "run":
            # A new process: the POSTs the last one left without an answer are of unknown outcome.
            for posted in self._posting:
                self.jobs[posted].post_unknown = True
            self.unknown_outcomes += len(self._posting)
            self._posting.clear()
            self.ahead.run(rec)
            self._close_run()
            self._run = [ts, ts, 1, 0, None]
            settings = rec.get("settings")
            ledger = settings.get("ledger") if isinstance(settings, dict) else None
            policy = ledger.get("unknown_submit") if isinstance(ledger, dict) else None
            self.unknown_submit = (
                policy if policy in UNKNOWN_SUBMIT_CHOICES else LedgerSettings.unknown_submit
            )
            self.invalid = []  # only the last run's invalid rows are news
            self.invalid_total = 0
            self.not_started, self.stop_reason, self.edited_rows = 0, None, 0
            self.rows_unread = False
            self.last_run_ended = False
            return
        run = self._run
        if run is not None:
            run[2] += 1
            if ts is not None:
                run[1] = ts
        if job_id is None:
            if status == "invalid":
                self._add_invalid(rec)
            elif status == "run_end":
                self.last_run_ended = True
                self.synced_at = at
                for done_id in self.ahead.run_end():
                    job = self.jobs.get(done_id)
                    if job is not None and job.status == "completed":
                        self._settle(done_id, job)
                if run is not None:
                    run[4] = recorded_seconds(rec.get("seconds"))
                left = rec.get("not_started")
                self.not_started = left if isinstance(left, int) and not isinstance(left, bool) else 0
                self.stop_reason = _str_or_none(rec.get("stop_reason"))
                edited = rec.get("edited_rows")
                self.edited_rows = edited if isinstance(edited, int) and not isinstance(edited, bool) else 0
                self.rows_unread = rec.get("rows_unread") is True
            return
        if not isinstance(job_id, str) or not isinstance(status, str):
            return
        shared = self._shared
        status = shared.setdefault(status, status)
        job = self.jobs.get(job_id)
        if job is None:
            job = self.jobs[job_id] = JobFacts()
            done = self.done.pop(job_id)  # a done job the ledger mentions again
            if done is not None:
                self._unsettle(job, done)
        job.status = status
        if self.track_lines:
            job.last_line = self.lines
        workflow = rec.get("workflow")
        if isinstance(workflow, str):
            job.workflow = shared.setdefault(workflow, workflow)
        if status == "submitting":
            if job_id in self._posting:  # a POST before it never got an answer line
                job.post_unknown = True
                self.unknown_outcomes += 1
            self._posting.add(job_id)
            job.poll = False
            job.error = None
        else:
            self._posting.discard(job_id)
        if status == "submitted":
            job.poll = bool(rec.get("poll_url"))
            job.post_unknown = False
            job.submitted_ts = ts
            job.submitted_at = at
            self.submitted[job.workflow] += 1
            if run is not None:
                run[3] += 1
        elif status == "submit_unknown":
            self.unknown_outcomes += 1
            job.post_unknown = True
        elif status == "generated" and self.durations is not None:
            seconds = recorded_seconds(rec.get("finished_by"))
            if seconds is None and ts and job.submitted_ts:
                # A re-attached job's, or an older ledger's: the wall clock's difference.
                start, end = parse_iso(job.submitted_ts), parse_iso(ts)
                if start is not None and end is not None and end >= start:
                    seconds = end - start
            if seconds is not None:
                self.durations.append(seconds)
        elif status == "completed":
            if self.ahead.ends():
                self._settle(job_id, job)  # its run ends in order further on
            elif job.poll and 0 <= at <= MAX_HELD_OFFSET and self.reader is not None:
                # Its run is not known to end: held, to come back whole if mentioned again
                # before a run_end. Only a job whose poll_url its last submitted line gave
                # (every job the run completes) comes back exactly from that line.
                self._settle(job_id, job, held=(at, job.submitted_at))
            else:
                self.ahead.completed(job_id)  # kept whole until the next run_end
        if status in _ERROR_STATUSES:
            job.error = rec.get("error")
            job.retryable = bool(rec.get("retryable", False))
        elif status != "polled":
            job.retryable = False
        job.gave_up = status == "failed" and rec.get("gave_up_polling") is True

    def _settle(self, job_id: str, job: JobFacts, held: tuple[int, int] | None = None) -> None:
        """A job completed before a ``run_end``: as LedgerState does, it keeps only its workflow
        and post-unknown flag, by the hash of its id (a line the ledger adds for it later, a
        hand edit, finds no poll_url, in a run as here), or ``held`` by the offsets of its
        ``completed`` and ``submitted`` lines; and its last line, if among the latest."""
        del self.jobs[job_id]
        self.done.add(job_id, DoneJob(job.workflow, None, job.post_unknown, held))
        if self._latest_cap:
            entry, heap = (job.last_line, job_id), self._latest_done
            if len(heap) < self._latest_cap:
                heapq.heappush(heap, entry)
            elif entry > heap[0]:
                heapq.heapreplace(heap, entry)

    def _unsettle(self, job: JobFacts, done: DoneJob) -> None:
        """A done job the ledger mentions again, into ``job`` (new): its workflow and
        post-unknown flag; held and not synced since, also its poll_url (known: it was held only
        then) and its submission's time and offset, as whole it kept them."""
        job.workflow, job.post_unknown = done.workflow, done.post_unknown
        held = done.held_since(self.synced_at)
        if held is None or self.reader is None:
            return
        job.status, job.poll, job.submitted_at = "completed", True, held[1]
        ts = self.reader.read(held[1], "submitted").get("ts")
        job.submitted_ts = ts if isinstance(ts, str) else None

    def latest_done(self) -> list[tuple[int, str]]:
        """``(last line, job_id)`` of the done jobs whose last line came last (up to the fold's
        ``latest_done``), newest first. A job the ledger mentioned again after it was settled
        (a hand edit) is not among them, and may leave fewer."""
        seen: set[str] = set()
        latest = []
        for line, job_id in sorted(self._latest_done, reverse=True):
            if job_id not in seen and self.done.get(job_id) is not None:
                seen.add(job_id)
                latest.append((line, job_id))
        return latest

    def workflow_of(self, job_id: str) -> str | None:
        """The workflow of the job of this id (done jobs too), or None."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job.workflow
        done = self.done.get(job_id)
        return None if done is None else done.workflow

    def status_of(self, job_id: str) -> str | None:
        """The status of the job of this id (done jobs too), or None if the ledger does not know it."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job.status
        return "completed" if self.done.get(job_id) is not None else None

    def _add_invalid(self, rec: Mapping[str, Any]) -> None:
        self.invalid_total += 1
        if len(self.invalid) < INVALID_CAP:
            line = rec.get("line")
            self.invalid.append(
                InvalidRow(
                    row_id=_str_or_none(rec.get("row_id")),
                    source=_str_or_none(rec.get("source")),
                    line=line if isinstance(line, int) and not isinstance(line, bool) else None,
                    field=_str_or_none(rec.get("field")),
                    error=_str_or_none(rec.get("error")),
                    fix=_str_or_none(rec.get("fix")),
                )
            )

    def _close_run(self) -> None:
        if self._run is None:
            return
        started, last, lines, submissions, seconds = self._run
        if seconds is None:
            # No run_end (a killed run, an older ledger): its first and last lines' times apart.
            start, end = parse_iso(started), parse_iso(last)
            if start is not None and end is not None and end >= start:
                # To the ms the times carry: a float difference printed 20.299999952316284.
                seconds = round(end - start, 3)
        self.runs.append(RunSpan(started, seconds, lines, submissions))
        self._run = None

    def finish(self) -> None:
        """Close the last run's span (call once, after the last record)."""
        self._close_run()


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def fold_ledger(
    path: Path, *, durations: bool = False, lines: bool = False, latest_done: int = 0
) -> LedgerFold:
    """Fold a ledger file in one streaming pass. Raises LedgerError if it is missing or not a ledger
    (see :mod:`batcher.ledger_given`)."""
    check_given_ledger(path)
    with LineReader(path) as reader:
        fold = LedgerFold(
            durations=durations, lines=lines, latest_done=latest_done, ahead=run_ends(path), reader=reader
        )
        apply = fold.apply
        for at, rec in read_located(path):
            apply(rec, at)
        fold.finish()
    if fold.lines == 0 and path.stat().st_size > 0 and first_line_complete(path):
        raise no_ledger_records(path)
    return fold
