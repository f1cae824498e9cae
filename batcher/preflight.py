"""What is checked before a run's first request, and what is read of the manifests up front:
the paths and the first row of each manifest (a manifest refused as a whole stops the run before
its ledger records it), a warning for a manifest a row appended later would join, and a quick
count of the rows for the progress display's ETA."""

from __future__ import annotations

import json
import logging
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from .config import Settings, default_ledger, with_paths
from .download import check_out_dir
from .errors import UsageError
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
    check_default_ledger(settings, manifests)
    settings = with_paths(settings, list(manifests))
    assert settings.ledger.path is not None and settings.output.out_dir is not None
    check_ledger_path(settings.ledger.path)
    check_out_dir(settings.output.out_dir, create=True)
    return settings


def check_default_ledger(settings: Settings, manifests: Sequence[Path]) -> None:
    """Refuse to start a new ledger at the default path (``runs/<manifest>/ledger.jsonl``, under
    the folder batcher starts in) when the manifest's folder, or a folder above it, holds the
    ledger of its runs.

    Cron starts in the manifest's folder (``cd /data && batcher run nightly.jsonl``) or above it
    (the README's ``cd /srv/batcher && batcher run jobs/nightly.jsonl``); the same manifest run
    once by hand from elsewhere (``batcher run /data/nightly.jsonl`` from home,
    ``../nightly.jsonl`` from a sub-folder) found no ledger where it looked, started a new one,
    and sent every row again: all paid twice (the outputs were not where that run looked
    either, so nothing told it). Only the manifest's own folder was looked in, so the README's
    layout (manifests in ``jobs/``, ``runs/`` beside it) was paid twice all the same. Raises
    UsageError."""
    if settings.ledger.path is not None or not manifests:
        return
    default = default_ledger(manifests[0])
    if _has_records(default):
        return  # this folder's own ledger: the usual case
    here = (Path.cwd() / default).resolve()
    folder = manifests[0].resolve().parent
    for home in (folder, *folder.parents):
        theirs = home / default
        if theirs.resolve() != here and _names(theirs, manifests[0]):
            break
    else:
        return
    raise UsageError(
        f"{manifests[0]}: its ledger is {theirs}, kept by runs started in {home}; this run, started in"
        f" {Path.cwd()}, would start a new one ({default}) and send every row again, paid again:"
        f" run it in {home} (cd {shlex.quote(str(home))}), or give --ledger {shlex.quote(str(theirs))}"
        " (--ledger with a new path starts a new ledger on purpose)"
    )


def _has_records(path: Path) -> bool:
    try:
        return os.stat(path).st_size > 0
    except OSError:
        return False


def _names(ledger: Path, manifest: Path) -> bool:
    """Whether ``ledger``'s first line (a ``run`` record) names ``manifest``."""
    try:
        with ledger.open("rb") as fh:
            first = json.loads(fh.readline(1 << 20))
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and str(manifest.resolve()) in (first.get("manifests") or ())


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
