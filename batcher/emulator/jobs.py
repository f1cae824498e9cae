"""The job store: every accepted submission, its lifecycle, its bill and its outputs.

A job's status is derived from the clock when asked, not pushed by timers: at submit the store
draws the job's duration and fate and books it on the worker pool, which fixes when it starts and
when its work is over. Only the render (real Pillow work, done elsewhere) arrives as an event; a
job is finished once both its time is up and its render is in.

Determinism: a job's draws depend only on (seed, canonical input, how many times that input was
submitted before), so two runs that submit the same inputs get the same durations and fates
whatever order their requests interleave in.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .catalog import CatalogWorkflow
from .config import EmulatorConfig
from .faults import seeded

QUEUED = "QUEUED"
PROCESSING = "PROCESSING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
STATES = (QUEUED, PROCESSING, COMPLETED, FAILED)

_CONCRETE_ERROR_SHAPES = ("string", "object", "list")

# Failures a GPU workflow service reports; one is picked per failing job.
_FAILURE_REASONS = (
    "CUDA out of memory. Tried to allocate 2.00 GiB",
    "Model inference timed out after 300 seconds",
    "Worker crashed while executing node",
    "Upstream model returned an empty result",
)


@dataclass(frozen=True)
class Fate:
    """What a job will do, drawn at submit."""

    duration: float
    fails: bool
    #: How its FAILED answer carries ``error_message`` ("string", "object" or "list").
    error_shape: str
    reason: str


def draw_fate(config: EmulatorConfig, input_hash: str, occurrence: int) -> Fate:
    """The fate of the ``occurrence``-th submission (0-based) of one canonical input."""
    rng = seeded(config.seed, "job", input_hash, occurrence)
    u_fail, z, u_mode, u_shape, u_reason = (
        rng.random(),
        rng.gauss(0.0, 1.0),
        *(rng.random() for _ in range(3)),
    )
    if config.duration_shape == "bimodal":
        base = config.bimodal_long if u_mode < config.bimodal_long_share else config.bimodal_short
    else:
        base = config.duration_median
    shape = config.error_shape
    if shape == "mixed":
        shape = _CONCRETE_ERROR_SHAPES[int(u_shape * len(_CONCRETE_ERROR_SHAPES))]
    return Fate(
        duration=base * math.exp(config.duration_spread * z),
        fails=u_fail < config.fail_rate,
        error_shape=shape,
        reason=_FAILURE_REASONS[int(u_reason * len(_FAILURE_REASONS))],
    )


def owner_of(api_key: str) -> str:
    """Whose a job is: a digest of the API key, so no key is kept (or written to disk) in clear."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class Output:
    """One output file of a job: in memory (``data``), or in a file (``path``) under state_dir."""

    name: str
    content_type: str
    data: bytes = b""
    path: Path | None = None


@dataclass(frozen=True)
class RenderResult:
    """What rendering a job produced: its files, or why the job failed."""

    outputs: tuple[Output, ...] = ()
    error: str | None = None


@dataclass(eq=False)
class Job:
    """One accepted submission."""

    request_id: str
    workflow: CatalogWorkflow
    inputs: dict[str, str]
    input_hash: str
    occurrence: int
    #: :func:`owner_of` the API key that submitted it: only that key may poll it.
    owner: str
    fate: Fate
    submitted_at: float
    start_at: float
    #: When its worker is done with it (its render may still be running).
    finish_at: float
    render: RenderResult | None = None
    rendered_at: float | None = None
    #: Set once the store has settled the job (and billed it if it completed).
    settled: bool = field(default=False)

    def status(self, now: float) -> str:
        """Its status at monotonic time ``now``."""
        if now < self.start_at:
            return QUEUED
        if self.render is None or now < self.finish_at:
            return PROCESSING
        return FAILED if self.fate.fails or self.render.error is not None else COMPLETED

    def ended_at(self) -> float | None:
        """When it finished (both its time up and its render in), once it has."""
        if self.rendered_at is None:
            return None
        return max(self.finish_at, self.rendered_at)

    def failure(self) -> dict[str, Any]:
        """The FAILED answer's body, in the fate's error shape."""
        message = self.fate.reason
        if self.render is not None and self.render.error is not None:
            message = self.render.error
        body: dict[str, Any] = {"status": FAILED}
        if self.fate.error_shape == "list":
            # Seen in the wild: a list per failing node, and no top-level "error".
            body["error_message"] = [{"model": self.workflow.model, "error": message}]
        elif self.fate.error_shape == "object":
            body["error"] = "Workflow execution failed"
            body["error_message"] = {"model": self.workflow.model, "message": message}
        else:
            body["error"] = message
            body["error_message"] = message
        return body


