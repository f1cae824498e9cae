"""Reading a ledger's runs ahead of its replay, so that a completed job is settled (kept only as
done, by :class:`~batcher.donejobs.DoneJobs`) as early as is safe.

A completed job's outputs and poll_url are needed until a ``run_end`` says its files reached the
disk. A replay that waits for that line holds every job of a run whole until its end (a million
jobs in one run held 1.8 GB). :func:`run_ends` finds, in a quick pass, which runs end in order;
:class:`RunsAhead` then tells the replay (:class:`~batcher.state.LedgerState`, and the lean fold
of ``status`` and ``report``) to settle a job of such a run at its ``completed`` line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import LedgerError

#: Where a ``run`` or ``run_end`` status can be: a JSON string that begins ``"run``.
_RUN_TOKEN = b'"run'
_SCAN_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class RunMark:
    """A run of a ledger as :func:`run_ends` found it: its ``run`` record (None for the lines
    before the first) and how many ``run_end`` lines follow it before the next ``run``."""

    record: dict[str, Any] | None
    ends: int


def run_ends(path: Path) -> RunsAhead:
    """The runs of a ledger file and the ``run_end`` lines of each, in order, read ahead of its
    replay, as the :class:`RunsAhead` that replay follows.

    A quick pass: the file in blocks, only lines holding a string that begins ``"run`` parsed,
    each as the replay reads it (a record with ``job_id`` null and ``status`` ``run`` or
    ``run_end``; a torn tail is no record)."""
    marks = [RunMark(None, 0)]
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return RunsAhead(marks)
    except OSError as exc:
        raise LedgerError(f"cannot read ledger {path}: {exc.strerror}") from None
    with handle:
        carry = b""
        # Blocks no bigger than the file (a read allocates its whole size first).
        size = min(_SCAN_BLOCK, max(os.fstat(handle.fileno()).st_size, 64 * 1024))
        while block := handle.read(size):
            data = carry + block if carry else block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            at = data.find(_RUN_TOKEN, 0, cut)
            while at >= 0:
                start = data.rfind(b"\n", 0, at) + 1
                stop = data.find(b"\n", at) + 1
                mark = _run_mark(data[start:stop])
                if isinstance(mark, dict):
                    marks.append(RunMark(mark, 0))
                elif mark is not None:  # a run_end
                    marks[-1] = RunMark(marks[-1].record, marks[-1].ends + 1)
                at = data.find(_RUN_TOKEN, stop, cut)
    return RunsAhead(marks)


class RunsAhead:
    """When a replay settles each completed job (moves it to its done jobs, where nothing but
    that it is done is kept): at its ``completed`` line if its run ends in order further on (as
    :func:`run_ends` read ahead), else at the next ``run_end``. The replay tells it each ``run``,
    ``run_end`` and ``completed`` record as it comes.

    Each ``run`` record is compared with the one read ahead; from the first that differs (the
    file changed between the two reads, or holds a ``run`` line the quick pass did not see),
    nothing read ahead is trusted, and every run is taken as one that may not end."""

    __slots__ = ("_ends", "_index", "_waiting", "marks")

    def __init__(self, marks: Sequence[RunMark] = ()) -> None:
        #: What was read ahead; empty once it stopped matching the records (or if none was).
        self.marks = marks
        self._index = 0
        self._ends = marks[0].ends if marks else 0
        #: Jobs completed since the last ``run_end`` whose run was not known to end in order
        #: (their files may not have reached the disk).
        self._waiting: list[str] = []

    def ends(self) -> bool:
        """Whether the run being replayed ends in order further on (as read ahead): a job
        completed now settles now, as that ``run_end`` would settle it (nothing in a run writes
        of a job after its completed line)."""
        return self._ends > 0

    def completed(self, job_id: str) -> bool:
        """A job's ``completed`` record: True if it settles now (:meth:`ends`); else it waits
        for the next ``run_end``."""
        if self._ends > 0:
            return True
        self._waiting.append(job_id)
        return False

    def run(self, record: Mapping[str, Any]) -> None:
        """A ``run`` record: the next run read ahead, if it is this one."""
        index = self._index + 1
        if index < len(self.marks) and self.marks[index].record == record:
            self._index = index
            self._ends = self.marks[index].ends
        else:
            self.marks = ()
            self._ends = 0

    def run_end(self) -> list[str]:
        """A ``run_end`` record: the jobs that waited for it, to settle now if they are still
        completed (their files reached the disk)."""
        self._ends = max(0, self._ends - 1)
        waiting, self._waiting = self._waiting, []
        return waiting


def _run_mark(line: bytes) -> dict[str, Any] | str | None:
    """A ``run`` line's record, ``"run_end"`` for a ``run_end`` line, None for any other line."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("job_id") is not None:
        return None
    status = record.get("status")
    if status == "run":
        return record
    return "run_end" if status == "run_end" else None
