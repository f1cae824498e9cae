"""What is checked before a run's first request, and what is read of the manifests up front:
the paths and the first row of each manifest (a manifest refused as a whole stops the run before
its ledger records it), a warning for a manifest a row appended later would join, and a quick
count of the rows for the progress display's ETA."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Sequence
from pathlib import Path

from .config import Settings, with_paths
from .download import check_out_dir
from .ledger import check_ledger_path
from .manifest import read_manifests
from .seams import without_final_line_break
from .workflows import WorkflowRegistry

log = logging.getLogger("batcher")


def preflight(settings: Settings, manifests: Sequence[Path], registry: WorkflowRegistry) -> Settings:
    """The settings with the ledger and output paths filled in, once what would stop the run
    before its first request is ruled out: a missing manifest, or one refused as a whole (no
    rows, a CSV without a header: found by reading up to its first row, before the ledger
    records a run of it), a ledger path that is not a file, an output folder that cannot take
    a file (made now). Raises UsageError/LedgerError."""
    rows = read_manifests(manifests, registry)  # checks the paths first
    try:
        next(rows, None)
    finally:
        rows.close()
    settings = with_paths(settings, list(manifests))
    assert settings.ledger.path is not None and settings.output.out_dir is not None
    check_ledger_path(settings.ledger.path)
    check_out_dir(settings.output.out_dir, create=True)
    return settings


def estimate_rows(manifests: Sequence[Path]) -> int | None:
    """Rows in the manifests by counting lines (fast, no parsing), for the ETA; None for YAML."""
    total = 0
    for path in manifests:
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv", ".txt"):
            return None
        try:
            with path.open("rb") as fh:
                lines = sum(1 for line in fh if line.strip() and not line.startswith(b"#"))
        except OSError:
            return None
        total += lines - 1 if suffix == ".csv" else lines
    return total


def warn_unterminated(manifests: Sequence[Path]) -> None:
    """Log a warning for each manifest that does not end with a line break (see
    :func:`~batcher.seams.without_final_line_break`)."""
    for path in without_final_line_break(manifests):
        log.warning(
            "manifest %s does not end with a line break: a row appended to it later would be joined"
            " to its last row; add one (echo >> %s)",
            path,
            shlex.quote(str(path)),
        )
