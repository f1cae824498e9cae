"""Saved output files on disk: flushing a run's to disk at its end, and checking an earlier one.

Outputs are not fsynced one by one (:mod:`batcher.download` writes and renames them): a run ends
with one ``syncfs`` of the output folder's filesystem, recorded by its ``run_end`` line. A run
that did not end so (killed, a power cut) may have left files that did not reach the disk: the
next run checks each of its recorded files (:func:`output_intact`) and downloads again the ones
that are missing or short, never paying again.

A run killed while writing an output leaves its hidden part file (``.<name>.<pid>.part``, see
:mod:`batcher.download`); the next run after one that did not end in order removes those whose
process is gone (:func:`sweep_parts`).

A job the ledger does not know should have no output yet: :func:`existing_output` finds one that
has, the sign of a ledger lost since its run (:class:`OrphanProbe`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .download import OUTPUT_SUFFIXES, PART_NAME, safe_name


def _syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs(2)`` (Linux): flush one filesystem, not every mounted one."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    found: Callable[[int], int] | None = getattr(libc, "syncfs", None)
    return found


_SYNCFS = _syncfs() if sys.platform.startswith("linux") else None


def sync_outputs(out_dir: Path) -> None:
    """Flush every output written under ``out_dir`` to disk: one ``syncfs`` for the whole run
    instead of an fsync per file (or ``sync`` where there is no syncfs). Blocking; run it in
    a thread. Until it runs, files survive a killed process but not a power cut, which is why
    the next run checks the files of a run that did not end with it (:func:`output_intact`)."""
    try:
        fd = os.open(out_dir, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return  # nothing was written (no folder)
    try:
        if _SYNCFS is None or _SYNCFS(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def output_intact(saved: dict[str, Any], bases: Sequence[Path] = ()) -> bool:
    """Whether a saved output (a ``completed`` record's entry) is on disk at its recorded size.
    A relative path (recorded by an older version, relative to the folder that run started in)
    is looked for in the current folder and then under each of ``bases``."""
    path, size = saved.get("path"), saved.get("bytes")
    if not isinstance(path, str) or not isinstance(size, int):
        return True  # not ours to judge (an older or hand-edited record)
    candidates = [path]
    if not os.path.isabs(path):
        candidates += [os.path.join(base, path) for base in bases]
    for candidate in candidates:
        try:
            if os.stat(candidate).st_size == size:
                return True
        except OSError:
            continue
    return False


#: New rows (ones the ledger has no record of) whose output files a run looks for, at most: a
#: lost ledger shows in the first of them, and a run of nothing but new rows pays only this.
PROBE_NEW_ROWS = 64


def existing_output(out_dir: Path, job_id: str) -> str | None:
    """The path of a first output of ``job_id`` already in ``out_dir`` (as :mod:`batcher.download`
    names it, under any suffix it gives), or None. Blocking (one ``stat`` a suffix)."""
    stem = os.path.join(out_dir, safe_name(job_id))
    for suffix in OUTPUT_SUFFIXES:
        if os.path.isfile(stem + suffix):
            return stem + suffix
    return None


class OrphanProbe:
    """Looks for a saved output of each of the first :data:`PROBE_NEW_ROWS` rows the ledger has no
    record of, until one is there: the sign of a ledger lost since its jobs ran. Used by the run
    (:mod:`batcher.feeder`, which stops submitting) and by ``--dry-run`` (which says it would)."""

    def __init__(self, out_dir: Path | None, ledger: Path | None) -> None:
        self._out_dir = out_dir
        self._ledger = ledger
        self._left = PROBE_NEW_ROWS if out_dir is not None else 0

    @property
    def due(self) -> bool:
        """Whether the next new row is to be looked at."""
        return self._left > 0

    def look(self, job_id: str, row: str) -> str | None:
        """Why the run stops at the new row ``row`` (``"m.jsonl, line 7"``) of ``job_id``, or None
        if its output is not there. Blocking (see :func:`existing_output`).

        The first look also checks whether the folder holds anything at all: a first run's
        (missing or empty) cannot hold an earlier run's output, and then no later row is
        looked at (each look is a trip to a thread: 64 of the 230-245 trips of a first run of
        1,500 jobs, now 150-160)."""
        if self._out_dir is None or self._left <= 0:
            return None
        if self._left == PROBE_NEW_ROWS and _empty(self._out_dir):
            self._left = 0
            return None
        self._left -= 1
        found = existing_output(self._out_dir, job_id)
        if found is None:
            return None
        self._left = 0
        return (
            f"{found} is already there, an output of {job_id} ({row}), but the ledger {self._ledger}"
            " has no record of that job: the ledger was deleted, emptied or replaced by an older copy"
            " since it ran (or another manifest's job of the same id saved it). Nothing more is"
            " sent, so nothing is paid for twice. Put the ledger back to go on from where it was; to"
            f" pay for these rows again, move their old outputs away from {self._out_dir} (or give"
            " --out another folder)"
        )


def _empty(folder: Path) -> bool:
    """Whether ``folder`` is missing or has no entries (reads its first entry only)."""
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is None
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not readable: not known to be empty, so look row by row as before


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (or might: one we may not signal is someone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def sweep_parts(out_dir: Path) -> int:
    """Remove the part files in ``out_dir`` whose writer is no longer running (a killed run's),
    and return how many. A running process's (another run saving into the same folder) stay.
    Blocking (one pass over the folder); run it in a thread."""
    removed = 0
    try:
        entries = os.scandir(out_dir)
    except OSError:
        return 0
    with entries:
        for entry in entries:
            found = PART_NAME.fullmatch(entry.name)
            if found is None or _running(int(found.group(1))):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
    return removed
