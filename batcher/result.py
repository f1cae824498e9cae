"""How a run ended: its exit code (the README's table) and what it did (:class:`RunResult`)."""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import LedgerWriteError
from .stats import RunStats


class ExitCode(enum.IntEnum):
    """Process exit codes (documented in the README)."""

    OK = 0
    FAILED = 1
    USAGE = 2
    PROVIDER = 3
    LEDGER_WRITE = 74  # the ledger could not be written (disk full...): sysexits' EX_IOERR
    LOCKED = 75
    INTERRUPTED = 130


@dataclass
class RunResult:
    exit_code: ExitCode
    stats: RunStats
    #: Final states of the manifests' jobs that this run did not touch (finished earlier).
    earlier: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    ledger: Path | None = None
    out_dir: Path | None = None
    repaired_bytes: int = 0
    #: The run's ``poll.give_up_after`` (the summary names it when jobs were given up).
    give_up_after: float | None = None
    #: Why the ledger could not be written, when that stopped the run (exit 74).
    ledger_error: LedgerWriteError | None = None
