"""Seams: where a manifest ended without a line break when a run read it, and rows joined there.

A manifest whose last row has no line break (an editor that does not add one, a script that
writes ``row`` instead of ``row\\n``) joins that row to the next one appended (``echo ... >>``,
the nightly case). In JSONL and CSV the joined line is usually refused, but with a message about
the JSON or the cells, not the cause; in a ``.txt`` list of URLs it reads as one odd URL, which
is paid for, and the appended URL never runs.

So each run records in its ``run`` line, for each manifest (by resolved path), where the file
ended without a line break: the byte offset, the line that ended there, its length and a hash
of the bytes before the offset. The next run finds the file still holding those bytes with more
appended right after them (no line break in between) and reports that line as two rows joined,
saying where to put the line break. A seam stays recorded, run after run, until the file no
longer holds it (the line break was added, or the file was rewritten). Only line-based formats
(``.jsonl``, ``.csv``, ``.txt``) are checked.

A file that ends mid-row may also be one a writer is still appending to. So a run reads each
manifest only as far as it reached at the survey (:attr:`Survey.ends`), and if by the time the
run reads its last row the file has grown past that without a line break there, the row was
still being written: it is not run, and the run writes an ``unfinished`` line for it, which
takes its seam back (:func:`recorded_seams`): the next run reads the row whole instead of
calling it two rows joined.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Bytes before a seam that must be unchanged for it to count (enough to tell files apart).
TAIL = 256
_LINE_FORMATS = (".jsonl", ".csv", ".txt")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Seam:
    """A manifest ended at byte ``at`` without a line break, in the middle of physical line
    ``line`` (1-based), ``column`` bytes after that line's start; ``tail`` is a hash of the
    bytes before ``at``."""

    at: int
    line: int
    column: int
    tail: str

    def to_json(self) -> list[Any]:
        return [self.at, self.line, self.column, self.tail]

    @classmethod
    def from_json(cls, value: object) -> Seam | None:
        """A recorded seam, or None for anything else (a ledger edited by hand, a newer format)."""
        if not isinstance(value, list) or len(value) != 4:
            return None
        at, line, column, tail = value
        if not all(type(n) is int and n > 0 for n in (at, line, column)) or not isinstance(tail, str):
            return None
        return cls(at, line, column, tail)


@dataclass
class Survey:
    """What :func:`survey` found, by manifest (resolved path): the seams to record in this run's
    line, the lines that hold two rows joined, and each file's size, which is all of it the run
    reads (rows appended while it runs wait for the next run, and the seam recorded at the end
    is where the reading stops)."""

    record: dict[str, list[list[Any]]] = field(default_factory=dict)
    joined: dict[str, dict[int, Seam]] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)


def _tail_hash(fh: Any, at: int) -> str:
    start = max(0, at - TAIL)
    fh.seek(start)
    return hashlib.blake2b(fh.read(at - start), digest_size=8).hexdigest()


def _open_seam(fh: Any, size: int) -> Seam | None:
    """The seam at the end of a file that does not end with a line break, else None."""
    if size == 0:
        return None
    fh.seek(size - 1)
    if fh.read(1) in (b"\n", b"\r"):
        return None
    fh.seek(0)
    lines, start, offset = 1, 0, 0
    while chunk := fh.read(_CHUNK):
        newlines = chunk.count(b"\n")
        if newlines:
            lines += newlines
            start = offset + chunk.rindex(b"\n") + 1
        offset += len(chunk)
    return Seam(size, lines, size - start, _tail_hash(fh, size))


def _still_joined(fh: Any, size: int, seam: Seam) -> bool:
    """Whether the file still holds the bytes before ``seam`` with more appended right after."""
    if size <= seam.at:
        return False
    fh.seek(seam.at)
    if fh.read(1) in (b"\n", b"\r"):
        return False
    return _tail_hash(fh, seam.at) == seam.tail


def without_final_line_break(paths: Sequence[Path]) -> list[Path]:
    """The manifests whose last byte is not a line break. A row appended to one later (``echo
    ... >> m.jsonl``, the nightly case) joins its last row: in JSONL or CSV the joined line is
    refused, in a list of URLs it may even read as one odd URL. So the run warns in advance."""
    found = []
    for path in paths:
        try:
            with path.open("rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    continue
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) not in (b"\n", b"\r"):
                    found.append(path)
        except OSError:
            continue  # not readable: the manifest check says so
    return found


def recorded_seams(runs: Sequence[Mapping[str, Any]], name: str) -> list[Seam]:
    """The seams of manifest ``name`` as recorded by the last run that read it, but for one
    where that run found its last line still being written (an ``unfinished`` line, which the
    ledger's state files under its run as ``unfinished``): that line was not run as it stood, so
    what follows it now is the rest of it, not a row appended to it."""
    for run in reversed(runs):
        if name in (run.get("manifests") or []):
            found = run.get("seams")
            values = found.get(name) if isinstance(found, dict) else None
            seams = (Seam.from_json(v) for v in values) if isinstance(values, list) else ()
            notes = run.get("unfinished")
            cut = (
                {n.get("at") for n in notes if isinstance(n, dict) and n.get("manifest") == name}
                if isinstance(notes, list)
                else set()
            )
            return [s for s in seams if s is not None and s.at not in cut]
    return []


def survey(manifests: Sequence[Path], runs: Sequence[Mapping[str, Any]]) -> Survey:
    """Check the manifests against the seams earlier runs recorded (see the module notes), and
    note each one's size.

    Reads a few hundred bytes a seam, plus, for a manifest that now ends without a line break,
    the whole file once (to count its lines). A file that cannot be read is left to the
    manifest checks."""
    found = Survey()
    for path in manifests:
        name = str(path.resolve())
        keep: dict[int, Seam] = {}
        try:
            with path.open("rb") as fh:
                size = found.ends[name] = fh.seek(0, os.SEEK_END)
                if path.suffix.lower() not in _LINE_FORMATS:
                    continue
                for seam in recorded_seams(runs, name):
                    if _still_joined(fh, size, seam):
                        keep[seam.at] = seam
                        found.joined.setdefault(name, {})[seam.line] = seam
                end = _open_seam(fh, size)
                if end is not None:
                    keep.setdefault(end.at, end)
        except OSError:
            continue
        if keep:
            found.record[name] = [s.to_json() for _, s in sorted(keep.items())]
    return found
