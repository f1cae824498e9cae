"""The scheduler: one loop that spends one request budget on submissions and polls.

Every request, submit or poll, is a unit of the account's budget (:mod:`batcher.ratecontrol`).
Jobs waiting for a timed action (their next poll, or a retry) sit in a heap ordered by due time;
new jobs wait in a small bounded queue filled lazily from the manifest. Each time the budget
allows one request, the loop sends, in order of preference:

1. the most overdue timed action (a poll, or a retry), because detecting a finished job frees
   a concurrency slot and is what the job was paid for;
2. otherwise a new submission, if fewer than ``concurrency`` jobs are in flight and nothing has
   stopped submissions;
3. otherwise it sleeps until the next due time or until something changes.

Except when slots are what is scarce (work waited for a slot most of the recent time, see
:mod:`batcher.pressure`): then a freed slot is refilled before due polls. Polls that notice jobs
within ~10% of their duration can take most of the budget; a submission queued behind them
left its slot idle a token or more each time (4 slots of 15 s / 90 s jobs at 40 a minute:
1.10-1.15x the bound; refilled first, 1.04-1.09x, in ``tests/test_policies_simulated.py``).

Requests are performed by a fixed pool of ``max_requests`` worker tasks in the scheduler's task
group, fed through a :class:`~batcher.handoff.Handoff` (structured concurrency: nothing outlives
:meth:`Scheduler.run`; and a handoff costs a fraction of starting a task per request, which
``bench/overhead.py`` measured at 30 µs). The loop dispatches only while a worker is free, so a
request never waits in the handoff. What each answer means for a job is in :mod:`batcher.actions`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from .clock import Clock
from .guards import SubmitGuard
from .handoff import Handoff
from .outage import SubmitCircuit
from .pressure import BudgetPressure
from .ratecontrol import RateController
from .work import Action, Job, PendingQueue, Timed, set_done

#: When work has waited for a concurrency slot this share of recent time, a slot that frees is
#: refilled before due polls: an idle slot costs more than a poll a token late.
SLOTS_FIRST = 0.5


class Scheduler:
    """Dispatches requests for jobs; :mod:`batcher.actions` decides what answers mean."""

    def __init__(
        self,
        *,
        clock: Clock,
        rate: RateController,
        concurrency: int,
        max_requests: int,
        pending_limit: int = 64,
    ) -> None:
        self.clock = clock
        self.rate = rate
        self.concurrency = concurrency
        #: Something changed since the loop last looked; ``_waiter`` is its sleep, if it sleeps.
        self._woken = False
        self._waiter: asyncio.Future[None] | None = None
        self.pending = PendingQueue(pending_limit, self.wake)
        self._heap: list[Timed] = []
        self._seq = itertools.count()
        #: Requests on the wire at once, at most (one worker task each).
        self.max_requests = max(1, max_requests)
        self._active: dict[Action, int] = {"submit": 0, "poll": 0}
        #: Set when the last POST in progress lands; made only when someone waits for that.
        self._submits_landed: anyio.Event | None = None
        #: How contested the budget is (see :mod:`batcher.pressure`).
        self.budget = BudgetPressure()
        #: Jobs submitted (or being submitted) and not finished at the provider.
        self.in_flight = 0
        #: Downloads that may still hand their job back to be polled (see :meth:`hold`).
        self._held = 0
        self.unsent: list[Job] = []
        #: Asked before every POST (see :mod:`batcher.guards`).
        self.guards: list[SubmitGuard] = []
        #: POSTs in a row without a clear answer hold the others back (see :mod:`batcher.outage`).
        self.circuit = SubmitCircuit()
        #: Retries of a POST that came due while the circuit held POSTs back (counted in flight).
        self._parked: deque[Job] = deque()
        #: Why no more jobs may be submitted (None: they may).
        self.stop_submitting: str | None = None
        #: Workflows (by name) whose jobs may not be submitted, and why: the provider does not
        #: know them (a 404 on submit). Jobs of other workflows still go.
        self.closed: dict[str, str] = {}
        #: True when the provider's answer (401/403, 404, 406) stopped submissions, of the
        #: whole run or of a workflow.
        self.stopped_by_provider = False
        #: Why nothing more may be sent at all (None: it may).
        self.halted: str | None = None
        #: Called as each request is dispatched, before the loop decides anything else.
        self.on_dispatch: Callable[[Job, Action], None] | None = None
        #: Set by the engine: the coroutine that performs one request for a job.
        self.perform: Callable[[Job, Action], Awaitable[None]] | None = None

    # --- called by actions and the engine ---------------------------------------------

    def schedule(self, job: Job, action: Action, at: float) -> None:
        job.next_action = action
        heapq.heappush(self._heap, Timed(at, next(self._seq), job))
        self.wake()

    def attach(self, job: Job) -> None:
        """A job already in flight (its poll_url came from the ledger): poll it now."""
        job.attached = True
        self.in_flight += 1
        self.schedule(job, "poll", self.clock.monotonic())

    def hold(self) -> None:
        """A download that may hand its job back to be polled again is queued: the loop does
        not end (every job done) until :meth:`release` says what became of it."""
        self._held += 1

    def release(self, job: Job | None) -> None:
        """A held download is settled: ``job`` is to be polled again (:meth:`attach`), or None."""
        self._held -= 1
        if job is not None:
            self.attach(job)
        self.wake()

    def finish(self, job: Job) -> None:
        """The job no longer needs requests from this run."""
        self.in_flight -= 1
        self.wake()

    def stop(self, reason: str, *, by_provider: bool = False) -> None:
        """No more submissions; in-flight jobs are still polled. The first reason is kept, except
        that the provider's (a refused key, an unknown workflow, no credits) outranks one of the
        run's own (a guard, the output folder): the exit code (3) and the summary say so."""
        if self.stop_submitting is None:
            #: Jobs that were queued but never sent; the engine counts them as left over.
            self.unsent.extend(self.pending.refuse())
            while self._parked:
                self.unsent.append(self._parked.popleft())
                self.in_flight -= 1
        if self.stop_submitting is None or (by_provider and not self.stopped_by_provider):
            self.stop_submitting = reason
            self.stopped_by_provider = by_provider
        self.wake()

    def close(self, workflow: str, reason: str) -> bool:
        """No more submissions of ``workflow`` (the provider said it does not know it); other
        workflows' jobs still go, and in-flight jobs are still polled. False if it was closed."""
        self.wake()
        if workflow in self.closed:
            return False
        self.closed[workflow] = reason
        self.stopped_by_provider = True
        return True

    @property
    def stop_reason(self) -> str | None:
        """Why submissions stopped, of the whole run and of workflows (None: they did not)."""
        reasons = [self.stop_submitting] if self.stop_submitting is not None else []
        return "; ".join([*reasons, *self.closed.values()]) or None

    def halt(self, reason: str, *, by_provider: bool = False) -> None:
        """Nothing more is sent at all."""
        if self.halted is None:
            self.halted = reason
        self.stop(reason, by_provider=by_provider)

    def wake(self) -> None:
        self._woken = True
        if self._waiter is not None:
            set_done(self._waiter)

    @property
    def pressure(self) -> float:
        """How contested the request budget is, 0 to 1 (read by the poll policy)."""
        return self.budget.value

    def next_due(self) -> float | None:
        return self._heap[0].at if self._heap else None

    def resends_waiting(self) -> int:
        """Jobs waiting in the heap to send their POST again (after a 429, a 5xx, a lost answer):
        counted in flight, but with no poll_url, so a later run sends them, not re-attaches them."""
        return len(self._parked) + sum(1 for timed in self._heap if timed.job.next_action == "submit")

    async def submits_idle(self) -> None:
        """Wait until no POST is in progress (used to let them land on shutdown)."""
        if self._active["submit"] == 0:
            await anyio.lowlevel.checkpoint()
            return
        if self._submits_landed is None:
            self._submits_landed = anyio.Event()
        await self._submits_landed.wait()

    # --- the loop ----------------------------------------------------------------------

    def _objection(self, job: Job, now: float) -> bool:
        """Whether ``job`` may not be sent: its workflow is closed, or a guard objects (the first
        objection stops submissions for the rest of the run)."""
        if job.workflow in self.closed:
            return True
        for guard in self.guards:
            reason = guard.objection(workflow=job.workflow, price=job.price, now=now)
            if reason is not None:
                self.stop(reason)
                return True
        return False

    def _post_waiting(self) -> bool:
        """A POST could go if nothing held it back: a parked retry, or a new row and a free slot."""
        return self.stop_submitting is None and (
            bool(self._parked) or (self.in_flight < self.concurrency and len(self.pending) > 0)
        )

    def _may_submit(self, now: float) -> bool:
        return self._post_waiting() and self.circuit.allows(now, self._active["submit"])

    def _next_wake(self, now: float) -> float | None:
        """When the loop has something to do next, if nothing else changes: the next due action,
        or the next probe of an open circuit with POSTs waiting for it."""
        at = self.next_due()
        if self.circuit.open and not self._active["submit"] and self._post_waiting():
            at = self.circuit.next_probe if at is None else min(at, self.circuit.next_probe)
        return at

    def _drained(self) -> bool:
        if self._busy() or self._heap or self._parked or self._held:
            return False
        if self.halted or self.stop_submitting:
            return True
        return self.pending.closed and len(self.pending) == 0

    async def _sleep(self, seconds: float | None) -> None:
        """Sleep up to ``seconds`` (forever if None), waking early when anything changes.

        A bare future and a loop timer, not an anyio Event in a ``move_on_after`` scope: the loop
        sleeps a few times a job, and a cancel scope (and a timeout delivered as a cancellation)
        cost several times more. Cancelling the task cancels the future, as with any await."""
        # Single-threaded: nothing can wake us between the future resolving and the reset.
        if not self._woken:
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            delay = None if seconds is None else self.clock.loop_delay(seconds)
            timer = None if delay is None else loop.call_later(delay, set_done, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        self._woken = False

    async def run(self) -> None:
        """Send requests until every job is finished or stopped."""
        assert self.perform is not None, "engine must set Scheduler.perform"
        work: Handoff[tuple[Job, Action]] = Handoff()
        async with anyio.create_task_group() as tg:
            for _ in range(self.max_requests):
                tg.start_soon(self._worker, work)
            try:
                await self._loop(work)
            finally:
                work.close()

    async def _loop(self, work: Handoff[tuple[Job, Action]]) -> None:
        while not self.halted:
            now = self.clock.monotonic()
            due = bool(self._heap) and self._heap[0].at <= now
            may_submit = self._may_submit(now)
            if not due and not may_submit:
                self._observe(now, waiting=False)
                if self._drained():
                    break
                next_at = self._next_wake(now)
                await self._sleep(None if next_at is None else next_at - now)
                continue
            if self._busy() >= self.max_requests:
                self._observe(now, waiting=False)
                await self._sleep(None)  # every worker busy: the first to finish wakes us
                continue
            wait = self.rate.wait_time(now)
            # Pressure is a submission kept waiting by the budget: polls that queue behind
            # each other are already spread out by the limiter and the heap.
            self._observe(now, waiting=may_submit and wait > 0)
            if wait > 0:
                await self._sleep(wait)
                continue
            if due and not (may_submit and self.budget.slots > SLOTS_FIRST):
                timed = heapq.heappop(self._heap)
                job, action = timed.job, timed.job.next_action
                if action == "submit":
                    if self.stop_submitting or self._objection(job, now):
                        self.unsent.append(job)  # a retry of a POST that may no longer go out
                        self.finish(job)
                        continue
                    if not self.circuit.allows(now, self._active["submit"]):
                        self._parked.append(job)  # sent when the circuit lets POSTs go again
                        continue
            elif self._parked:
                job, action = self._parked.popleft(), "submit"
                if self._objection(job, now):
                    self.unsent.append(job)
                    self.finish(job)
                    continue
            else:
                popped = self.pending.pop()
                if popped is None:
                    continue
                if self._objection(popped, now):
                    self.unsent.append(popped)
                    continue
                job, action = popped, "submit"
                self.in_flight += 1
            self.rate.acquire(self.clock.monotonic())
            self._begin(action)
            job.sent_at = self.clock.monotonic()
            if self.on_dispatch is not None:
                # Synchronous, before the next decision: guards see this request counted.
                self.on_dispatch(job, action)
            work.put((job, action))

    def _observe(self, now: float, *, waiting: bool) -> None:
        """Tell the pressure meter what holds submissions back from ``now`` on: the budget
        (``waiting``), or full concurrency slots with work queued."""
        slots_full = self.stop_submitting is None and self.in_flight >= self.concurrency
        self.budget.observe(
            now, waiting=waiting, rate=self.rate.rate, slots_full=slots_full and len(self.pending) > 0
        )

    def _begin(self, action: Action) -> None:
        self._active[action] += 1

    def _busy(self) -> int:
        return self._active["submit"] + self._active["poll"]

    async def _worker(self, work: Handoff[tuple[Job, Action]]) -> None:
        """Perform dispatched requests one at a time until the loop closes the handoff."""
        assert self.perform is not None
        while (item := await work.get()) is not None:
            job, action = item
            try:
                await self.perform(job, action)
            finally:
                self._active[action] -= 1
                if action == "submit" and self._active["submit"] == 0 and self._submits_landed is not None:
                    self._submits_landed.set()
                    self._submits_landed = None
                self.wake()
