"""An append-only JSONL file that survives ``kill -9``: the mechanism under the engine's ledger
(:mod:`batcher.ledger`) and the emulator's journal (:mod:`batcher.emulator.journal`).

- **One write per record.** Each line is handed whole to a single ``os.write`` on an ``O_APPEND``
  descriptor, so a process killed at any moment leaves either the whole line or none of it in
  the page cache; kill -9 cannot split a record.
- **Group commit.** :meth:`AppendLog.sync` makes everything written so far durable with one
  ``fsync`` shared by every caller waiting at that moment: the first lets every task already
  due in the same pass of the event loop append its record before the fsync starts (a wave of
  submissions dispatched together costs one), and callers that arrive during an fsync are
  covered by the next one.
- **Torn tails are repaired, never propagated.** On open, after taking the lock, trailing bytes
  that do not form a complete line (a crash mid-write), or complete lines the owner does not
  accept (a power cut's zero-filled block), are cut off before anything is appended.
- **One writer per file.** An exclusive ``flock``, released when the process dies.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.lowlevel

#: Lines longer than this are not records (a ledger record is a few hundred bytes to a few KB).
MAX_LINE = 4 * 1024 * 1024


def open_locked(path: Path, *, mode: int, locked: Callable[[], Exception]) -> int:
    """Create or open ``path`` for appending and take its exclusive lock, without waiting.
    Raises ``locked()`` if another process holds it; the caller owns the descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # /dev/null, a FIFO: nothing there would last
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise locked() from None
    return fd


def _rfind_newline(fd: int, before: int) -> int:
    """Offset of the last newline at a position below ``before``, or -1."""
    pos = before
    while pos > 0:
        lo = max(0, pos - 64 * 1024)
        cut = os.pread(fd, pos - lo, lo).rfind(b"\n")
        if cut >= 0:
            return lo + cut
        pos = lo
    return -1


def repair_tail(fd: int, valid: Callable[[bytes], bool] | None = None) -> int:
    """Cut an unterminated last line, and then trailing complete lines that ``valid`` rejects
    (all are accepted if it is None). Returns the bytes removed. Lines before the last accepted
    one are never touched."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        if os.pread(fd, 1, end - 1) != b"\n":
            end = _rfind_newline(fd, end) + 1  # drop the unterminated tail
            continue
        if valid is None:
            break
        start = _rfind_newline(fd, end - 1) + 1
        if end - start <= MAX_LINE and valid(os.pread(fd, end - start, start)):
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        os.fsync(fd)
    return size - end


class AppendLog:
    """An open, locked append-only file of lines (see the module notes)."""

    def __init__(self, path: Path, fd: int, repaired_bytes: int) -> None:
        self.path = path
        self._fd = fd
        #: Bytes cut from a torn tail when the file was opened.
        self.repaired_bytes = repaired_bytes
        self.lines_written = 0
        #: fsyncs made by :meth:`sync` (group commit: far fewer than lines).
        self.fsyncs = 0
        self._written = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None

    def append_line(self, data: bytes) -> None:
        """Write one complete line (ending in a newline) now, in one ``os.write``."""
        if self._fd < 0:
            raise OSError(f"{self.path} is closed")
        written = os.write(self._fd, data)
        if written < len(data):
            # A regular file takes the whole buffer in one write; the loop only matters on a
            # short write (disk full), where the repair on the next open cleans up.
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._fd, view) :]
        self._written += 1
        self.lines_written += 1

    async def sync(self) -> None:
        """Wait until every line appended before this call is on disk (group commit).

        One fsync at a time; whoever arrives while it runs waits for it, then checks whether
        it covered them, and if not, the first of them starts the next one.
        """
        target = self._written
        while self._synced < target:
            if self._syncing is not None:
                await self._syncing.wait()
                continue
            self._syncing = done = anyio.Event()
            try:
                # Tasks already due in this pass of the loop (the rest of a wave of
                # submissions) append their records first, and this fsync covers them too.
                await anyio.lowlevel.checkpoint()
                upto = self._written
                await anyio.to_thread.run_sync(os.fsync, self._fd)
                self.fsyncs += 1
                self._synced = max(self._synced, upto)
            finally:
                self._syncing = None
                done.set()

    def sync_now(self) -> None:
        """Make everything appended so far durable, blocking (for synchronous callers)."""
        if self._synced < self._written:
            upto = self._written
            os.fsync(self._fd)
            self._synced = upto

    def close(self) -> None:
        """Sync, close and release the lock. Safe to call twice."""
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1
