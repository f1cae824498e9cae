"""What the scheduler holds: a job this run works on, its place in the heap of due actions, and
the bounded queue of new jobs from the manifest (:mod:`batcher.scheduler` dispatches them).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .manifest import JobSpec

Action = Literal["submit", "poll"]


@dataclass(slots=True, eq=False)
class Job:
    """A job this run is working on."""

    job_id: str
    workflow: str
    price: float | None
    workflow_id: str = ""
    #: The manifest row, kept only until the POST succeeds (re-read on resume otherwise).
    spec: JobSpec | None = None
    request_id: str | None = None
    poll_url: str | None = None
    #: clock.monotonic() when it was submitted; its polls are spaced by its age since then. A
    #: re-attached job's counts from one poll interval before this run re-attached it: its age by
    #: the ledger is a wall-clock difference across two runs, which a stepped clock can make
    #: negative or days too long.
    submitted_at: float | None = None
    #: clock.monotonic() after which an unfinished answer ends its polling in this run
    #: (``poll.give_up_after`` from when this run submitted or re-attached it; inf: never).
    give_up_at: float = math.inf
    #: Seconds after submission of the last poll that found it unfinished.
    last_unfinished: float = 0.0
    polls: int = 0
    #: Consecutive retryable errors of the current step.
    errors: int = 0
    last_remote: str = ""
    next_action: Action = "submit"
    #: clock.monotonic() when its latest request was dispatched.
    sent_at: float = 0.0
    #: Re-attached from the ledger (submitted by an earlier run), not submitted by this one.
    attached: bool = False
    #: Polled again for new output URLs, those an earlier run left no longer working (see
    #: :class:`~batcher.collect.Collector`): that download's age, which the new URLs are tried
    #: at (once, as the files of a job that old, not as a new file a replica may lag behind).
    refetch_age: float | None = None
    #: An earlier run's POST of it got no clear answer: its first POST here is counted as sent
    #: again (``RunStats.resubmitted_unknown``), as it may be billed twice.
    post_unknown: bool = False


def set_done(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(order=True)
class Timed:
    at: float
    seq: int
    job: Job = field(compare=False)


class PendingQueue:
    """New jobs from the manifest: a bounded queue, so a million rows are never all in memory."""

    def __init__(self, limit: int, notify: Callable[[], None]) -> None:
        self._items: deque[Job] = deque()
        self._limit = limit
        #: The producer's wait for room, while it waits (a bare future: one wait a job).
        self._space: asyncio.Future[None] | None = None
        self._notify = notify
        self.closed = False
        self.refusing = False

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, job: Job) -> bool:
        """Queue a job, waiting for room. False when the queue refuses jobs (submissions stopped)."""
        while len(self._items) >= self._limit and not self.refusing:
            self._space = space = asyncio.get_running_loop().create_future()
            try:
                await space
            finally:
                self._space = None
        if self.refusing:
            return False
        self._items.append(job)
        self._notify()
        return True

    def refuse(self) -> list[Job]:
        """Stop taking jobs; returns the ones still queued and releases a waiting producer."""
        self.refusing = True
        items = list(self._items)
        self._items.clear()
        self._room()
        return items

    def pop(self) -> Job | None:
        job = self._items.popleft() if self._items else None
        if job is not None:
            self._room()
        return job

    def _room(self) -> None:
        if self._space is not None:
            set_done(self._space)

    def close(self) -> None:
        self.closed = True
        self._notify()
