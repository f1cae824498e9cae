"""The deadlines and silences of the requests in flight, watched with one timer for them all.

Each request has two limits (see :mod:`batcher.transport`): an overall deadline, and
``read_timeout`` seconds of silence (no sign of life: sent, its answer's head, a chunk of its
body). ``asyncio.timeout`` and aiohttp's ``sock_read`` would arm a timer for the deadline, one for
the request's silence and another for each read: three or more a request. asyncio keeps timers in
a heap ordered by a Python ``__lt__``, and a cancelled one stays there until the heap is rebuilt,
so each costs a dozen Python calls; almost none of them ever fire. Measured under callgrind on
``bench/overhead.py``'s jobs, they were 8% of batcher's instructions a job.

So a :class:`Watchdog` keeps the requests in flight in a set and looks at them every so often, on
one loop timer that stops when nothing is in flight: ``CHECKS`` times per limit (the shortest
limit of the requests in flight), so a request is cut at most a twentieth of its limit late. A
request past either limit is cut by cancelling its task; the request turns that cancellation into
:class:`Cut` as it leaves its ``with`` block, deciding as ``asyncio.timeout`` does: another
cancellation pending (the run stopping) wins, and the request is cancelled, not timed out.

A watch is a ``with`` block around the request (:meth:`Watchdog.watch`): it is dropped as the
block ends, with no ``await`` in between, so the task is always waiting inside the watched
request when a check cancels it.
"""

from __future__ import annotations

import asyncio
import math
from types import TracebackType
from typing import Any

#: Looks at a request in flight per limit (its deadline, or ``read_timeout`` if shorter).
CHECKS = 20


class Cut(Exception):
    """A watched request was cut: at its deadline, or for its silence (``watch.cut`` says which)."""

    def __init__(self, watch: Watch) -> None:
        super().__init__(watch.cut)
        self.watch = watch


class Watch:
    """One request in flight, cut at ``until`` (loop time) or when silent too long. A ``with``
    block: leaving it stops the watch, and turns the watch's own cut into :class:`Cut`."""

    __slots__ = ("cut", "dog", "last", "started", "step", "task", "until")

    def __init__(self, dog: Watchdog, task: asyncio.Task[Any], now: float, until: float, step: float) -> None:
        self.dog = dog
        self.task = task
        self.started = now
        #: When its deadline passes (loop time); a download's grows with what it receives.
        self.until = until
        #: Its last sign of life (loop time): sent, its answer's head, a chunk of its body.
        self.last = now
        #: How long it may go unlooked at.
        self.step = step
        #: Why it was cut ("deadline" or "silence"); None while it runs.
        self.cut: str | None = None

    def alive(self) -> None:
        """A sign of life: silence counts from now."""
        self.last = self.task.get_loop().time()

    def __enter__(self) -> Watch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.dog._watched.discard(self)
        # The watch's own cut, and nothing else pending (a stop wins); its cancel is taken back.
        if isinstance(exc, asyncio.CancelledError) and self.cut is not None and self.task.uncancel() == 0:
            raise Cut(self) from exc


class Watchdog:
    """The requests in flight on one event loop, and the timer that looks at them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, quiet: float) -> None:
        self._loop = loop
        #: Seconds of silence that cut a request (``api.read_timeout``).
        self.quiet = quiet
        self._watched: set[Watch] = set()
        #: The next look: one timer for every request. The first look that finds nothing in
        #: flight arms no other (dropping a watch does not disarm it: sequential requests would
        #: arm and cancel a timer each).
        self._rounds: asyncio.TimerHandle | None = None

    def watch(self, limit: float) -> Watch:
        """Watch the current task's request from now (``with dog.watch(limit) as watch:``): cut
        ``limit`` seconds from now, or after ``quiet`` seconds without a sign of life."""
        loop = self._loop
        task = asyncio.current_task(loop)
        assert task is not None, "a request runs in a task"
        now = loop.time()
        step = min(limit, self.quiet) / CHECKS
        watch = Watch(self, task, now, now + limit, step)
        self._watched.add(watch)
        rounds = self._rounds
        if rounds is None or rounds.when() > now + step:
            if rounds is not None:
                rounds.cancel()
            self._rounds = loop.call_at(now + step, self._check)
        return watch

    @property
    def watching(self) -> int:
        """How many requests are watched (in flight)."""
        return len(self._watched)

    def close(self) -> None:
        """Stop looking (the transport is closing; nothing is in flight)."""
        if self._rounds is not None:
            self._rounds.cancel()
            self._rounds = None

    def _check(self) -> None:
        """Cut every request past its deadline or silent too long; look again in a while."""
        self._rounds = None
        now = self._loop.time()
        step = math.inf
        for watch in list(self._watched):
            silent_at = watch.last + self.quiet
            if now >= watch.until or now >= silent_at:
                # Whichever passed first: a host silent for a minute is named as silent.
                watch.cut = "silence" if silent_at < watch.until else "deadline"
                self._watched.discard(watch)
                watch.task.cancel()
            else:
                step = min(step, watch.step)
        if self._watched:
            self._rounds = self._loop.call_at(now + step, self._check)
