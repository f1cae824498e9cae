"""The ledger: an append-only JSONL file, one event a line, that a killed run resumes from.

The file mechanics (one ``os.write`` a record, group-commit fsync, torn tails cut on open, an
exclusive ``flock``) are :mod:`batcher.appendlog`'s, shared with the emulator's journal. What the
ledger adds:

- **Records**: ``{"ts", "job_id", "status", ...}``, encoded as one line each.
- **What counts as torn**: a trailing line that is not a JSON object with a ``status`` (a crash
  mid-write, a power cut's zeros) is cut on open, and a file whose first line is not a ledger
  record is never touched at all (``--ledger`` pointed at the wrong file).
- **When lines reach the disk**: ``submitting`` is synced before its POST; every other line is
  safe from kill -9 at once and rides along with the next sync, or :meth:`Ledger.flush_every`'s,
  at most a second later. A sync waits :data:`COMMIT_DELAY` before its fsync, so the submissions
  of a busy run share fsyncs (group commit).
- **One run per ledger**: a second run gets :class:`~batcher.errors.LedgerLockedError` before it
  reads or writes anything.
- **A write that fails** (a full disk, a file size limit, an I/O error) raises
  :class:`~batcher.errors.LedgerWriteError` naming the file and the cause, then and for every
  later line and sync (see :mod:`batcher.appendlog`): the run stops at once.
"""

from __future__ import annotations

import errno
import json
import json.encoder
import math
import os
import stat
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .appendlog import AppendLog, open_locked, repair_tail
from .errors import LedgerError, LedgerLockedError, LedgerWriteError
from .syncplace import SyncPlacement

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


#: Seconds a sync of the ledger waits before its fsync for more lines to share it (group commit;
#: see :mod:`batcher.appendlog`). About one fsync's time on an SSD or a cloud disk (0.2-2 ms;
#: tmpfs: microseconds, but the trip to the fsync's thread costs more CPU than the wait): a POST
#: waits at most that much longer, next to jobs of seconds and a budget of requests a second,
#: and a busy run makes about half the fsyncs and spends about 5% less CPU a request (1,500
#: jobs at concurrency 64: 166-191 fsyncs instead of 315-429; see the README's Performance).
COMMIT_DELAY = 0.002

#: Seconds a ledger time may lie past the current time before it counts as "in the future" (the
#: clock was set back since, or the line came from a machine whose clock was ahead).
CLOCK_SLACK = 1.0


def iso_datetime(text: object) -> datetime | None:
    """A ledger ``ts`` as an aware datetime, or None if it is not a time.

    The ledger writes UTC (``...Z``); a time without an offset (a hand edit, another tool) is
    UTC too, never this machine's local time (that read it hours off, and differently in
    summer). An offset (``+02:00``, a later version or another tool), a lower-case ``z``, any
    number of fraction digits and a date alone are read as what they say.
    """
    if not isinstance(text, str):
        return None
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def parse_iso(text: object) -> float | None:
    """A ledger ``ts`` as a POSIX time (see :func:`iso_datetime`), or None if it is not a time."""
    when = iso_datetime(text)
    if when is None:
        return None
    try:
        return when.timestamp()
    except (OverflowError, ValueError):
        return None


#: One encoder for every line: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


#: What ``json.dumps`` with the ledger's options writes for ``_c_encoder``'s sample.
_SAMPLE_LINE = '{"s":"é\\n","n":[1,2.5,null,true],"d":{"k":Infinity},"3":"p"}'


def _c_encoder() -> Callable[[Any, int], list[str]] | None:
    """The C encoder that ``_ENCODER.encode`` builds anew for every call, built once: the same
    text in a third less time a line (four lines a job). Without the check for circular
    references: a record is parsed JSON and our own values, and a cycle would raise
    RecursionError, which :func:`encode` turns back into the stdlib's error. Undocumented, so
    used only if it takes ``_ENCODER``'s options and writes :data:`_SAMPLE_LINE` for the
    sample; else None."""
    make: Any = getattr(json.encoder, "c_make_encoder", None)
    sample = {"s": "é\n", "n": [1, 2.5, None, True], "d": {"k": float("inf")}, 3: Path("p")}
    try:
        e = _ENCODER  # its options, passed as JSONEncoder.iterencode passes them
        strings = json.encoder.encode_basestring_ascii if e.ensure_ascii else json.encoder.encode_basestring
        encode_c: Callable[[Any, int], list[str]] = make(
            None,
            e.default,
            strings,
            e.indent,
            e.key_separator,
            e.item_separator,
            e.sort_keys,
            e.skipkeys,
            e.allow_nan,
        )
        return encode_c if "".join(encode_c(sample, 0)) == _SAMPLE_LINE else None
    except Exception:  # not CPython, or another signature: the stdlib's own path
        return None


