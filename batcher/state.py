"""What the ledger says: every job's state (its last line, plus the facts earlier lines carry).

Ledger statuses, in the order a job meets them::

    submitting ─► submitted ─► generated ─► completed
        │  ▲          │            └──────► download_failed ─► (next run: download again;
        │  │          │                       URLs that no longer work: poll for new ones)
        ▼  │          ├──► failed (provider FAILED, or polling gave up: retryable, re-attached)
    submit_unknown    └──► expired (poll said 404: the record is gone)
    deferred (not sent: 429, stop, credits)      invalid (a bad manifest row)

A ``failed`` line with ``gave_up_polling: true`` is a job still unfinished ``poll.give_up_after``
into a run's polling of it: retryable, with its poll_url known, so it is re-attached, never POSTed.

The ``submitting`` line of a row with its own id carries ``inputs_hash``, a hash of what the row
says (:func:`~batcher.manifest_rows.inputs_hash`): a row edited in place under that id differs
from it, and is warned about instead of passing for the job that ran. Kept as one int a job, and
only for those jobs.

``run`` lines (``job_id`` null) open each run with the manifests and workflow settings; a
``run_end`` line closes a run that ended in order, after its output files were flushed to disk.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .donejobs import MAX_HELD_OFFSET, DoneJob, DoneJobs
from .ledger import read_located
from .reread import LineReader
from .runsahead import RunsAhead, run_ends

FINAL_OK = "completed"
IN_FLIGHT = frozenset({"submitted", "polled"})
UNKNOWN_OUTCOME = frozenset({"submitting", "submit_unknown"})
NEEDS_DOWNLOAD = frozenset({"generated", "download_failed"})


class Next(enum.Enum):
    """What a job needs from this run."""

    NOTHING = "nothing"  # completed, or failed/expired for good
    DOWNLOAD = "download"  # the provider finished; fetch the files
    ATTACH = "attach"  # a poll_url is known: poll it, never POST again
    UNKNOWN = "unknown"  # a POST's outcome is unknown: resubmit or fail, per settings
    SUBMIT = "submit"  # never sent (or deferred, or a retryable failure before a poll_url)


@dataclass(slots=True)
class JobState:
    """One job as the ledger tells it."""

    status: str
    workflow: str | None = None
    request_id: str | None = None
    poll_url: str | None = None
    outputs: list[dict[str, Any]] | None = None
    error: str | None = None
    retryable: bool = False
    #: A POST of this job may have been accepted (and billed) with no ``submitted`` since: a
    #: ``submit_unknown``, or a ``submitting`` whose process died before the answer. Cleared only
    #: by a ``submitted``: a later 429, a refused connection or a give-up says nothing about that
    #: POST, so sending the job again may still pay for it twice.
    post_unknown: bool = False
    submitted_ts: str | None = None
    #: The byte offset of its last ``submitted`` line (-1: not known), which a held job's
    #: poll_url is read again from (see :attr:`LedgerState.reader`).
    submitted_at: int = -1
    #: The ledger line (1-based) of its ``completed`` record, until a ``run_end`` follows it.
    done_line: int = 0
    #: Its last ``submitting`` line's ``inputs_hash`` as an int (rows with their own id only;
    #: None for the others and for ledgers written before it was recorded).
    inputs_hash: int | None = None

    def sent_other_inputs(self, inputs_hash: str) -> bool:
        """True when its last POST recorded inputs other than those ``inputs_hash`` stands for
        (:meth:`~batcher.manifest.JobSpec.inputs_hash`); False when nothing was recorded."""
        return self.inputs_hash is not None and self.inputs_hash != _hash_int(inputs_hash)

    def outputs_lost(self) -> bool:
        """Its saved files did not survive (a crash before they reached the disk): make it need
        them again, from their URLs, or failing that by polling its poll_url once more (both
        free). False when neither is possible."""
        saved = self.outputs or []
        if saved and all(isinstance(o, dict) and o.get("url") for o in saved):
            self.status = "generated"
            self.outputs = [{"key": o.get("key", "output"), "url": o["url"]} for o in saved]
            return True
        if self.poll_url:
            self.status = "submitted"
            return True
        return False

    def next_step(self, *, retry_failed: bool) -> Next:
        s = self.status
        if s == FINAL_OK:
            return Next.NOTHING
        if s in NEEDS_DOWNLOAD:
            return Next.DOWNLOAD
        if s == "expired" or (s == "failed" and not self.retryable):
            if not retry_failed:
                return Next.NOTHING
            # --retry-failed sends it again; a POST of unknown outcome still goes by
            # ledger.unknown_submit (and is counted as sent again).
            return Next.UNKNOWN if self.post_unknown and not self.poll_url else Next.SUBMIT
        if self.poll_url:
            # A poll_url known since the last POST: that job is polled, never POSTed again,
            # whatever else the ledger says after it.
            return Next.ATTACH
        if s in UNKNOWN_OUTCOME or self.post_unknown:
            # Also a job that gave up after unknown outcomes (``failed``, retryable), or was
            # deferred (a 429, no connection) on its way to sending such a POST again.
            return Next.UNKNOWN
        return Next.SUBMIT  # deferred, a retryable failure before a poll_url, or a newer status


#: Steps at which a run does not POST the job (it is done, or polled and downloaded).
NOT_SENT = frozenset({Next.NOTHING, Next.ATTACH, Next.DOWNLOAD})


def sends(step: Next, *, unknown_submit: str) -> bool:
    """Whether a run POSTs a job at this step (``ledger.unknown_submit`` fails a POST of
    unknown outcome instead of sending it again)."""
    return step is Next.SUBMIT or (step is Next.UNKNOWN and unknown_submit != "fail")


def _hash_int(value: object) -> int | None:
    """An ``inputs_hash`` (16 hex digits) as an int, or None if it is not one."""
    if not isinstance(value, str) or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


@dataclass
class LedgerState:
    """Every job of a ledger, replayed. A run holds it for the whole run, for every job the
    ledger ever had (a nightly ledger gains tens of thousands a night), so a job that completed
    in a run that ended in order keeps only what the next run asks of it: that it is done, its
    workflow and ``inputs_hash``, in :attr:`done` (about 50 bytes a job). Its outputs, poll_url
    and times (the bulk of its lines) are needed only until a ``run_end`` says its files reached
    the disk; repeated strings (statuses, workflow names) are shared.

    A job completed in a run not known to end in order (it was killed, or its ``run_end`` is
    further on and nothing was read ahead) is kept in :attr:`done` too, *held*, when the records
    came with their byte offsets and a :attr:`reader`: by the offsets of its ``completed`` and
    ``submitted`` lines, from which :meth:`held_jobs` reads it whole again for the run that
    checks its files (about 1.5 KB a job held whole: 1.8 GB for a killed run of a million).
    Without offsets such a job is held whole in :attr:`jobs` until the next ``run_end``.

    Look a job up with :meth:`job`: :attr:`jobs` holds only the jobs not yet done for good."""

    #: Every job the ledger knows except those in :attr:`done`.
    jobs: dict[str, JobState] = field(default_factory=dict)
    #: Jobs completed in a run that ended in order (by the hash of their id: not iterable).
    done: DoneJobs = field(default_factory=DoneJobs)
    runs: list[dict[str, Any]] = field(default_factory=list)
    lines: int = 0
    #: Lines up to the last ``run_end``: the outputs those runs saved were flushed to disk.
    synced_upto: int = 0
    #: Jobs whose last line is ``submitting``: a POST on the wire, or cut off by a kill if a
    #: ``run`` line comes next.
    posting: set[str] = field(default_factory=set)
    #: When each completed job moves to :attr:`done`: at its ``completed`` line if its run ends
    #: in order further on (read ahead, :func:`~batcher.runsahead.run_ends`), else at the next
    #: ``run_end``. Nothing read ahead: every job waits for a ``run_end``.
    ahead: RunsAhead = field(default_factory=RunsAhead)
    #: Reads a held job's lines again (None: records come without offsets; none is held).
    reader: LineReader | None = None
    #: The byte offset of the last ``run_end`` line (-1: none, or offsets not known): a held job
    #: whose ``completed`` line lies past it is one whose files a run must check.
    synced_at: int = -1
    _shared: dict[str, str] = field(default_factory=dict, repr=False)

    def job(self, job_id: str) -> JobState | None:
        """The job of this id as the ledger tells it, or None if the ledger does not know it. A
        done job comes back as a new ``completed`` JobState (changing it changes nothing here)."""
        known = self.jobs.get(job_id)
        if known is not None:
            return known
        done = self.done.get(job_id)
        return None if done is None else _restored(done)

    @property
    def known(self) -> int:
        """How many jobs the ledger knows."""
        return len(self.jobs) + len(self.done)

    def step(self, job_id: str, *, retry_failed: bool) -> Next:
        """What the job of this id needs from a run (a job the ledger does not know: SUBMIT)."""
        known = self.job(job_id)
        return known.next_step(retry_failed=retry_failed) if known is not None else Next.SUBMIT

    def would_send(self, job_id: str, *, retry_failed: bool, unknown_submit: str) -> bool:
        """Whether a run POSTs the job of this id (:func:`sends` of its :meth:`step`): only such
        a row needs its local input files (the run and the dry run ask the same)."""
        return sends(self.step(job_id, retry_failed=retry_failed), unknown_submit=unknown_submit)

    def apply(self, rec: Mapping[str, Any], at: int = -1) -> None:
        """Fold one ledger record into the state; ``at``: the byte offset of its line, if known
        (with a :attr:`reader`, a completed job is then held by offset, not whole)."""
        self.lines += 1
        status = rec.get("status")
        job_id = rec.get("job_id")
        if status == "run" and job_id is None:
            self.runs.append(dict(rec))
            self.ahead.run(rec)
            # A new process: the POSTs the last one left without an answer are of unknown outcome.
            for posted in self.posting:
                self.jobs[posted].post_unknown = True
            self.posting.clear()
            return
        if status == "run_end" and job_id is None:
            self.synced_upto = self.lines
            self.synced_at = at
            self._forget_synced(self.ahead.run_end())
            return
        if status == "unfinished" and job_id is None and self.runs:
            # A manifest's last row, still being written when its run read it: a note about
            # that run's seams (see batcher.seams.recorded_seams).
            run = self.runs[-1]
            notes = run.get("unfinished")
            if not isinstance(notes, list):
                notes = run["unfinished"] = []
            notes.append(dict(rec))
            return
        if not isinstance(job_id, str) or not isinstance(status, str):
            return
        shared = self._shared
        status = shared.setdefault(status, status)
        ts = rec.get("ts") if isinstance(rec.get("ts"), str) else None
        job = self.jobs.get(job_id)
        if job is None:
            done = self.done.pop(job_id)  # a done job the ledger mentions again
            job = self.jobs[job_id] = JobState(status=status) if done is None else self._unsettled(done)
        job.status = status
        workflow = rec.get("workflow")
        if isinstance(workflow, str):
            job.workflow = shared.setdefault(workflow, workflow)
        if status == "submitting":
            if job_id in self.posting:  # a POST before it never got an answer line
                job.post_unknown = True
            self.posting.add(job_id)
            job.inputs_hash = _hash_int(rec.get("inputs_hash"))
            # A new POST: what the last one's answer said (its request, its time, its line) is
            # not this one's.
            job.request_id = job.poll_url = job.submitted_ts = None
            job.submitted_at = -1
            job.outputs = None
            job.error = None
        else:
            self.posting.discard(job_id)
        if status == "submit_unknown":
            job.post_unknown = True
            job.error = rec.get("error")
        elif status == "submitted":
            job.request_id = rec.get("request_id")
            job.poll_url = rec.get("poll_url")
            job.submitted_ts = ts
            job.submitted_at = at
            job.post_unknown = False
        elif status in ("generated", "completed", "download_failed"):
            outputs = rec.get("outputs")
            if isinstance(outputs, list):
                job.outputs = outputs
            if status == "completed":
                job.done_line = self.lines
                job.retryable = False
                job.error = None
                if self.ahead.ends():  # its run ends in order further on
                    self._settle(job_id, job)
                elif 0 <= at <= MAX_HELD_OFFSET and self.reader is not None:
                    self._settle(job_id, job, held=(at, job.submitted_at))
                else:
                    self.ahead.completed(job_id)  # held whole until the next run_end
                return
        if status in ("failed", "download_failed", "expired", "deferred", "invalid", "submit_unknown"):
            job.error = rec.get("error")
            job.retryable = bool(rec.get("retryable", False))
        elif status not in ("polled",):
            job.retryable = False

    def _settle(self, job_id: str, job: JobState, held: tuple[int, int] | None = None) -> None:
        """Move a completed job whose files are (or will be, by a run_end to come) on disk to
        :attr:`done`, which keeps none of its outputs, poll_url or times; or one whose files may
        not be, held by the offsets of its lines."""
        del self.jobs[job_id]
        self.done.add(job_id, DoneJob(job.workflow, job.inputs_hash, job.post_unknown, held))

    def _unsettled(self, done: DoneJob, completed: Mapping[str, Any] | None = None) -> JobState:
        """A done job taken out of :attr:`done` as the JobState it was: whole again if held and
        not synced since (its lines read again; ``completed``: its completed line's record, if
        already read), else as :func:`_restored` keeps it."""
        job = _restored(done)
        held = done.held_since(self.synced_at)
        if held is None or self.reader is None:
            return job
        completed_at, submitted_at = held
        outputs = (completed or self.reader.read(completed_at, "completed")).get("outputs")
        job.outputs = outputs if isinstance(outputs, list) else None
        if submitted_at >= 0:
            sent = self.reader.read(submitted_at, "submitted")
            job.request_id, job.poll_url = sent.get("request_id"), sent.get("poll_url")
            job.submitted_ts = sent["ts"] if isinstance(sent.get("ts"), str) else None
            job.submitted_at = submitted_at
        return job

    def held_jobs(self) -> Iterator[tuple[str, JobState]]:
        """Every job completed in a run that did not end in order (its files may not have
        reached the disk) and that recorded outputs: whole, read again if held. Reads the
        ledger: call it from a thread."""
        for job_id, js in list(self.jobs.items()):
            if js.status == FINAL_OK and js.done_line > self.synced_upto and js.outputs:
                yield job_id, js
        if self.reader is None:
            return
        for completed_at, _ in self.done.held_after(self.synced_at):
            record = self.reader.read(completed_at, "completed")
            job_id = record["job_id"]
            done = self.done.get(job_id)
            if done is not None:  # always: the line's job is the one held by its offset
                job = self._unsettled(done, record)
                if job.outputs:
                    yield job_id, job

    def unsettle(self, job_id: str, job: JobState) -> JobState:
        """Take a job :meth:`held_jobs` gave out of :attr:`done` (a run that fetches its files
        again changes it): the one in :attr:`jobs` from now on."""
        if self.done.pop(job_id) is not None:
            self.jobs[job_id] = job
        return self.jobs[job_id]

    def _forget_synced(self, waiting: Iterable[str]) -> None:
        """A ``run_end``: the files of every job completed before it (``waiting``: those not
        settled yet) are on disk, and no run will fetch them again or poll those jobs: they move
        to :attr:`done`, which keeps none of their outputs, poll_url or times."""
        for job_id in waiting:
            job = self.jobs.get(job_id)
            if job is not None and job.status == FINAL_OK:
                self._settle(job_id, job)


def _restored(done: DoneJob) -> JobState:
    """A done job as the JobState it was when it moved to :attr:`LedgerState.done`."""
    return JobState(
        status=FINAL_OK, workflow=done.workflow, inputs_hash=done.inputs_hash, post_unknown=done.post_unknown
    )


def replay(records: Iterable[Mapping[str, Any]], ahead: RunsAhead | None = None) -> LedgerState:
    """The state of these records; ``ahead``: their file's runs, read ahead (see
    :attr:`LedgerState.ahead`)."""
    state = LedgerState(ahead=ahead or RunsAhead())
    for rec in records:
        state.apply(rec)
    return state


def replay_file(path: Path) -> LedgerState:
    """The state of the ledger file at ``path``: its runs read ahead, the completed jobs of runs
    that did not end in order held by the offsets of their lines (see :class:`LedgerState`).
    Its :attr:`~LedgerState.reader` is closed (it opens again when read from)."""
    with LineReader(path) as reader:
        state = LedgerState(ahead=run_ends(path), reader=reader)
        for at, rec in read_located(path):
            state.apply(rec, at)
    return state
