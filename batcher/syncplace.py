"""Where an append log's fsync runs: on the event loop's own thread while the disk's fsyncs are
fast, in a worker thread otherwise.

A trip to a worker thread and back costs CPU whatever the fsync costs: the thread is woken, takes
the GIL back from the busy loop for its result, and wakes the loop in turn (anyio's
``to_thread.run_sync``: about 110 µs of CPU a trip even when idle on a 2-core VM). A busy run
makes an fsync every few milliseconds, and with every one of them in a thread it spent about an
eighth more CPU a request than with them on the loop (see the README's Performance section). An
fsync of a few milliseconds at most (tmpfs; an SSD; this machine's virtual disk, 0.5-2 ms under
load) stops the loop no longer than that, next to polls seconds apart and request deadlines of
minutes; one that takes longer (a disk that seeks, a network volume, a journal stall) must not
stop it, so it goes to a thread.

:class:`SyncPlacement` decides from the durations of the recent fsyncs: on the loop only after
``window`` fsyncs in a row each took at most ``limit``; one slower fsync sends the next
``window`` to the thread again, where they are timed too. A stall of the loop is therefore at
most one fsync that turned slow, and usually under ``limit`` (asyncio's own debug mode calls a
callback slow at 100 ms; polls are seconds apart). It starts in the thread: nothing is known of
the disk yet.
"""

from __future__ import annotations

#: An fsync that took at most this long (seconds) may run on the loop's thread.
INLINE_LIMIT = 0.005
#: How many fsyncs in a row must have been that fast.
WINDOW = 8


class SyncPlacement:
    """Run the next fsync on the loop (:meth:`inline`) or in a thread; learns from
    :meth:`observe`. ``limit=math.inf, window=0``: always on the loop; ``limit=-1``: never."""

    def __init__(self, limit: float = INLINE_LIMIT, window: int = WINDOW) -> None:
        if window < 0:
            raise ValueError(f"window must be 0 or more, not {window}")
        self.limit = limit
        self.window = window
        #: Fsyncs still to run in a thread before one may run on the loop.
        self._threaded = window

    def inline(self) -> bool:
        """Whether the next fsync runs on the event loop's thread."""
        return self._threaded == 0

    def observe(self, seconds: float) -> None:
        """An fsync (on the loop or in a thread) took ``seconds``."""
        if seconds > self.limit:
            self._threaded = max(self.window, 1)
        elif self._threaded:
            self._threaded -= 1