_C_ENCODE = _c_encoder()


def encode(record: dict[str, Any]) -> bytes:
    """One ledger line. JSON escapes newlines inside strings, so a line is a record.

    A file name that is not UTF-8 (a Latin-1 name, or any non-ASCII name under a C locale
    without UTF-8 mode) reaches Python as lone surrogates, which UTF-8 cannot encode: the
    run's first line failed with a traceback. Every such character is inside a JSON string,
    where ``backslashreplace`` writes it as JSON's own escape (``\\udce9``), which reads back
    as the same character: the same name, compared equal by the next run."""
    if _C_ENCODE is None:
        text = _ENCODER.encode(record)
    else:
        try:
            text = "".join(_C_ENCODE(record, 0))
        except RecursionError:
            text = _ENCODER.encode(record)  # a cycle: its own error, as json.dumps raises it
    return (text + "\n").encode("utf-8", "backslashreplace")


def _valid_line(line: bytes) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "status" in record


def _looks_like_ledger(fd: int) -> bool:
    """An empty file, or one whose first line is a ledger record (never repair a stranger's file).
    Also a first record torn before its newline (every line starts ``{"ts":``), or nothing but
    zeros: a run killed, or a machine cut off, while writing the very first line."""
    head = os.pread(fd, 64 * 1024, 0)
    if not head.strip(b"\0\n"):
        return True
    first, newline, _ = head.partition(b"\n")
    if not newline:
        return first.startswith(b'{"ts":') or b'{"ts":'.startswith(first)
    try:
        record = json.loads(first)
    except ValueError:
        return False
    return isinstance(record, dict) and "status" in record and "ts" in record


def _not_a_ledger(path: Path) -> LedgerError:
    return LedgerError(
        f"{path} is not a batcher ledger (its first line is not a ledger record);"
        " give --ledger a new file or an existing ledger"
    )


