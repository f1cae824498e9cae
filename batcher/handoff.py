"""A first-in, first-out handoff between tasks of one event loop.

``put`` never waits; ``get`` waits only when nothing is queued, and hands an item straight to a
waiting task. It does what an unbounded anyio memory object stream does for us, without the
checkpoint (one more trip round the event loop) that every ``receive`` makes: the request
workers and download workers take one item per request, and ``bench/overhead.py`` counts those
trips.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Handoff(Generic[T]):
    """Items for a pool of worker tasks. :meth:`close` makes every ``get`` return None once
    the queue is empty."""

    def __init__(self) -> None:
        self._items: deque[T] = deque()
        self._waiters: deque[asyncio.Future[T | None]] = deque()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        if self.closed:
            raise RuntimeError("put() on a closed Handoff")
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._items.append(item)

    def close(self) -> None:
        """No more items; waiting and future ``get`` calls return None once the queue drains."""
        self.closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def get(self) -> T | None:
        """The next item, waiting for one if need be; None when closed and drained."""
        if self._items:
            return self._items.popleft()
        if self.closed:
            return None
        waiter: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except BaseException:
            # Cancelled just after an item was handed to us: put it back for another worker.
            if waiter.done() and not waiter.cancelled():
                item = waiter.result()
                if item is not None:
                    self._items.appendleft(item)
            raise
