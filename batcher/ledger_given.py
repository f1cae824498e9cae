"""The ledger file a read-only command (``status``, ``report``) was given, checked before and
after it is folded: missing (with the default ledger a manifest's run keeps, if that is what was
meant), a folder, or a file with no ledger record in it (a manifest, an image), each refused with
what to give instead. A run's own ``--ledger`` is checked by :func:`batcher.ledger.check_ledger_path`
(there a missing file is a new ledger)."""

from __future__ import annotations

from pathlib import Path

from .config import default_ledger
from .errors import LedgerError
from .manifest_formats import KINDS


def check_given_ledger(path: Path) -> None:
    """Refuse a ledger path that is not there, or is not a file. Raises LedgerError."""
    if not path.exists():
        meant = _existing_default_ledger(path)
        raise LedgerError(f"ledger not found: {path}" + (f" (did you mean {meant}?)" if meant else ""))
    if not path.is_file():
        inside = path / "ledger.jsonl"
        fix = f"give {inside}" if inside.is_file() else "give the ledger's .jsonl file"
        raise LedgerError(f"not a ledger file: {path} ({fix})")


def no_ledger_records(path: Path) -> LedgerError:
    """The error for a file in which no line is a ledger record (and whose first line is
    complete: not a ledger's first line still being written)."""
    problem = f"{path} is not a batcher ledger (no line of it is a ledger record); give the run's ledger"
    if path.suffix.lower() not in KINDS:
        # An image, a report: no manifest batcher reads, so it has no default ledger to name.
        return LedgerError(problem)
    # Most often the manifest, given where its ledger goes: say where that is.
    return LedgerError(
        f"{problem} (a run of {path.name} without --ledger keeps it in {default_ledger(path)})"
    )


def first_line_complete(path: Path) -> bool:
    """False for a ledger whose only line is still being written (not yet a record)."""
    with path.open("rb") as handle:
        return handle.readline().endswith(b"\n")


def _existing_default_ledger(path: Path) -> Path | None:
    """The ledger a run of a manifest named as ``path`` keeps without --ledger, under the folder
    batcher runs in, if it is there: ``batcher status nightly.jsonl`` typed where the manifest is
    not (or ``batcher status nightly``) said only "ledger not found"."""
    default = default_ledger(path)
    return default if path.stem and default.is_file() else None
