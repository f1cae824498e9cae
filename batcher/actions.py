"""What one request does for one job, and what each answer means for the job and the run.

The classification follows ``../shared/segmind-api.md``:

====================  ===================================  =====================================
answer                on submit                            on poll
====================  ===================================  =====================================
200 (any 2xx)         ``submitted`` (poll_url, durable);   QUEUED/PROCESSING/other: poll again;
                      no poll_url/request_id: an error     COMPLETED: ``generated``, download
                      it spells out (FAILED, ``error``,    (no output, or its JSON cut: poll again);
                      a code) is that refusal (a 400       FAILED: ``failed`` (not retryable);
                      without a code); anything else is    unfinished after poll.give_up_after:
                      an unknown outcome, as a 5xx         ``failed`` (retryable: re-attached)
400 (422)             ``failed``, not retryable            retry (a poll has no input to reject)
401 / 403             stop the run (exit 3)                stop the run (exit 3)
404                   stop submitting its workflow (3)     retry, bounded; then ``expired``
406                   stop submitting, keep polling (3)    stop submitting (3); retry, bounded
405, 3xx              stop submitting (3): wrong URL       retry, bounded
429                   pause the whole run, retry the job   pause the whole run, poll again
5xx, timeout, reset   outcome unknown: ``submit_unknown``, retry with backoff, bounded; then
                      resubmit with backoff (or fail)      ``failed`` (retryable: re-attached)
====================  ===================================  =====================================

Durability: ``submitting`` is fsynced before the POST, and ``submitted`` is written the moment
the answer arrives (safe from kill -9 at once, on disk with the next group commit, within a
second), so a job whose poll_url the provider gave us is never POSTed again after a killed
process.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import anyio

from .api import SegmindAPI
from .backoff import full_jitter
from .clock import Clock
from .collect import DownloadTask
from .config import Settings
from .durations import DurationModel
from .errors import (
    AuthError,
    BadRequest,
    BatcherError,
    ConnectError,
    ForeignHostError,
    InsufficientCredits,
    LedgerWriteError,
    NotFound,
    RateLimited,
    RemoteError,
    TransportError,
    UnexpectedStatus,
    WrongEndpoint,
)
from .handoff import Handoff
from .inputs import materialize, preview_inputs
from .ledger import Ledger
from .pollpolicy import PollPolicy
from .scheduler import Action, Job, Scheduler
from .stats import RunStats
from .status_text import human_duration
from .workflows import Workflow, WorkflowRegistry

log = logging.getLogger("batcher")


class Actions:
    """Performs requests for the scheduler and records every step in the ledger."""

    def __init__(
        self,
        *,
        api: SegmindAPI,
        ledger: Ledger,
        scheduler: Scheduler,
        polls: PollPolicy,
        durations: DurationModel,
        settings: Settings,
        registry: WorkflowRegistry,
        stats: RunStats,
        downloads: Handoff[DownloadTask],
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.api = api
        self.ledger = ledger
        self.sched = scheduler
        self.polls = polls
        self.durations = durations
        self.settings = settings
        self.registry = registry
        self.stats = stats
        self.downloads = downloads
        self.clock = clock
        self.rng = rng

    def dispatched(self, job: Job, action: Action) -> None:
        """Count a request the moment it is dispatched (the budget guard reads this)."""
        self.stats.requests[action] += 1
        if action == "submit":
            self.stats.committed_usd += job.price or 0.0  # until an answer proves it was not billed

    async def perform(self, job: Job, action: Action) -> None:
        if action == "submit":
            await self.submit(job)
        else:
            await self.poll(job)

    # --- helpers ---------------------------------------------------------------------

    def _event(self, job: Job, status: str, **fields: Any) -> None:
        self.ledger.event(job.job_id, status, self.clock.wall(), **fields)

    def _end(self, job: Job, outcome: str) -> None:
        self.stats.outcomes[outcome] += 1
        self.sched.finish(job)

    def _backoff(self, job: Job) -> float:
        r = self.settings.retry
        return full_jitter(job.errors, base=r.base_delay, cap=r.max_delay, rng=self.rng)

    def _throttled(self, job: Job, exc: RateLimited, action: Action) -> None:
        self.stats.throttled += 1
        now = self.clock.monotonic()
        resume = self.sched.rate.on_throttled(now, exc.retry_after, job.sent_at)
        # Spread the retries after the pause a little, so they do not all land at once.
        self.sched.schedule(job, action, resume + self.rng.uniform(0.0, 0.001))

    # --- submit ----------------------------------------------------------------------

    async def submit(self, job: Job) -> None:
        spec = job.spec
        assert spec is not None, "a job is submitted only from its manifest row"
        wf = spec.workflow
        try:
            body = materialize(wf.inputs, spec.inputs, spec.base_dir)
        except OSError as exc:
            self.stats.committed_usd -= job.price or 0.0
            self._event(job, "failed", error=f"cannot read local input file: {exc.strerror}", retryable=False)
            self._end(job, "failed")
            return
        price = job.price or 0.0
        # A row with its own id: a hash of what it says, so that a later edit under the same id
        # is noticed (a row without one is named after what it sends already).
        named = {"inputs_hash": spec.inputs_hash()} if spec.named else {}
        try:
            self.ledger.submitting(
                job.job_id,
                self.clock.wall(),
                workflow=wf.name,
                workflow_id=wf.workflow_id,
                source=spec.path,
                line=spec.line,
                inputs=preview_inputs(spec.inputs, spec.base_dir),
                **named,
            )
            await self.ledger.sync()
        except (LedgerWriteError, anyio.get_cancelled_exc_class()):
            # Not recorded (its line is cut again), or the run stopped while the line waited for
            # its fsync: never POSTed, left for the next run.
            self._not_posted(job, "the run stopped before its POST was sent")
            raise
        if self.sched.halted:
            # The run stopped (a signal, --max-runtime, a refused key) while the line waited for
            # its fsync: the POST has not left, and nothing more is sent.
            self._not_posted(job, f"the run stopped before its POST was sent ({self.sched.halted})")
            return
        log.debug("%s: submitting recorded, POST sent", job.job_id)
        sent = False

        def sending() -> None:
            # Called when the POST holds a connection slot: from here on it may reach the
            # provider. A POST cancelled before that (waiting for a slot) never left.
            nonlocal sent
            sent = True
            if job.post_unknown:
                # Counted when it is sent, not when it was queued: a guard or a stop may keep
                # it from being sent at all.
                job.post_unknown = False
                self.stats.resubmitted_unknown += 1

        try:
            sub = await self.api.submit(wf.workflow_id, body, job_id=job.job_id, on_send=sending)
        except (
            RateLimited,
            BadRequest,
            AuthError,
            NotFound,
            InsufficientCredits,
            WrongEndpoint,
            UnexpectedStatus,
        ) as exc:
            self.stats.committed_usd -= price  # a definite "no": nothing started, nothing billed
            self._refused(job, wf, exc)
        except ConnectError as exc:
            self.stats.committed_usd -= price  # never connected: the POST did not leave this machine
            self._not_sent(job, exc)
        except (RemoteError, TransportError) as exc:
            self._unknown(job, exc)
        except anyio.get_cancelled_exc_class():
            if not sent:
                # Stopped while it waited for a connection slot: nothing left this machine.
                self._not_posted(job, "the run stopped before its POST was sent")
                raise
            # The run stopped (a signal, --max-runtime) before the answer came: the outcome is
            # unknown, as after a 5xx, and the next run sends it again (or fails it, per
            # ledger.unknown_submit). It is not a job in flight that the next run re-attaches.
            self.stats.unknown_outcomes += 1
            self.stats.cut_submits += 1
            self.sched.finish(job)
            if self.ledger.failed is None:  # else its `submitting` line says as much already
                self._event(
                    job, "submit_unknown", error="the run stopped before the answer came", retryable=True
                )
            raise
        else:
            self.sched.rate.on_success(self.clock.monotonic())
            self.sched.circuit.answered()
            self.stats.submitted += 1
            self.stats.spend_usd += price
            try:
                # Safe from kill -9 once written; on disk with the next POST's sync or within a second.
                self._event(job, "submitted", request_id=sub.request_id, poll_url=sub.poll_url)
            except LedgerWriteError:
                self._unrecorded(job, sub.request_id)
                raise
            log.debug("%s: submitted as request %s", job.job_id, sub.request_id)
            if sub.credits is not None:
                self.stats.credits = sub.credits
            job.request_id, job.poll_url = sub.request_id, sub.poll_url
            job.submitted_at = self.clock.monotonic()
            job.give_up_at = self.settings.poll.give_up_at(job.submitted_at)
            job.errors = 0
            job.spec = None  # the inputs are not needed any more; keep in-flight jobs small
            self.sched.schedule(job, "poll", job.submitted_at + self.polls.first_delay(job.workflow))

    def _not_posted(self, job: Job, why: str) -> None:
        """The run stopped between a job's ``submitting`` line and its POST leaving this machine:
        nothing was sent or billed. Left for the next run, and recorded as ``deferred`` (unless
        the ledger can take no more lines: then a ``submitting`` line not yet synced was cut
        again), so the next run sends it as a job never sent, not as a POST of unknown outcome
        (which ``ledger.unknown_submit: fail`` would fail for good). A job that had an earlier
        POST of unknown outcome keeps it: only a ``submitted`` line settles that."""
        self.stats.committed_usd -= job.price or 0.0
        self.stats.requests["submit"] -= 1
        self.stats.left += 1
        self.sched.finish(job)
        if self.ledger.failed is None:
            self._event(job, "deferred", error=f"not sent: {why}", retryable=True)

    def _unrecorded(self, job: Job, request_id: str) -> None:
        """Accepted (and billed), but the ledger failed before it took the poll_url: the next run
        sees only the synced ``submitting`` line, so it counts this POST as of unknown outcome
        (sent again, or failed per ledger.unknown_submit), never as a fresh job."""
        self.stats.unrecorded += 1
        self.sched.finish(job)
        log.error(
            "%s: accepted by the provider as request %s, but the ledger could not record it;"
            " the next run counts its POST as of unknown outcome",
            job.job_id,
            request_id,
        )

    def _refused(self, job: Job, wf: Workflow, exc: RemoteError) -> None:
        """The provider said no to a POST: the job was not started."""
        self.sched.circuit.answered()
        if isinstance(exc, RateLimited):
            self._event(job, "deferred", error=str(exc), retryable=True)
            self._throttled(job, exc, "submit")
            return
        if isinstance(exc, BadRequest | UnexpectedStatus):
            note = "" if isinstance(exc, BadRequest) else " (unexpected; please report it)"
            self._event(job, "failed", error=f"{exc}{note}", retryable=False)
            self._end(job, "failed")
            log.warning("%s: %s", job.job_id, exc)
            return
        self._event(job, "deferred", error=str(exc), retryable=True)
        self._end(job, "deferred")
        if isinstance(exc, AuthError):
            self.sched.halt(f"the provider refused the API key ({exc})", by_provider=True)
        elif isinstance(exc, WrongEndpoint):
            # Every POST would get the same answer: failing each job for good (as an odd status
            # does) went through the whole manifest, and only --retry-failed could send them.
            url = self.api.submit_url(wf.workflow_id)
            self.sched.stop(
                f"POST {url} is not taken there ({exc}); check api.base_url and api.submit_path",
                by_provider=True,
            )
        elif isinstance(exc, NotFound):
            # The provider does not know this workflow: its other jobs would get the same 404;
            # other workflows' jobs are sent as usual (the contract: stop for that workflow).
            reason = (
                f"workflow {wf.name} ({wf.workflow_id}) not found at the provider ({exc}); none of"
                " its jobs is sent, other workflows' are"
            )
            if self.sched.close(wf.name, reason):
                log.error("%s", reason)
        else:
            self.sched.stop(_refuses_jobs(exc), by_provider=True)

    def _not_sent(self, job: Job, exc: ConnectError) -> None:
        """No connection to the API host (refused, DNS, TLS handshake): nothing was sent, so
        nothing was started or billed. Tried again after a backoff; after the last try the job
        is left for the next run, never failed (``unknown_submit: fail`` is for POSTs that left)."""
        self._event(job, "deferred", error=f"not sent: {exc}", retryable=True)
        job.errors += 1
        if job.errors >= self.settings.retry.max_attempts:
            self._end(job, "deferred")
            log.warning("%s: not sent after %d tries, left for the next run: %s", job.job_id, job.errors, exc)
        else:
            self.sched.schedule(job, "submit", self.clock.monotonic() + self._backoff(job))

    def _unknown(self, job: Job, exc: BatcherError) -> None:
        """5xx, a 200 we could not read, a timeout, a reset: the provider may or may not have
        started (and billed) the job, and there is no idempotency key to ask."""
        self.stats.unknown_outcomes += 1
        self._event(job, "submit_unknown", error=str(exc), retryable=True)
        self._no_answer(exc)
        job.errors += 1
        if self.settings.ledger.unknown_submit == "fail":
            self._event(job, "failed", error=f"outcome of the POST unknown: {exc}", retryable=False)
            self._end(job, "failed")
        elif job.errors >= self.settings.retry.max_attempts:
            self._event(job, "failed", error=f"gave up after {job.errors} tries: {exc}", retryable=True)
            self._end(job, "failed")
        else:
            self.sched.schedule(job, "submit", self.clock.monotonic() + self._backoff(job))

    def _no_answer(self, exc: BatcherError) -> None:
        """One more POST in a row without a clear answer: past a few, the others wait and one at a
        time goes; past many, submitting stops for this run (see :mod:`batcher.outage`)."""
        circuit = self.sched.circuit
        if circuit.no_answer(self.clock.monotonic()):
            log.warning(
                "the provider gave no clear answer to %d POSTs in a row (last: %s); each may have"
                " started a billed job, so one goes at a time until it answers",
                circuit.streak,
                exc,
            )
        if circuit.given_up:
            self.sched.stop(
                f"the provider gave no clear answer to {circuit.streak} POSTs in a row (last: {exc});"
                " each may have started a billed job, so no more are sent this run"
            )

    # --- poll ------------------------------------------------------------------------

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
            self.sched.stop(_refuses_jobs(exc), by_provider=True)
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
            self.downloads.put(DownloadTask(job.job_id, job.workflow, refs, fresh=True))
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


def _refuses_jobs(exc: RemoteError) -> str:
    """Why a 406 stops submissions. The provider answers 406 for insufficient credits, a team
    spend limit, or a wrong Content-Type: "insufficient credits" only when it says so (an
    operator told so tops up an account that a spend limit, or a bug, is holding back)."""
    said = str(exc)
    if (isinstance(exc, InsufficientCredits) and exc.balance is not None) or "credit" in said.lower():
        return f"insufficient credits ({said})"
    return f"the provider refuses new jobs ({said})"
