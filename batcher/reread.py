"""Ledger lines read again by their byte offset, so that a replay need not hold what they say.

A job completed in a run that did not end in order (killed, or the machine died) must have its
files checked by the next run, and fetched again if they did not reach the disk: for that the
run needs the job's outputs and poll_url. Held in memory, that was about 1.5 KB a job, 1.8 GB
for a million-job run killed near its end. The replay keeps only the offsets of the job's
``completed`` and ``submitted`` lines (:class:`~batcher.donejobs.DoneJobs`), and reads those two
lines again when the run checks the job's files, or when a later line mentions the job.

The ledger is append-only, so a line found at an offset during the replay is still there. A
line that is not (the file was replaced or cut since) is a :class:`~batcher.errors.LedgerError`,
never a guess.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import LedgerError

#: Bytes read at a time: a ledger line is a few hundred bytes, a completed one with many long
#: output URLs a few KB.
_READ = 8 * 1024


class LineReader:
    """Reads single ledger lines by offset (``os.pread``, one file descriptor opened on first
    use). Use as a context manager, or :meth:`close` it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self, offset: int, status: str) -> dict[str, Any]:
        """The record of the line at ``offset``, which must have this ``status``."""
        data = b""
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            while b"\n" not in data:
                block = os.pread(self._fd, _READ, offset + len(data))
                if not block:
                    break
                data += block
        except OSError as exc:
            raise LedgerError(f"cannot read ledger {self.path}: {exc.strerror}") from None
        line, newline, _ = data.partition(b"\n")
        try:
            record = json.loads(line) if newline else None
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("status") != status:
            raise LedgerError(
                f"ledger {self.path} changed while this run read it (no {status} line at byte"
                f" {offset}); run the same command again"
            )
        return record

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LineReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
