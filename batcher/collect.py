"""Saving finished jobs' outputs: the download workers' side of a run.

A job whose poll said COMPLETED (or that an earlier run left ``generated``) becomes a
:class:`DownloadTask`. A few workers take them in turn, save every output with
:class:`~batcher.download.OutputSaver`, try a failure that may pass again with backoff (or after
the wait a host's 429 or 503 names, up to ``rate.max_wait``), and record
``completed`` or ``download_failed``. A failed download is never a reason to POST again: the next
run downloads from the same URLs. An output its host no longer has (403, 404, 410: the provider
keeps outputs about 7 days; tried again first if the job just finished) makes the job
``expired``: only ``--retry-failed`` runs it again, paying again. Before that, an output an earlier
run left to download whose URL no longer works is asked for again: the job is polled once more
(one request, never a POST), since a host's URLs may lapse long before its files do (an S3
presigned URL lasts hours), and a fresh poll hands out new ones.

An output that cannot be *written* (a full disk, a file size limit, the folder gone or read-only)
is not tried again in this run: that does not pass in seconds, and each try would fetch the file
again. It is recorded ``download_failed`` at once, retryable, and when the whole folder is at
fault submissions stop: the run pays for no more outputs it cannot keep.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from .backoff import full_jitter
from .clock import Clock
from .config import RetrySettings
from .download import DownloadFailed, OutputSaver
from .handoff import Handoff
from .ledger import Ledger
from .outputs import OutputRef
from .stats import RunStats

log = logging.getLogger("batcher")


@dataclass(frozen=True)
class DownloadTask:
    job_id: str
    workflow: str
    refs: tuple[OutputRef, ...]
    #: The provider answered COMPLETED to this run just now (not a download left by an earlier
    #: run): a 404 may then be a replica of a new file that lags, worth a few more tries.
    fresh: bool = False
    #: A download left by an earlier run: seconds since its job was submitted, by the ledger's
    #: times (None: not known). Its files are taken for gone for good only past OUTPUTS_KEPT.
    age: float | None = None
    #: A download left by an earlier run: its job's poll_url and request id, by the ledger.
    poll_url: str | None = None
    request_id: str | None = None

    @property
    def young(self) -> bool:
        """Left by an earlier run less than OUTPUTS_KEPT after its job was submitted: its files
        may still be kept (False when its age is not known)."""
        return self.age is not None and self.age < OUTPUTS_KEPT

    @property
    def may_poll_again(self) -> bool:
        """Left by an earlier run, with a poll_url and :attr:`young`, so its record may still be
        kept: if its URLs no longer work, a poll may hand out new ones. The scheduler is held
        open for it until it is saved or settled (``Scheduler.hold``)."""
        return self.young and not self.fresh and self.poll_url is not None


#: How long the provider is taken to keep a job's outputs (it says about 7 days): a download
#: answered 403/404/410 for a job older than this is ``expired``; a younger one is tried again
#: by the next run (a host's bad moment must not make a job that only --retry-failed, paying
#: again, can bring back).
OUTPUTS_KEPT = 6 * 86400.0


class Collector:
    """Saves the outputs of finished jobs and records each outcome."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        stats: RunStats,
        retry: RetrySettings,
        clock: Clock,
        rng: random.Random,
        stop: Callable[[str], None],
        max_wait: float,
        settle: Callable[[DownloadTask, bool], None],
    ) -> None:
        self.ledger = ledger
        self.stats = stats
        self.retry = retry
        #: The longest wait an output host may ask for (``rate.max_wait``) before it is clamped.
        self.max_wait = max_wait
        self.clock = clock
        self.rng = rng
        #: Stops submissions, with the reason (the scheduler's ``stop``).
        self.stop = stop
        #: Called once for each task that :attr:`~DownloadTask.may_poll_again`, when it is
        #: settled: True to poll its job again for new URLs, False when it needs no more.
        self.settle = settle
        self._folder_failed = False

    async def worker(self, tasks: Handoff[DownloadTask], saver: OutputSaver) -> None:
        """Save the outputs of finished jobs as they come, until ``tasks`` is closed."""
        while (task := await tasks.get()) is not None:
            again = False
            try:
                again = await self._save(task, saver)
            finally:
                if task.may_poll_again:
                    self.settle(task, again)

    async def _save(self, task: DownloadTask, saver: OutputSaver) -> bool:
        """Save the task's outputs and record the outcome; True instead when its URLs no longer
        work and its job is to be polled again for new ones (nothing recorded yet)."""
        attempt = 0
        while True:
            try:
                saved = await saver.save_all(task.job_id, list(task.refs))
            except DownloadFailed as exc:
                attempt += 1
                if exc.folder is not None and not self._folder_failed:
                    self._folder_failed = True
                    log.error(
                        "%s: submissions stop; the next run downloads what is not saved (not paid again)",
                        exc.folder,
                    )
                    self.stop(exc.folder)
                # A new file gone from the output host is tried again, as a poll's 404 is: a
                # replica may lag. One left by an earlier run is not: a week on, every output of
                # a resumed ledger may be gone, and tries with backoff would hold the workers
                # for hours.
                again = exc.retryable or (exc.gone and task.fresh)
                if again and not exc.local and attempt < self.retry.max_attempts:
                    r = self.retry
                    pause = full_jitter(attempt, base=r.base_delay, cap=r.max_delay, rng=self.rng)
                    if exc.retry_after is not None:
                        # A file host's 429 says when it will serve us again: tries within our
                        # own backoff (seconds) all came back 429, and the output was left to
                        # the next run, which met the same host.
                        pause = max(pause, min(exc.retry_after, self.max_wait))
                    await self.clock.sleep(pause)
                    continue
                if exc.gone and task.may_poll_again:
                    # Its URL may have lapsed (a presigned URL lasts hours) while the file is
                    # still kept: a poll of the job hands out new ones, one request, not a POST.
                    # Its answer decides: COMPLETED, saved from the new URLs (tried once, as
                    # files of a job this old: Job.refetch_age); a record gone (404), expired.
                    self.stats.downloading -= 1
                    self.stats.polled_for_urls += 1
                    log.info("%s: %s; polling the job again for new output URLs", task.job_id, exc)
                    return True
                if exc.gone and not task.fresh and not task.young:
                    # Old enough for its files to be gone for good: only a new POST can make it.
                    # The job is ``expired``, as one whose record is gone; not fetched again, and
                    # run again (paid) only with --retry-failed.
                    error = (
                        f"{exc}: the provider no longer has it (outputs are kept about 7 days);"
                        " `batcher run --retry-failed` runs the job again (paid again)"
                    )
                    self.ledger.event(task.job_id, "expired", self.clock.wall(), error=error)
                    self.stats.outcomes["expired"] += 1
                    self.stats.downloading -= 1
                    log.warning("%s: %s", task.job_id, error)
                    return False
                self.ledger.event(
                    task.job_id,
                    "download_failed",
                    self.clock.wall(),
                    error=_younger(exc) if exc.gone else str(exc),
                    retryable=exc.retryable or exc.gone,
                    outputs=[r.to_json() for r in task.refs],
                )
                self.stats.outcomes["download_failed"] += 1
                self.stats.downloading -= 1
                log.warning("%s: %s", task.job_id, exc)
                return False
            if not task.refs:
                log.warning("%s: the provider reported COMPLETED with no outputs", task.job_id)
            self.ledger.event(
                task.job_id, "completed", self.clock.wall(), outputs=[o.to_json() for o in saved]
            )
            self.stats.outcomes["completed"] += 1
            self.stats.downloading -= 1
            return False


def _younger(exc: DownloadFailed) -> str:
    """A gone output of a job younger than OUTPUTS_KEPT: not given up yet."""
    return (
        f"{exc}: the job is younger than the {OUTPUTS_KEPT / 86400:g} days the provider is taken to"
        " keep outputs, so the next run fetches it again (not paid again); after that it is expired"
    )
