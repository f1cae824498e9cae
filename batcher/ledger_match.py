"""Whether a ledger belongs to this manifest and these workflow settings.

A ledger "for a different manifest" is another manifest file or other workflow settings, never a
manifest that grew: rows appended between nightly runs are the normal case, and their jobs are
new jobs of the same ledger. So only the file set and the fingerprints of the workflows that
have jobs in the ledger are compared; ``--force`` skips the check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import LedgerMismatchError
from .state import LedgerState


def check_compatible(
    state: LedgerState,
    manifests: Sequence[str],
    fingerprints: Mapping[str, str],
    templates: Mapping[str, str],
    *,
    ledger: str,
) -> None:
    """Raise LedgerMismatchError if the ledger replayed in ``state`` was written for other
    manifests or settings.

    A manifest that grew (rows appended) is the same manifest: only the file set and the
    workflow fingerprints (Segmind id and inputs; the ``compose`` templates, which rows without
    an id are named after) are compared, for workflows that have jobs in this ledger (editing a
    workflow it never ran changes no job's meaning). The file set may be any earlier run's (one
    ``--force`` run with another manifest does not take the ledger from the nightly one); the
    fingerprints are the last run's.
    """
    if not state.runs:
        return
    first = state.runs[-1]
    before = sorted(first.get("manifests") or [])
    used = [sorted(run.get("manifests") or []) for run in state.runs]
    if before and sorted(manifests) not in used:
        raise LedgerMismatchError(
            f"ledger {ledger} was written for manifest(s) {', '.join(before)}, not "
            f"{', '.join(sorted(manifests))}; give this manifest its own --ledger, "
            "or pass --force to use this ledger anyway"
        )
    ran = {job.workflow for job in state.jobs.values()} | state.done.workflows()
    changed = _changed(first.get("workflows"), fingerprints, ran)
    if changed:
        raise LedgerMismatchError(
            f"ledger {ledger} was written with different settings for workflow(s) "
            f"{', '.join(changed)} (Segmind id or inputs changed); its job ids may mean other "
            "jobs now. Use a new --ledger, or pass --force to use this ledger anyway"
        )
    recomposed = _changed(first.get("templates"), templates, ran)
    if recomposed:
        raise LedgerMismatchError(
            f"the compose template of workflow(s) {', '.join(recomposed)} changed since ledger "
            f"{ledger} was last run: every row without an id would get a new id and be paid "
            "for again. Restore the template, or give the rows ids, or use a new --ledger, or "
            "pass --force to run them all again"
        )


def _changed(recorded: object, now: Mapping[str, str], ran: set[str | None]) -> list[str]:
    """Workflows that have jobs in the ledger and whose recorded fingerprint differs from ``now``
    (a ledger written before a fingerprint was recorded has none to compare)."""
    if not isinstance(recorded, dict):
        return []
    return sorted(name for name, fp in now.items() if name in ran and recorded.get(name, fp) != fp)
