"""An append-only JSONL file that survives ``kill -9``: the mechanism under the engine's ledger
(:mod:`batcher.ledger`) and the emulator's journal (:mod:`batcher.emulator.journal`).

- **One write per record.** Each line is handed whole to a single ``os.write`` on an ``O_APPEND``
  descriptor, so a process killed at any moment leaves either the whole line or none of it in
  the page cache; kill -9 cannot split a record.
- **Group commit.** :meth:`AppendLog.sync` makes everything written so far durable with one
  ``fsync`` shared by every caller waiting at that moment: the first lets every task already
  due in the same pass of the event loop append its record before the fsync starts (a wave of
  submissions dispatched together costs one), and callers that arrive during an fsync are
  covered by the next one. With a *commit delay* (PostgreSQL's ``commit_delay``, Kafka's
  ``linger.ms``; the engine's ledger waits :data:`batcher.ledger.COMMIT_DELAY`), the first
  waits that long before the fsync starts, and every line appended meanwhile rides along.
  The fsync runs on the event loop's own thread while the disk's recent fsyncs were fast (5 ms
  at most), in a worker thread otherwise (:mod:`batcher.syncplace`).
- **Torn tails are repaired, never propagated.** On open, after taking the lock, trailing bytes
  that do not form a complete line (a crash mid-write), or complete lines the owner does not
  accept (a power cut's zero-filled block), are cut off before anything is appended.
- **A failed write or fsync ends the writing.** A line the disk took only part of (full, over a
  size limit) is cut off again at once, and from then on :meth:`AppendLog.append_line` and
  :meth:`AppendLog.sync` raise that first error: a later line that did fit must not land after a
  torn one (the two would read as one corrupt line, both records lost), and an fsync is never
  tried again after one failed (Linux may then report success for pages it dropped). Trailing
  lines appended as *revocable* (nothing acts on them before a sync covers them) are cut too.
- **A file deleted or replaced under the writer** is noticed at the next sync: its content is
  written back at its path (or beside it), and the writing stops as after a failed write.
- **A file cut short or overwritten in place** (logrotate's ``copytruncate``, a copy or a ``>``
  onto it) is noticed at the next sync too: the file is shorter than what this process wrote, or
  its last line is not there. Nothing can put those lines back; the writing stops, saying so.
- **One writer per file.** An exclusive ``flock``, released when the process dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.lowlevel

from .syncplace import SyncPlacement

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

    def __init__(
        self,
        path: Path,
        fd: int,
        repaired_bytes: int,
        *,
        commit_delay: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        placement: SyncPlacement | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.path = path
        #: Where each fsync of :meth:`sync` runs (the loop's thread or a worker), learnt from how
        #: long the last ones took by ``timer`` (see :mod:`batcher.syncplace`).
        self.placement = placement or SyncPlacement()
        self._timer = timer
        #: fsyncs of :meth:`sync` run on the loop's own thread (the rest went to a worker).
        self.inline_fsyncs = 0
        #: Seconds the first caller of :meth:`sync` waits before its fsync starts, so that the
        #: lines other tasks append meanwhile share it (0: only those due in the same pass).
        #: Real seconds (``sleep``), as an fsync's are: a disk's time, not a workflow's.
        self.commit_delay = commit_delay
        self._sleep = sleep
        self._fd = fd
        #: Bytes cut from a torn tail when the file was opened.
        self.repaired_bytes = repaired_bytes
        self.lines_written = 0
        #: fsyncs made by :meth:`sync` (group commit: far fewer than lines).
        self.fsyncs = 0
        self._written = 0
        self._synced = 0
        self._syncing: anyio.Event | None = None
        #: The first write or fsync that failed; nothing is written or synced after it.
        self.failed: OSError | None = None
        #: Where the file ends: after the last whole line (this process is its only writer).
        self._end = os.fstat(fd).st_size
        #: Where the trailing run of revocable lines begins (see :meth:`append_line`), if any.
        self._revocable_from: int | None = None
        #: The last line this process wrote, ending at ``_end`` (empty: none, or cut since).
        self._tail = b""

    def append_line(self, data: bytes, *, revocable: bool = False) -> None:
        """Write one complete line (ending in a newline) now, in one ``os.write``.
        Raises OSError if it cannot (and then for every later line, see the module notes).

        ``revocable``: nothing acts on this line until a sync covers it (a ``submitting`` line:
        its POST waits for that sync). If the log fails first, the trailing lines that are all
        revocable are cut with the torn part: they record nothing that happened.
        """
        if self.failed is not None:
            raise self._error(self.failed)
        if self._fd < 0:
            raise OSError(f"{self.path} is closed")
        written = 0
        try:
            written = os.write(self._fd, data)
            # A regular file takes the whole buffer in one write; the loop only matters on a
            # short write (a full disk or a size limit), where the next write raises.
            while written < len(data):
                written += os.write(self._fd, memoryview(data)[written:])
        except OSError as exc:
            self._fail(exc)
            raise self._error(exc) from None
        if not revocable:
            self._revocable_from = None
        elif self._revocable_from is None:
            self._revocable_from = self._end
        self._end += written
        self._tail = data
        self._written += 1
        self.lines_written += 1

    def _error(self, exc: OSError) -> Exception:
        """What a failed write or sync raises (an owner may name itself in a richer error)."""
        return OSError(exc.errno, exc.strerror, str(self.path))

    def _fail(self, exc: OSError) -> None:
        """Refuse every later write and sync, and cut what follows the last line that counts:
        the part of a line the disk took before it refused the rest, and trailing revocable
        lines. If the cut fails too, the next open repairs a torn tail."""
        if self.failed is None:
            self.failed = exc
        keep = self._end if self._revocable_from is None else self._revocable_from
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_size > keep:
                os.ftruncate(self._fd, keep)
                self._end, self._revocable_from, self._tail = keep, None, b""

    def _synced_upto(self, end: int) -> None:
        """A sync covered the file up to ``end``: revocable lines before it may now be acted on."""
        if self._revocable_from is not None and self._revocable_from < end:
            self._revocable_from = end if end < self._end else None

    async def sync(self) -> None:
        """Wait until every line appended before this call is on disk (group commit).

        One fsync at a time; whoever arrives while it runs waits for it, then checks whether
        it covered them, and if not, the first of them starts the next one. Raises once a
        write or fsync has failed, even for lines synced before: whatever waits on it (a POST)
        must not go ahead while the log can record nothing more.
        """
        if self.failed is not None:
            raise self._error(self.failed)
        target = self._written
        while self._synced < target:
            if self.failed is not None:
                raise self._error(self.failed)
            if self._syncing is not None:
                await self._syncing.wait()
                continue
            self._syncing = done = anyio.Event()
            try:
                # Tasks already due in this pass of the loop (the rest of a wave of
                # submissions), and with a commit delay every task appending during it, append
                # their records first, and this fsync covers them too.
                if self.commit_delay > 0:
                    await self._sleep(self.commit_delay)
                else:
                    await anyio.lowlevel.checkpoint()
                if self.failed is not None:  # one of them could not
                    raise self._error(self.failed)
                upto, end, tail = self._written, self._end, self._tail
                try:
                    if self.placement.inline():
                        # Fast lately: cheaper here than a trip to a thread (batcher.syncplace).
                        self._timed_fsync(end, tail)
                        self.inline_fsyncs += 1
                    else:
                        await anyio.to_thread.run_sync(self._timed_fsync, end, tail)
                except OSError as exc:
                    self._fail(exc)
                    raise self._error(exc) from None
                self.fsyncs += 1
                self._synced = max(self._synced, upto)
                self._synced_upto(end)
            finally:
                self._syncing = None
                done.set()
        if self.failed is not None:  # a line appended during the fsync could not be written
            raise self._error(self.failed)

    def _timed_fsync(self, end: int, tail: bytes) -> None:
        """:meth:`_fsync`, its time told to :attr:`placement` (a failed one's too)."""
        started = self._timer()
        try:
            self._fsync(end, tail)
        finally:
            self.placement.observe(self._timer() - started)

    def _fsync(self, end: int, tail: bytes) -> None:
        """fsync, then check that the path still names this file, and that the file still ends
        with ``tail``, the last line written, at ``end``. Deleted or replaced under a running
        process, it would take every line written since with it when the process ends (and the
        next run would pay for those jobs again): its content is put back at the path (or beside
        it, if another file took its name) and the writing stops. Cut short or overwritten in
        place, its lines are gone: the writing stops, and the error says what to do."""
        os.fsync(self._fd)
        mine = os.fstat(self._fd)
        try:
            there = os.stat(self.path)
        except FileNotFoundError:
            there = None
        if there is None or (there.st_dev, there.st_ino) != (mine.st_dev, mine.st_ino):
            raise OSError(errno.ESTALE, self._rescue(replaced=there is not None, linked=mine.st_nlink > 0))
        if self.failed is None and (
            mine.st_size < end or (tail and os.pread(self._fd, len(tail), end - len(tail)) != tail)
        ):
            raise OSError(
                errno.ESTALE,
                "it was cut short or overwritten while this run was writing it (by logrotate's"
                " copytruncate, or a copy onto it?), and the lines it lost cannot be written back:"
                " put back the copy if there is one before running again, or the next run submits"
                " again the jobs whose lines are gone",
            )

    def _rescue(self, *, replaced: bool, linked: bool) -> str:
        """Save what this file holds where the next run finds it (or beside); say what happened."""
        if replaced and linked:
            return "it was moved or replaced while this run was writing it (its lines are in the moved file)"
        what = "replaced by another file" if replaced else "deleted"
        target = self.path.with_name(f"{self.path.name}.recovered") if replaced else self.path
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                offset, size = 0, os.fstat(self._fd).st_size
                while offset < size:
                    chunk = os.pread(self._fd, min(1 << 20, size - offset), offset)
                    if not chunk:
                        break
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(out, view) :]
                    offset += len(chunk)
                os.fsync(out)
            finally:
                os.close(out)
        except OSError as exc:
            return (
                f"it was {what} while this run was writing it, and could not be saved again ({exc.strerror})"
            )
        if replaced:
            return f"it was {what} while this run was writing it; its lines are saved in {target}"
        return f"it was {what} while this run was writing it; its lines are put back"

    def sync_now(self) -> None:
        """Make everything appended so far durable, blocking (for synchronous callers)."""
        if self.failed is not None:
            raise self._error(self.failed)
        if self._synced < self._written:
            upto, end, tail = self._written, self._end, self._tail
            try:
                self._fsync(end, tail)
            except OSError as exc:
                self._fail(exc)
                raise self._error(exc) from None
            self._synced = upto
            self._synced_upto(end)

    def close(self) -> None:
        """Sync, close and release the lock. Safe to call twice. After a failed write or
        fsync, only closes (raising nothing: the caller has that error already)."""
        if self._fd < 0:
            return
        try:
            if self.failed is None:
                try:
                    self._fsync(self._end, self._tail)
                except OSError as exc:
                    self._fail(exc)
                    raise self._error(exc) from None
        finally:
            os.close(self._fd)  # closing releases the flock
            self._fd = -1
