"""An append-only JSONL file that survives ``kill -9``: one ``os.write`` a line, fsync'd in groups.

The emulator's memory on disk (see :mod:`batcher.emulator.persist`) is written through this, with
the same rules as the engine's ledger:

- **One write per record** on an ``O_APPEND`` descriptor: a killed process leaves a whole line or
  none of it (or, on a power cut, a torn tail).
- **Torn tails are cut on open**, before anything is appended, so a new line never glues onto
  half of an old one. Unreadable lines in the middle are skipped when reading.
- **Group commit**: :meth:`Journal.sync` makes everything appended so far durable with one
  ``fsync`` shared by the callers waiting at that moment.
- **One emulator per journal**: an exclusive ``flock``, released when the process dies.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

from ..errors import LedgerLockedError


class Journal:
    """An open, locked journal file. Make one with :meth:`open`; :meth:`close` it when done."""

    def __init__(self, path: Path, fd: int, repaired_bytes: int) -> None:
        self.path = path
        self._fd = fd
        #: Bytes of a torn last line cut off on open (0 when the file was whole).
        self.repaired_bytes = repaired_bytes
        #: Lines skipped by :meth:`records` because they were not JSON objects.
        self.skipped_lines = 0
        self._written = 0
        self._synced = 0
        # Made on first use: an anyio lock belongs to the event loop that runs the emulator.
        self._sync_lock: anyio.Lock | None = None

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Create or open ``path``, lock it, and cut a torn tail. Raises LedgerLockedError if taken."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            # A LedgerLockedError (exit 75, "try again later"): for `batcher run --emulator` the
            # state lives beside the ledger, so this is another run of the same ledger.
            raise LedgerLockedError(
                f"emulator state {path.parent} is in use by another emulator (another batcher run"
                " of this ledger?); wait for it to finish, or give this one its own state_dir"
            ) from None
        try:
            repaired = _cut_torn_tail(fd)
        except OSError:
            os.close(fd)
            raise
        return cls(path, fd, repaired)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every complete line that is a JSON object, in file order (others are counted, skipped)."""
        with self.path.open("rb") as handle:
            for raw in handle:
                try:
                    record = json.loads(raw)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    yield record
                else:
                    self.skipped_lines += 1

    def append(self, record: dict[str, Any]) -> None:
        """Write one record now, whole, in one ``os.write``. Durable after the next :meth:`sync`."""
        if self._fd < 0:
            raise OSError(f"journal {self.path} is closed")
        data = (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        view = memoryview(data)
        while view:
            # A regular file takes it all at once; only a full disk writes short, and the torn
            # tail that leaves is cut on the next open.
            view = view[os.write(self._fd, view) :]
        self._written += 1

    async def sync(self) -> None:
        """Return once every record appended before this call is on disk (group commit)."""
        target = self._written
        if self._synced >= target:
            return
        if self._sync_lock is None:
            self._sync_lock = anyio.Lock()
        async with self._sync_lock:
            if self._synced >= target:
                return  # another caller's fsync covered this one
            upto, fd = self._written, self._fd
            await anyio.to_thread.run_sync(os.fsync, fd)
            self._synced = max(self._synced, upto)

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
            os.close(self._fd)
            self._fd = -1


def _cut_torn_tail(fd: int) -> int:
    """Truncate bytes after the last newline (a line whose write never finished). Returns them."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - 64 * 1024)
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            end = start + cut + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        os.fsync(fd)
    return size - end