def check_ledger_path(path: Path) -> None:
    """Refuse a ledger path that is there but is not a file (``/dev/null``, a FIFO, a folder) or
    is a file but no ledger (a manifest given as ``--ledger``), before anything is made beside
    it (the outputs, the emulator's folder). A dry run refuses it as the run would; it read the
    stranger's file as an empty ledger, and said all was well."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        _check_creatable(path)
        return
    except OSError as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise LedgerError(f"cannot open ledger {path}: it is {kind}; give --ledger a file's path")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise LedgerError(f"cannot open ledger {path}: {exc.strerror}") from None
    try:
        ledger = _looks_like_ledger(fd)
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if not ledger:
        raise _not_a_ledger(path)


def _check_creatable(path: Path) -> None:
    """Refuse a new ledger's path whose nearest existing folder this process cannot write in
    (the default ``runs/...`` under a read-only folder cron started in): it was refused only
    when opened, as "Permission denied", after the outputs folder had been made."""
    here = Path(os.path.abspath(path)).parent
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    if here.is_dir() and not os.access(here, os.W_OK | os.X_OK):
        raise LedgerError(
            f"cannot create ledger {path}: no permission to write in {here}; give --ledger a path"
            " in a folder you can write (a relative one is taken from the folder batcher starts in)"
        )


#: What to do about a write that failed, by errno (the rest: check the disk).
_FIXES = {
    errno.ENOSPC: "free some space on its disk",
    errno.EDQUOT: "free some space, or raise the disk quota",
    errno.EFBIG: "lift the file size limit (ulimit -f)",
    errno.ESTALE: "leave it where it is",
}


def write_error(path: Path, exc: OSError) -> LedgerWriteError:
    """The one line a user sees when the ledger cannot be written mid-run."""
    cause = (exc.strerror or str(exc)).lower()
    fix = _FIXES.get(exc.errno or 0, "check the disk")
    return LedgerWriteError(
        f"cannot write to ledger {path}: {cause}. The run stopped at once; {fix} and run the same"
        " command again (every step the ledger recorded is kept; no job whose poll_url it holds is"
        " paid for again)"
    )


class Ledger(AppendLog):
    """An open, locked ledger. Use :meth:`open`; close with :meth:`close` (or ``with``)."""

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        commit_delay: float = COMMIT_DELAY,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        placement: SyncPlacement | None = None,
    ) -> Ledger:
        """Create or open ``path``, lock it, and repair a torn tail. Raises LedgerLockedError.
        ``commit_delay``, ``sleep`` and ``placement``: see :class:`~batcher.appendlog.AppendLog`."""
        try:
            fd = open_locked(
                path,
                mode=0o644,
                locked=lambda: LedgerLockedError(
                    f"ledger {path} is in use by another batcher run; wait for it to finish"
                    " or give this run its own --ledger"
                ),
            )
        except OSError as exc:
            raise LedgerError(f"cannot open ledger {path}: {exc.strerror}") from None
        if not _looks_like_ledger(fd):
            os.close(fd)
            raise _not_a_ledger(path)
        try:
            repaired = repair_tail(fd, _valid_line)
        except OSError as exc:
            os.close(fd)
            raise LedgerError(f"cannot repair ledger {path}: {exc.strerror}") from None
        return cls(path, fd, repaired, commit_delay=commit_delay, sleep=sleep, placement=placement)

    def _error(self, exc: OSError) -> Exception:
        return write_error(self.path, exc)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        """Every valid record already in the file, in order (bad middle lines are skipped)."""
        yield from read_records(self.path)

    def located(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """:meth:`records`, each with the byte offset of its line (see :func:`read_located`)."""
        yield from read_located(self.path)

    # --- writing ---------------------------------------------------------------------

    def append(self, record: dict[str, Any]) -> None:
        """Append one record now (one ``os.write``). Durable after the next :meth:`sync`."""
        self.append_line(encode(record))

    def event(self, job_id: str | None, status: str, now: float, **fields: Any) -> None:
        """Append ``{"ts", "job_id", "status", ...fields}`` (what :meth:`append` of that record
        does, in one call: a few lines a job)."""
        record: dict[str, Any] = {"ts": utc_iso(now), "job_id": job_id, "status": status, **fields}
        self.append_line(encode(record))

    def submitting(self, job_id: str, now: float, **fields: Any) -> None:
        """Append a job's ``submitting`` line. Its POST waits for a sync to cover it, so until
        then it is revocable: if the ledger fails first, the line is cut again, and the next
        run sees a job never sent rather than a POST of unknown outcome."""
        record: dict[str, Any] = {"ts": utc_iso(now), "job_id": job_id, "status": "submitting", **fields}
        self.append_line(encode(record), revocable=True)

    async def flush_every(self, seconds: float, sleep: Callable[[float], Awaitable[None]]) -> None:
        """Sync whatever was appended, every ``seconds``, until cancelled (run it in a task group).

        Only ``submitting`` is synced before anything may happen (the POST); every other line is
        safe from kill -9 as soon as it is written, and reaches the disk with the next sync: the
        next POST's, or this one's.
        """
        while True:
            await sleep(seconds)
            await self.sync()


#: How many folders above a ledger's own a relative path in it may be relative to.
ANCESTORS = 4


def path_bases(ledger: Path) -> list[Path]:
    """Folders a relative path in a ledger may be relative to (older versions recorded output
    paths as given, relative to the folder the run started in): the current folder, the
    ledger's, and a few above it."""
    here = ledger.resolve().parent
    return [Path.cwd(), here, *list(here.parents)[:ANCESTORS]]


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Stream the valid records of a ledger file without locking it (for ``status``/``report``)."""
    for _, record in read_located(path):
        yield record


def read_located(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """:func:`read_records`, each with the byte offset of its line in the file (where
    :class:`~batcher.reread.LineReader` finds it again). Bad middle lines are skipped; a torn
    tail (a live run, or one that died) is not yet a record."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc.strerror}") from None
    with handle:
        at = 0
        for raw in handle:
            if not raw.endswith(b"\n"):
                return
            start, at = at, at + len(raw)
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and "status" in record:
                yield start, record
