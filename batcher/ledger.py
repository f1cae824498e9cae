"""The ledger: an append-only JSONL file, one event a line, that a killed run resumes from.

Guarantees (the brief's "the ledger is sacred"):

- **One write per record.** Each line is encoded whole and handed to a single ``os.write`` on an
  ``O_APPEND`` descriptor, so a process killed at any moment leaves either the whole line or none
  of it in the page cache; kill -9 cannot split a record.
- **Group commit.** :meth:`Ledger.sync` makes everything written so far durable with one
  ``fsync`` shared by every caller waiting at that moment (callers that arrive during an fsync
  are covered by the next one), so a burst of submissions costs a handful of fsyncs, not one each.
  ``submitting`` is synced before its POST; other lines ride along with the next sync, or
  :meth:`Ledger.flush_every`'s, at most a second later.
- **Torn tails are repaired, never propagated.** On open, after taking the lock, trailing bytes
  that do not form a complete JSON line (a crash mid-write, or a power cut's zero-filled block)
  are cut off before anything is appended.
- **One run per ledger.** An exclusive ``flock`` on the ledger file; a second run gets
  :class:`~batcher.errors.LedgerLockedError` before it reads or writes anything.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .errors import LedgerError, LedgerLockedError

#: Lines longer than this are not ours (a record is a few hundred bytes, a completed job a few KB).
MAX_LINE = 4 * 1024 * 1024


_second: tuple[int, str] = (-1, "")


def utc_iso(posix: float) -> str:
    """A POSIX time as ``2026-11-21T04:35:42.123Z`` (the second's text is reused: a ledger
    writes many lines a second, and formatting a datetime is most of the cost of a line)."""
    global _second
    # Rounded to the microsecond as datetime.fromtimestamp does, then cut to the millisecond.
    fraction, whole = math.modf(posix)
    micro = round(fraction * 1e6)
    sec, frac = int(whole) + micro // 1_000_000, (micro % 1_000_000) // 1000
    cached_sec, text = _second
    if sec != cached_sec:
        text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (sec, text)
    return f"{text}.{frac:03d}Z"


def parse_iso(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


#: One encoder for every line: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def encode(record: dict[str, Any]) -> bytes:
    """One ledger line. JSON escapes newlines inside strings, so a line is a record."""
    return (_ENCODER.encode(record) + "\n").encode()


def _valid_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "status" in record


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


def repair_tail(fd: int) -> int:
    """Cut trailing bytes that are not complete, valid JSON lines. Returns the bytes removed.

    A crash mid-append leaves an unterminated last line; a power cut can leave a block of
    zeros. Both are cut. Lines before the last valid one are never touched.
    """
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        if os.pread(fd, 1, end - 1) != b"\n":
            end = _rfind_newline(fd, end) + 1  # drop the unterminated tail
            continue
        start = _rfind_newline(fd, end - 1) + 1
        if end - start <= MAX_LINE and _valid_line(os.pread(fd, end - start, start)):
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
        os.fsync(fd)
    return size - end


def _looks_like_ledger(fd: int) -> bool:
    """An empty file, or one whose first line is a ledger record (never repair a stranger's file)."""
    head = os.pread(fd, 64 * 1024, 0)
    if not head:
        return True
    first = head.split(b"\n", 1)[0]
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and "status" in record and "ts" in record


class Ledger:
    """An open, locked ledger. Use :meth:`open`; close with :meth:`close` (or ``with``)."""

    def __init__(self, path: Path, fd: int, repaired_bytes: int) -> None:
        self.path = path
        self._fd = fd
        #: Bytes cut from a torn tail when the ledger was opened.
        self.repaired_bytes = repaired_bytes
        self._written = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None
        self.lines_written = 0

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Create or open ``path``, lock it, and repair a torn tail. Raises LedgerLockedError."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LedgerLockedError(
                f"ledger {path} is in use by another batcher run; wait for it to finish"
                " or give this run its own --ledger"
            ) from None
        if not _looks_like_ledger(fd):
            os.close(fd)
            raise LedgerError(
                f"{path} is not a batcher ledger (its first line is not a ledger record);"
                " give --ledger a new file or an existing ledger"
            )
        try:
            repaired = repair_tail(fd)
        except OSError as exc:
            os.close(fd)
            raise LedgerError(f"cannot repair ledger {path}: {exc.strerror}") from None
        return cls(path, fd, repaired)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)  # closing releases the flock
                self._fd = -1

    # --- reading ---------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """Every valid record already in the file, in order (bad middle lines are skipped)."""
        yield from read_records(self.path)

    # --- writing ---------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Append one record now (one ``os.write``). Durable after the next :meth:`sync`."""
        data = encode(record)
        view = memoryview(data)
        while view:
            # A regular file takes the whole buffer in one write; the loop only matters on a
            # short write (disk full), where repair_tail cleans up after a crash.
            n = os.write(self._fd, view)
            view = view[n:]
        self._written += 1
        self.lines_written += 1

    def event(self, job_id: str | None, status: str, now: float, **fields: Any) -> None:
        """Append ``{"ts", "job_id", "status", ...fields}``."""
        record: dict[str, Any] = {"ts": utc_iso(now), "job_id": job_id, "status": status}
        record.update(fields)
        self.append(record)

    async def flush_every(self, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Sync whatever was appended, every ``seconds``, until cancelled (run it in a task group).

        Only ``submitting`` is synced before anything may happen (the POST); every other line is
        safe from kill -9 as soon as it is written, and reaches the disk with the next sync: the
        next POST's, or this one's.
        """
        while True:
            await sleep(seconds)
            await self.sync()

    async def sync(self) -> None:
        """Wait until every record appended before this call is on disk (group commit).

        One fsync at a time; whoever arrives while it runs waits for it, then checks whether
        it covered them, and if not, the first of them starts the next one.
        """
        target = self._written
        while self._synced < target:
            if self._syncing is not None:
                await self._syncing.wait()
                continue
            self._syncing = done = anyio.Event()
            upto = self._written
            try:
                await anyio.to_thread.run_sync(os.fsync, self._fd)
                self._synced = max(self._synced, upto)
            finally:
                self._syncing = None
                done.set()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the valid records of a ledger file without locking it (for ``status``/``report``)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc.strerror}") from None
    with handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                return  # a torn tail (a live run, or one that died): not yet a record
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "status" in record:
                yield record
