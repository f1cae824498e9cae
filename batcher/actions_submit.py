"""What a submit's answer means for its job and the run (the table is in :mod:`batcher.actions`):
the POST, its ``submitting`` line fsynced first, and every way it can end.
"""

from __future__ import annotations

import logging

import anyio

from .actions_base import ActionsBase, refusal_reason
from .errors import (
    AuthError,
    BadRequest,
    BatcherError,
    ConnectError,
    InsufficientCredits,
    LedgerWriteError,
    NotFound,
    RateLimited,
    RemoteError,
    TransportError,
    UnexpectedStatus,
    WrongEndpoint,
)
from .inputs import materialize, preview_inputs
from .work import Job
from .workflows import Workflow

log = logging.getLogger("batcher")


class SubmitActions(ActionsBase):
    """POSTs a job and records what its answer means."""

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
        log.debug("%s: submitting recorded; sending its POST", job.job_id)
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
            self.sched.stop(refusal_reason(exc), by_provider=True)

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
