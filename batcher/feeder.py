"""The feeder: what each job the ledger knows, and each manifest row, needs from this run.

It goes over the ledger's jobs first (re-attach those with a known ``poll_url``, download those the
provider finished), then streams the manifests: rows finished earlier are skipped and counted,
rows under way are left to the first pass, bad rows are recorded as ``invalid``, and the rest are
queued for submission through a bounded queue, so a million rows are never in memory at once.
Only rows still to be sent need their local image files; a row with its own id whose job was sent
with other inputs (edited in place since) is warned about, and not sent again.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.lowlevel

from .clock import Clock
from .collect import DownloadTask
from .config import Settings
from .errors import RowError
from .handoff import Handoff
from .ledger import CLOCK_SLACK, Ledger, parse_iso, path_bases, utc_iso
from .manifest import JobSpec, Unfinished, read_manifests
from .outfiles import OrphanProbe, output_intact, sweep_parts
from .outputs import OutputRef
from .rowlog import ROW_MESSAGES, RowLog
from .scheduler import Scheduler
from .seams import Survey
from .state import JobState, LedgerState, Next
from .stats import RunStats
from .work import Job
from .workflows import WorkflowRegistry

log = logging.getLogger("batcher")

#: Manifest rows read between two trips round the event loop (a few milliseconds of work).
YIELD_EVERY = 256


class Feeder:
    """Hands the scheduler and the download workers their work, lazily."""

    def __init__(
        self,
        *,
        settings: Settings,
        manifests: Sequence[Path],
        registry: WorkflowRegistry,
        clock: Clock,
        ledger: Ledger,
        state: LedgerState,
        stats: RunStats,
        scheduler: Scheduler,
    ) -> None:
        self.settings = settings
        self.manifests = manifests
        self.registry = registry
        self.clock = clock
        self.ledger = ledger
        self.state = state
        self.stats = stats
        self.sched = scheduler
        #: The manifests as the run started: how far to read each, and lines holding two rows
        #: joined at a seam (see :mod:`batcher.seams`).
        self.survey = Survey()
        #: Final states of the manifests' jobs that earlier runs finished.
        self.earlier: Counter[str] = Counter()
        #: Every row of the manifests was read (False: the run stopped before it got to them all,
        #: so the rows it counts as not started are not all of them).
        self.read_all = False
        #: Looks for outputs of the first new rows already on disk (see :meth:`_orphaned`).
        self._probe = OrphanProbe(settings.output.out_dir, ledger.path)
        self._say_invalid = RowLog(
            logging.ERROR,
            f"more invalid rows follow, not named here (the first {ROW_MESSAGES} are): the summary "
            "counts them, the ledger has an 'invalid' line for each, and `batcher status` lists "
            "the first ones with their fixes",
        )
        self._say_edited = RowLog(
            logging.WARNING,
            f"more rows edited under the id of a job that ran follow, not named here (the first "
            f"{ROW_MESSAGES} are); the summary counts them",
        )

    async def run(self, downloads: Handoff[DownloadTask]) -> None:
        """Ledger work first (re-attach, download), then manifest rows, lazily."""
        await self._check_unsynced_outputs()
        retry_failed = self.settings.retry_failed
        now_wall = self.clock.wall()
        #: Jobs the ledger says were submitted after this machine's current time.
        future: list[tuple[float, str]] = []
        for job_id, js in self.state.jobs.items():
            step = js.next_step(retry_failed=retry_failed)
            refs: tuple[OutputRef, ...] = ()
            if step is Next.DOWNLOAD:
                refs = tuple(OutputRef.from_json(o) for o in js.outputs or [] if isinstance(o, dict))
                if js.poll_url and any(ref.inline is not None for ref in refs):
                    # The ledger keeps no inline output's bytes: the job's poll answer has them
                    # (a poll, free; never a POST).
                    step = Next.ATTACH
            if step is Next.ATTACH and js.poll_url:
                started = parse_iso(js.submitted_ts) if js.submitted_ts else None
                if started is not None and started > now_wall + CLOCK_SLACK:
                    future.append((started, js.submitted_ts or ""))
                self.stats.attached += 1
                self.sched.attach(self._attached(job_id, js.workflow or "?", js.request_id, js.poll_url))
            elif step is Next.DOWNLOAD:
                self.stats.downloads_resumed += 1
                self.stats.downloading += 1
                submitted = parse_iso(js.submitted_ts) if js.submitted_ts else None
                age = None if submitted is None else max(0.0, now_wall - submitted)
                task = DownloadTask(
                    job_id, js.workflow or "?", refs, age=age, poll_url=js.poll_url, request_id=js.request_id
                )
                if task.may_poll_again:
                    self.sched.hold()
                downloads.put(task)
        if future:
            log.warning(
                "%s submitted, by the ledger, after this machine's current time (%s; up to %s):"
                " its clock was set back since, or an earlier run's clock was ahead. They are"
                " polled as usual; ledger times will not line up (batcher status shows no age"
                " for them)",
                "1 job was" if len(future) == 1 else f"{len(future):,} jobs were",
                utc_iso(now_wall),
                max(future)[1],
            )
        state = self.state
        needs_files = functools.partial(
            state.would_send, retry_failed=retry_failed, unknown_submit=self.settings.ledger.unknown_submit
        )
        rows = 0
        for item in read_manifests(
            self.manifests, self.registry, survey=self.survey, needs_files=needs_files
        ):
            rows += 1
            if rows % YIELD_EVERY == 0:
                # Rows that are skipped (done earlier, or counted once submissions stopped) and
                # rows queued while the queue has room never wait: without this, a long
                # manifest held the event loop for seconds, and a signal, the polls and the
                # POSTs on the wire with it.
                await anyio.lowlevel.checkpoint()
            if isinstance(item, RowError):
                self._invalid(item)
                continue
            if isinstance(item, Unfinished):
                self._unfinished(item)
                continue
            known = state.job(item.job_id)
            step = known.next_step(retry_failed=retry_failed) if known else Next.SUBMIT
            if known is not None and (edited := item.edited_since(known, step)):
                self.stats.edited += 1
                self._say_edited(edited)
            if step is Next.NOTHING:
                assert known is not None
                self.earlier[known.status] += 1
                self.stats.skipped += 1
                continue
            if step in (Next.ATTACH, Next.DOWNLOAD):
                continue  # already under way from the ledger pass above
            if self.sched.stop_submitting or item.workflow.name in self.sched.closed:
                self.stats.left += 1
                continue
            if step is Next.UNKNOWN and self.settings.ledger.unknown_submit == "fail":
                self.ledger.event(
                    item.job_id,
                    "failed",
                    self.clock.wall(),
                    retryable=False,
                    error="an earlier POST's outcome is unknown and ledger.unknown_submit is 'fail'",
                )
                self.stats.outcomes["failed"] += 1
                continue
            if known is None and self._probe.due and await self._orphaned(item):
                self.stats.left += 1
                continue
            wf = item.workflow
            job = Job(
                item.job_id,
                wf.name,
                wf.price_usd,
                workflow_id=wf.workflow_id,
                spec=item,
                post_unknown=step is Next.UNKNOWN,
            )
            if not await self.sched.pending.put(job):
                self.stats.left += 1
        self.sched.pending.close()
        self.read_all = True

    def _attached(self, job_id: str, workflow: str, request_id: str | None, poll_url: str) -> Job:
        """A job an earlier run submitted, to be polled by this one (never POSTed again)."""
        wf = self.registry.get(workflow)
        now = self.clock.monotonic()
        return Job(
            job_id,
            workflow,
            wf.price_usd if wf else None,
            request_id=request_id,
            poll_url=poll_url,
            # Polled at once, then on this run's own clock (see Job.submitted_at).
            submitted_at=now - self.settings.poll.interval,
            # Counted from now, not from its submission: each run polls it that long.
            give_up_at=self.settings.poll.give_up_at(now),
        )

    def settle(self, task: DownloadTask, poll_again: bool) -> None:
        """A held download (:attr:`DownloadTask.may_poll_again`) is settled: its job is polled
        again for new output URLs, or needs nothing more from the scheduler."""
        job = None
        if poll_again and task.poll_url is not None:
            job = self._attached(task.job_id, task.workflow, task.request_id, task.poll_url)
            job.refetch_age = task.age
        self.sched.release(job)

    async def _orphaned(self, item: JobSpec) -> bool:
        """Whether a row the ledger has no record of already has an output on disk, and if so,
        stop submitting. A ledger deleted, emptied (log rotation) or put back from an older copy
        since its jobs ran would otherwise have every one of them paid for again. Only the first
        new rows are looked at (they show it at once), in a thread."""
        row = f"{item.path}, line {item.line}"
        reason = await anyio.to_thread.run_sync(self._probe.look, item.job_id, row)
        if reason is None:
            return False
        self.sched.stop(reason)
        return True

    async def _check_unsynced_outputs(self) -> None:
        """Runs that did not end in order (no ``run_end``: killed, or the machine died) may have
        recorded outputs that never reached the disk. Check those files (only those runs': a
        file a user moved away after a run that ended in order is theirs to move) and fetch
        any that are missing or short again. Such a run may also have left part files."""
        state = self.state
        if state.lines <= state.synced_upto:
            return  # every run ended in order (or there was none)
        out_dir = self.settings.output.out_dir
        if out_dir is not None:
            swept = await anyio.to_thread.run_sync(sweep_parts, out_dir)
            if swept:
                log.info("removed %d part file(s) a killed run left in %s", swept, out_dir)

        def lost() -> list[tuple[str, JobState]]:
            # One at a time (a killed run's may be a million, held by the offsets of their lines).
            bases = path_bases(self.ledger.path)
            return [
                (job_id, js)
                for job_id, js in state.held_jobs()
                if not all(output_intact(o, bases) for o in js.outputs or [] if isinstance(o, dict))
            ]

        for job_id, js in await anyio.to_thread.run_sync(lost):
            if state.unsettle(job_id, js).outputs_lost():
                self.stats.outputs_refetched += 1
                log.warning("%s: its saved output is missing or short on disk; fetching it again", job_id)
            else:
                log.error("%s: its saved output is missing on disk and cannot be fetched again", job_id)

    def _unfinished(self, cut: Unfinished) -> None:
        """A row still being written: said once, and noted in the ledger, so that the next run
        does not take the rest of its line, written since, for a row appended to it."""
        log.warning("%s", cut)
        self.ledger.event(
            None,
            "unfinished",
            self.clock.wall(),
            manifest=cut.name,
            source=cut.path,
            line=cut.line,
            at=cut.at,
        )

    def _invalid(self, err: RowError) -> None:
        self.stats.invalid += 1
        # job_id null: an invalid row must never overwrite the state of a job the ledger knows.
        self.ledger.event(
            None,
            "invalid",
            self.clock.wall(),
            row_id=err.job_id,
            source=err.path,
            line=err.line,
            field=err.field,
            error=err.reason,
            fix=err.fix,
        )
        self._say_invalid(err)
