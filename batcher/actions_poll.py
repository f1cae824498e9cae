"""What a poll's answer means for its job and the run (the table is in :mod:`batcher.actions`):
poll again, hand a finished job's outputs to the downloads, or end it.
"""

from __future__ import annotations

import logging

from .actions_base import ActionsBase, refusal_reason
from .collect import DownloadTask
from .errors import (
    AuthError,
    BatcherError,
    ForeignHostError,
    InsufficientCredits,
    NotFound,
    RateLimited,
    RemoteError,
    TransportError,
)
from .status_text import human_duration
from .work import Job

log = logging.getLogger("batcher")


class PollActions(ActionsBase):
    """Polls a job and records what its answer means."""

    async def poll(self, job: Job) -> None:
        assert job.poll_url is not None
        try:
            result = await self.api.poll(job.poll_url, job_id=job.job_id)
        except ForeignHostError as exc:
            # Nothing was sent. Retryable: the job is paid for, and once the host is allowed
            # (api.credential_hosts) the next run polls it; --retry-failed would POST it again.
            self._event(job, "failed", error=str(exc), retryable=True)
            self._end(job, "failed")
            log.warning("%s: %s", job.job_id, exc)
            return
        except RateLimited as exc:
            self._throttled(job, exc, "poll")
            return
        except NotFound as exc:
            # Records are kept for days: a single 404 may be a replica that has not seen a new
            # request yet. Only a 404 that persists through the retries means the record is gone.
            job.errors += 1
            if job.errors < self.settings.retry.max_attempts:
                self.sched.schedule(job, "poll", self.clock.monotonic() + self._backoff(job))
                return
            self._event(job, "expired", error=f"the provider no longer knows this request ({exc})")
            self._end(job, "expired")
            return
        except AuthError as exc:
            # Nothing more is sent. The job stays counted in flight, as it is: submitted, its
            # poll_url in the ledger, re-attached by the next run.
            self.sched.halt(f"the provider refused the API key ({exc})", by_provider=True)
            return
        except InsufficientCredits as exc:
            # The account can start no more jobs (the contract: stop submitting, keep polling
            # what is in flight); more POSTs would only be refused.
            self.sched.stop(refusal_reason(exc), by_provider=True)
            self._poll_again(job, exc)
            return
        except (RemoteError, TransportError) as exc:
            self._poll_again(job, exc)
            return
        now = self.clock.monotonic()
        self.sched.rate.on_success(now)
        if result.credits is not None:
            self.stats.credits = result.credits
        job.polls += 1
        empty = result.status == "COMPLETED" and not result.outputs
        if not empty:
            job.errors = 0
        elapsed = now - (job.submitted_at if job.submitted_at is not None else now)
        if job.polls == 1 and not job.attached:
            self.polls.first_polled(job.workflow, result.status in ("COMPLETED", "FAILED"))
        if empty:
            self._completed_empty(job, result.error)
        elif result.status == "COMPLETED":
            refs = tuple(result.outputs)
            cut = {"outputs_cut_at": len(refs)} if result.outputs_cut else {}
            self._event(
                job,
                "generated",
                outputs=[r.to_json() for r in refs],
                polls=job.polls,
                **self._learn(job, elapsed),
                **cut,
            )
            if cut:
                log.warning(
                    "%s: the answer names more than %d outputs; only the first %d are saved",
                    job.job_id,
                    len(refs),
                    len(refs),
                )
            self.sched.finish(job)
            self.stats.downloading += 1
            if job.refetch_age is None:
                task = DownloadTask(job.job_id, job.workflow, refs, fresh=True)
            else:  # its files are as old as they were; tried once, and not polled for again
                task = DownloadTask(job.job_id, job.workflow, refs, age=job.refetch_age)
            self.downloads.put(task)
        elif result.status == "FAILED":
            self._learn(job, elapsed)
            error = f"the provider reported FAILED: {result.error}"
            self._event(job, "failed", error=error, retryable=False)
            self._end(job, "failed")
            log.warning("%s: %s", job.job_id, error)  # the summary points to these lines
        else:
            job.last_unfinished = elapsed
            if result.status not in ("QUEUED", "PROCESSING") and result.status != job.last_remote:
                self._event(job, "polled", remote_status=result.status)
            job.last_remote = result.status
            if now >= job.give_up_at:
                self._give_up(job, result.status)
                return
            # Never past the cap: the poll that finds it still unfinished there gives it up on
            # time (a job re-attached a day old was otherwise next polled half a day later).
            due = now + self.polls.next_delay(job.workflow, elapsed, job.polls)
            self.sched.schedule(job, "poll", min(due, job.give_up_at))

    def _poll_again(self, job: Job, exc: BatcherError) -> None:
        """A poll that may pass next time: tried again with backoff, a bounded number of times."""
        job.errors += 1
        if job.errors >= self.settings.retry.max_attempts:
            # The poll_url stays in the ledger: the next run re-attaches; it never resubmits.
            self._event(
                job, "failed", error=f"polling gave up after {job.errors} tries: {exc}", retryable=True
            )
            self._end(job, "failed")
        else:
            self.sched.schedule(job, "poll", self.clock.monotonic() + self._backoff(job))

    def _learn(self, job: Job, elapsed: float) -> dict[str, float]:
        """Teach the duration model what this poll bracketed, and return the bracket for the
        ``generated`` line. Only a job this run submitted: a re-attached job's age spans the gap
        between two runs, read off the wall clock (which may have been stepped, or wrong in
        either run), so its bracket could be days too long or shorter than any real job."""
        if job.attached:
            return {}
        self.durations.observe(job.workflow, job.last_unfinished, elapsed)
        return {"finished_after": round(job.last_unfinished, 3), "finished_by": round(elapsed, 3)}

    def _give_up(self, job: Job, remote_status: str) -> None:
        """Still unfinished ``poll.give_up_after`` after this run submitted or re-attached it (a
        provider that answers PROCESSING, QUEUED or an unknown status forever): stop polling it,
        so the run can end. Paid for: ``failed``, retryable, with its poll_url known, which the
        next run re-attaches (with or without --retry-failed) and never POSTs again."""
        cap = self.settings.poll.give_up_after
        assert cap is not None
        error = (
            f"gave up polling: still {remote_status} after {human_duration(cap)} of polling in this run "
            "(poll.give_up_after); it is paid for: the next run re-attaches it by its poll_url, "
            "never POSTs it again"
        )
        self._event(job, "failed", error=error, retryable=True, gave_up_polling=True)
        self.stats.gave_up_polling += 1
        self.sched.finish(job)
        log.warning("%s: %s", job.job_id, error)

    def _completed_empty(self, job: Job, why: str | None) -> None:
        """COMPLETED, with no output in the answer (``""``, missing, or entries without data) or
        one that cannot be read (``why``: JSON cut short): paid for, and nothing to save; the
        output may not be filled in yet. Polled again with backoff, a bounded number of times,
        like a poll error; then ``failed``, retryable: the next run polls it again and never
        pays for it twice. Never ``completed`` with nothing, or with the broken text as a file."""
        job.errors += 1
        error = "the provider reported COMPLETED" + (f", but {why}" if why else " with no output")
        if job.errors >= self.settings.retry.max_attempts:
            self._event(job, "failed", error=f"{error} ({job.errors} polls)", retryable=True)
            self._end(job, "failed")
            log.warning("%s: %s", job.job_id, error)
        else:
            self.sched.schedule(job, "poll", self.clock.monotonic() + self._backoff(job))
