"""The emulator's journal: its memory on disk (see :mod:`batcher.emulator.persist`).

An append-only JSONL file with the engine ledger's guarantees, from the same mechanism
(:mod:`batcher.appendlog`): one ``os.write`` a record, group-commit fsync, a torn last line cut on
open, one emulator per journal (an exclusive ``flock``). Unreadable lines in the middle are
skipped (and counted) when reading.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..appendlog import AppendLog, open_locked, repair_tail
from ..errors import LedgerLockedError


class Journal(AppendLog):
    """An open, locked journal file. Make one with :meth:`open`; :meth:`close` it when done."""

    def __init__(self, path: Path, fd: int, repaired_bytes: int) -> None:
        super().__init__(path, fd, repaired_bytes)
        #: Lines skipped by :meth:`records` because they were not JSON objects.
        self.skipped_lines = 0

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Create or open ``path``, lock it, and cut a torn tail. Raises LedgerLockedError if taken."""
        fd = open_locked(
            path,
            mode=0o600,
            # A LedgerLockedError (exit 75, "try again later"): for `batcher run --emulator` the
            # state lives beside the ledger, so this is another run of the same ledger.
            locked=lambda: LedgerLockedError(
                f"emulator state {path.parent} is in use by another emulator (another batcher run"
                " of this ledger?); wait for it to finish, or give this one its own state_dir"
            ),
        )
        try:
            repaired = repair_tail(fd)
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
        self.append_line((json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode())