class JobStore:
    """Every job, the worker pool's bookings, and the account's money."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._config = config
        self._new_id = new_id
        self._jobs: dict[str, Job] = {}
        self._occurrences: Counter[str] = Counter()
        # When each worker is next free; a job takes the earliest, in submission order.
        self._workers: list[float] = [0.0] * (config.workers or 0)
        # Jobs not yet settled, by when their worker is done with them.
        self._pending: list[tuple[float, int, Job]] = []
        self._due: list[Job] = []
        self._order = 0
        # Waiters for renders, made on demand (an anyio.Event needs a running event loop).
        self._render_waiters: dict[str, anyio.Event] = {}
        self.charged = 0.0

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    @property
    def submissions_per_input(self) -> dict[str, int]:
        """How many times each canonical input was accepted (any count over 1 was paid twice)."""
        return dict(self._occurrences)

    def submit(
        self, workflow: CatalogWorkflow, inputs: dict[str, str], input_hash: str, api_key: str, now: float
    ) -> Job:
        """Accept a submission: draw its fate and book it on the worker pool."""
        occurrence = self._occurrences[input_hash]
        self._occurrences[input_hash] += 1
        fate = draw_fate(self._config, input_hash, occurrence)
        ready = now + self._config.queue_delay
        if self._workers:
            start = max(ready, heapq.heappop(self._workers))
            heapq.heappush(self._workers, start + fate.duration)
        else:
            start = ready
        job = Job(
            request_id=self._new_id(),
            workflow=workflow,
            inputs=inputs,
            input_hash=input_hash,
            occurrence=occurrence,
            owner=owner_of(api_key),
            fate=fate,
            submitted_at=now,
            start_at=start,
            finish_at=start + fate.duration,
        )
        self._jobs[job.request_id] = job
        self._order += 1
        heapq.heappush(self._pending, (job.finish_at, self._order, job))
        return job

    def withdraw(self, job: Job) -> None:
        """Forget a job just accepted whose acceptance could not be recorded (its submit fails).

        Its worker booking is not given back: the pool only runs a little later than it could.
        """
        if self._jobs.pop(job.request_id, None) is not None:
            self._occurrences[job.input_hash] -= 1
            self._pending = [entry for entry in self._pending if entry[2] is not job]
            heapq.heapify(self._pending)

    def restore(self, jobs: Iterable[Job]) -> None:
        """Take back the jobs an earlier emulator accepted (their times already on this clock).

        Only into an empty store. Billing is derived again: a restored job is charged when
        :meth:`settle` finds it completed, as it was the first time.
        """
        if self._jobs:
            raise RuntimeError("restore() needs an empty job store")
        ordered = sorted(jobs, key=lambda j: j.submitted_at)
        for job in ordered:
            self._jobs[job.request_id] = job
            self._occurrences[job.input_hash] = max(self._occurrences[job.input_hash], job.occurrence + 1)
            self._order += 1
            heapq.heappush(self._pending, (job.finish_at, self._order, job))
        if self._workers:
            # The pool as those jobs left it: replay their bookings in submission order.
            pool = [-math.inf] * len(self._workers)
            for job in ordered:
                heapq.heapreplace(pool, job.finish_at)
            self._workers = pool

    def unrendered(self) -> list[Job]:
        """The jobs whose render is not in (after a restore: the ones to render again)."""
        return [job for job in self._jobs.values() if job.render is None]

    def reconfigure(self, config: EmulatorConfig, now: float) -> list[Job]:
        """Apply new settings from ``now`` on, to new jobs and to jobs not finished yet.

        Unfinished jobs get their draws again under the new settings (same seed, input and
        occurrence) and are booked again on the pool, running ones keeping their start: so a test
        can submit with hour-long durations, "restart" a client, then let everything finish.
        Returns the jobs whose draws and times changed.
        """
        self.settle(now)
        self._config = config
        unfinished = sorted(
            (job for job in self._jobs.values() if not job.settled), key=lambda j: j.submitted_at
        )
        running = [job for job in unfinished if job.start_at <= now]
        for job in unfinished:
            job.fate = draw_fate(config, job.input_hash, job.occurrence)
        for job in running:
            job.finish_at = job.start_at + job.fate.duration
        if config.workers is None:
            self._workers = []
        else:
            # The pool is free when the busiest ``workers`` of the running jobs are done.
            busy = sorted(max(now, job.finish_at) for job in running)[-config.workers :]
            self._workers = busy + [now] * (config.workers - len(busy))
            heapq.heapify(self._workers)
        for job in unfinished:
            if job.start_at <= now:
                continue
            # Still queued: it starts no earlier than now (it has been answered QUEUED so far).
            ready = max(now, job.submitted_at + config.queue_delay)
            if config.workers is None:
                job.start_at = ready
            else:
                job.start_at = max(ready, heapq.heappop(self._workers))
                heapq.heappush(self._workers, job.start_at + job.fate.duration)
            job.finish_at = job.start_at + job.fate.duration
        self._pending = []
        self._due = []
        for job in unfinished:
            self._order += 1
            heapq.heappush(self._pending, (job.finish_at, self._order, job))
        return unfinished

    def rendered(self, job: Job, result: RenderResult, now: float) -> None:
        """Record that ``job``'s render is done (its files, or why it failed)."""
        job.render = result
        job.rendered_at = now
        waiter = self._render_waiters.pop(job.request_id, None)
        if waiter is not None:
            waiter.set()

    async def wait_rendered(self, request_id: str) -> None:
        """Return once the job's render is in (for tests and benchmarks that need it done)."""
        job = self._jobs[request_id]
        if job.render is None:
            waiter = self._render_waiters.setdefault(request_id, anyio.Event())
            await waiter.wait()

    def settle(self, now: float) -> None:
        """Bill every job that has completed by ``now`` (a failed job costs nothing)."""
        while self._pending and self._pending[0][0] <= now:
            self._due.append(heapq.heappop(self._pending)[2])
        waiting: list[Job] = []
        for job in self._due:
            if job.render is None:
                waiting.append(job)
                continue
            job.settled = True
            if job.status(now) == COMPLETED:
                self.charged += job.workflow.price
        self._due = waiting

    def balance(self, now: float) -> float | None:
        """What is left of the credits at ``now``; ``None`` when credits are unlimited."""
        if self._config.credits is None:
            return None
        self.settle(now)
        return self._config.credits - self.charged

    def get(self, request_id: str, now: float) -> Job | None:
        """The job, unless unknown or its record has expired by ``now``."""
        job = self._jobs.get(request_id)
        if job is None:
            return None
        ttl = self._config.record_ttl
        ended = job.ended_at()
        if (
            ttl is not None
            and ended is not None
            and job.status(now) in (COMPLETED, FAILED)
            and now >= ended + ttl
        ):
            return None
        return job

    def output(self, request_id: str, name: str, now: float) -> Output | None:
        """An output file of a completed job, unless unknown or expired by ``now``."""
        job = self._jobs.get(request_id)
        if job is None or job.render is None or job.status(now) != COMPLETED:
            return None
        ended = job.ended_at()
        ttl = self._config.output_ttl
        if ttl is not None and ended is not None and now >= ended + ttl:
            return None
        return next((o for o in job.render.outputs if o.name == name), None)

    def counts(self, now: float) -> dict[str, int]:
        """How many jobs are in each state at ``now``."""
        counts = dict.fromkeys(STATES, 0)
        for job in self._jobs.values():
            counts[job.status(now)] += 1
        return counts
