"""Manifests: the files that list the jobs to run, read as a stream of jobs and row errors.

A manifest is chosen by its extension (any case): ``.jsonl`` (one JSON object a line), ``.csv`` (a
header row, then one row a job), ``.yaml``/``.yml`` (a list of rows) or ``.txt`` (one image URL a
line, for ``sketch``). A row is ``{"id": ..., "workflow": ..., "input": {...}}``, or flat with its
inputs beside ``id`` and ``workflow``; both ``id`` and ``workflow`` are optional::

    {"id": "cat-1", "workflow": "sketch", "input": {"input_image": "https://example.com/cat.jpg"}}
    {"title": "Ten tips for bread", "description": "Sourdough for beginners"}

Reading yields :class:`JobSpec` for each good row and a :class:`~batcher.errors.RowError` *value*
for each bad one, in file order (and :class:`Unfinished` for a last row still being written, when
read as a run reads, up to where each file ended as it started); a problem with a whole file raises
:class:`~batcher.errors.ManifestError`. Rows are read one at a time; all that is kept of a row
is an 8-byte hash of its id and where it was (for duplicates: about 32 bytes a row), so a
million-row manifest reads in well under 100 MB.

A row without an id gets :func:`job_id_for`: a hash of the workflow and the prepared inputs, so the
same row is the same job in every run and every format, wherever it sits in the file. A row with
its own id keeps its input fields, hashed only when asked (:meth:`JobSpec.inputs_hash`): the
ledger records the hash, so that a row edited in place under its old id is noticed instead of
passing for the job that ran.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

from .errors import ManifestError, RowError
from .manifest_csv import csv_rows
from .manifest_formats import (
    KINDS,
    KNOWN_EXTENSIONS,
    BadRow,
    Cut,
    RawRow,
    Row,
    check_encoding,
    jsonl_rows,
    physical_lines,
    txt_rows,
)
from .manifest_rows import MAX_ID_LENGTH, NeedsFiles, Refused, inputs_hash, job_from_row, job_id_for
from .manifest_yaml import yaml_rows
from .seams import Seam, Survey
from .state import FINAL_OK, NOT_SENT, JobState, Next
from .workflows import Workflow, WorkflowRegistry

__all__ = [
    "MAX_ID_LENGTH",
    "JobSpec",
    "Unfinished",
    "check_manifest_paths",
    "job_id_for",
    "read_manifest",
    "read_manifests",
]

#: The workflow a ``.txt`` manifest's lines run.
TXT_WORKFLOW = "sketch"


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job read from a manifest, checked and ready to run."""

    job_id: str
    workflow: Workflow
    #: The prepared inputs (validated, composed); local image paths are kept as written.
    inputs: dict[str, Any]
    #: The manifest file, as given.
    path: str
    #: The 1-based physical line where the row starts.
    line: int
    #: The manifest's folder: local image paths are relative to it.
    base_dir: Path
    #: A row with its own id: its input fields as written (CSV cells read as numbers where the
    #: workflow takes one), for :meth:`inputs_hash`. None for a row without an id, whose
    #: ``job_id`` is the hash of its workflow and inputs already (an edit makes a new job).
    fields: dict[str, Any] | None = None

    @property
    def named(self) -> bool:
        """The row gave its own id."""
        return self.fields is not None

    def inputs_hash(self) -> str:
        """What a row with its own id says, hashed (:func:`~batcher.manifest_rows.inputs_hash`),
        as its ``submitting`` line records it; a row without one: its id."""
        return self.job_id if self.fields is None else inputs_hash(self.workflow, self.fields)

    def edited_since(self, known: JobState, step: Next) -> str | None:
        """A warning if this row has its own id, the ledger's job of that id was sent with other
        inputs (the row was edited in place since), and ``step`` does not send it again: this
        row, as it is now, is not run. None otherwise (also for a ledger that recorded no hash)."""
        if not self.named or known.inputs_hash is None or step not in NOT_SENT:
            return None  # checked first: hashing the inputs is the costly part
        if not known.sent_other_inputs(self.inputs_hash()):
            return None
        fix = "give the row a new id to run it as it is now, paid for again; or restore its inputs"
        if step is Next.NOTHING and known.status != FINAL_OK:
            fix += "; or pass --retry-failed to send it again as it is now"
        return (
            f"{self.path}:{self.line}: id {self.job_id!r}: the ledger's job of this id was sent with "
            f"other inputs ({known.status}); this row as it is now is not run ({fix})"
        )


def check_manifest_paths(paths: Sequence[Path]) -> None:
    """Refuse, before anything runs, manifests that are missing, unreadable, empty or of unknown kind."""
    if not paths:
        raise ManifestError("no manifest given", path="manifest", fix="give at least one manifest file")
    seen: set[Path] = set()
    for path in paths:
        where = str(path)
        try:
            size = path.stat().st_size
            if path.is_dir():
                raise ManifestError(
                    "is a folder, not a manifest file", path=where, fix=f"give a {KNOWN_EXTENSIONS} file"
                )
            with path.open("rb"):
                pass
        except FileNotFoundError as exc:
            raise ManifestError("manifest not found", path=where, fix="check the path") from exc
        except OSError as exc:
            raise ManifestError(
                f"cannot be read: {exc.strerror or exc}", path=where, fix="check the file's permissions"
            ) from exc
        _kind_of(path)
        if size == 0:
            raise ManifestError("is empty", path=where, fix="add at least one row")
        key = path.resolve()
        if key in seen:
            raise ManifestError("is given twice", path=where, fix="give each manifest once")
        seen.add(key)


def read_manifest(path: Path, registry: WorkflowRegistry) -> Iterator[JobSpec | RowError | Unfinished]:
    """Jobs and row errors of one manifest, in file order (see :func:`read_manifests`)."""
    return read_manifests([path], registry)


@dataclass(frozen=True, slots=True)
class Unfinished:
    """Rows at the end of a manifest still being written when the run started: the file has
    grown since, and the row on ``line`` ran into the end of what the run reads (byte ``at``,
    where the file ended then). Not read, not run, not invalid: the next run reads it whole."""

    #: The manifest, as given, and resolved (how the ledger names it).
    path: str
    name: str
    line: int
    at: int

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: this row was still being written when the run started (the"
            " file has grown since): it is left for the next run, which reads it whole"
        )


def read_manifests(
    paths: Sequence[Path],
    registry: WorkflowRegistry,
    *,
    survey: Survey | None = None,
    needs_files: NeedsFiles | None = None,
) -> Generator[JobSpec | RowError | Unfinished, None, None]:
    """Jobs and row errors of several manifests, in order; ids are unique across all of them.

    A row naming local image files is refused if one is missing (or unreadable, not a file, too
    large) only when ``needs_files(job_id)`` is true, or no ``needs_files`` is given: a run
    passes one that says whether it would still send the job (:func:`~batcher.state.sends`),
    so a row whose job ran before is that job even after its files were moved away.

    A generator: nothing is read until it is iterated. Every whole-file problem raises
    :class:`ManifestError` from the first ``next()``, before any row is yielded: the paths are
    checked (:func:`check_manifest_paths`), then each file is opened and read up to its first row
    (a CSV header, the start of a YAML list, a file with no rows). Row problems are *yielded* as
    :class:`RowError`, never raised. (An I/O error while reading, or a YAML syntax error after
    the first row, comes later: the first raises ManifestError, the second is a RowError that
    says the rest of that file was not read.)

    With a ``survey`` (:func:`batcher.seams.survey`, taken as the run starts), each manifest is
    read only as far as it reached then (:attr:`~batcher.seams.Survey.ends`), and lines that
    hold two rows joined at a seam (:attr:`~batcher.seams.Survey.joined`) are each a RowError
    saying where the line break goes, not a job. A file that has grown since the survey may
    still be being written: a last row cut off there is :class:`Unfinished`, not a job.
    """
    check_manifest_paths(paths)
    names = [str(p) for p in paths]
    resolved = [str(p.resolve()) for p in paths]
    ends = survey.ends if survey else {}
    seen = _FirstSeen(len(paths))
    with ExitStack() as stack:
        started: list[tuple[_Source, Iterator[Row]]] = []
        for index, path in enumerate(paths):
            source = _Source(names[index], index, path.parent.absolute(), names)
            rows = _open_rows(path, registry, stack, ends.get(resolved[index]))
            first = next(rows, None)
            if first is None:
                message, fix = _no_rows(_kind_of(path))
                raise ManifestError(message, path=source.path, fix=fix)
            started.append((source, chain([first], rows)))
        for (source, rows), name in zip(started, resolved, strict=True):
            seams = survey.joined.get(name) if survey else None
            for row in rows:
                if seams and (seam := _seam_in(row, seams)):
                    yield _joined(seam, row.line, source.path)
                elif isinstance(row, BadRow):
                    yield RowError(row.message, path=source.path, line=row.line, field=row.field, fix=row.fix)
                elif isinstance(row, Cut):
                    yield Unfinished(source.path, name, row.line, ends[name])
                else:
                    yield _job(row, source, registry, seen, needs_files)


def _seam_in(row: Row, seams: Mapping[int, Seam]) -> Seam | None:
    """The seam on one of the row's lines (a CSV record may span several), if any."""
    if isinstance(row, Cut):
        return None
    if not row.last:
        return seams.get(row.line)
    return next((seams[n] for n in range(row.line, row.last + 1) if n in seams), None)


def _joined(seam: Seam, start: int, path: str) -> RowError:
    where = f" (in the row that begins on line {start})" if start != seam.line else ""
    return RowError(
        f"holds two rows joined together{where}: this manifest ended here without a line break "
        "when batcher last read it, and the row appended later went on the same line",
        path=path,
        line=seam.line,
        fix=f"put a line break after byte {seam.column} of this line, then run again",
    )


# --- one file ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    path: str
    index: int
    base_dir: Path
    names: list[str]  # every manifest of the run, for "the id of other.csv:3"


def _kind_of(path: Path) -> str:
    kind = KINDS.get(path.suffix.lower())
    if kind is None:
        what = f"unknown manifest type {path.suffix!r}" if path.suffix else "has no file extension"
        raise ManifestError(what, path=str(path), fix=f"use {KNOWN_EXTENSIONS}")
    return kind


def _open_rows(path: Path, registry: WorkflowRegistry, stack: ExitStack, end: int | None) -> Iterator[Row]:
    """The rows of one manifest (its first ``end`` bytes, if given); the file stays open until
    ``stack`` closes."""
    where = str(path)
    kind = _kind_of(path)
    if kind == "txt" and registry.get(TXT_WORKFLOW) is None:
        raise ManifestError(
            f"a .txt manifest makes {TXT_WORKFLOW} jobs, but no workflow named {TXT_WORKFLOW!r} is defined",
            path=where,
            fix=f"add jobs/{TXT_WORKFLOW}.yaml, or write the manifest as .jsonl with a workflow field",
        )
    try:
        fh = stack.enter_context(path.open("rb"))
        head = fh.peek(4)[:4]
    except OSError as exc:
        raise ManifestError(f"cannot be read: {exc.strerror or exc}", path=where) from exc
    check_encoding(head, where)
    lines = physical_lines(fh, where, end)
    if kind == "jsonl":
        return jsonl_rows(lines)
    if kind == "csv":
        return csv_rows(lines, where)
    if kind == "yaml":
        return yaml_rows(lines, where)
    return txt_rows(lines, TXT_WORKFLOW)


def _no_rows(kind: str) -> tuple[str, str]:
    if kind == "txt":
        return "has no image URLs", "put one image URL on each line"
    if kind == "csv":
        return "has no rows", "put a header row, then one row per job"
    return "has no rows", "add at least one row"


def _job(
    row: RawRow, source: _Source, registry: WorkflowRegistry, seen: _FirstSeen, needs_files: NeedsFiles | None
) -> JobSpec | RowError:
    def claim(job_id: str, explicit: bool) -> None:
        first = seen.first(job_id, row.line, source.index)
        if first is None:
            return
        first_line, first_index = first
        where = f"line {first_line}"
        if first_index != source.index:
            where = f"{source.names[first_index]}:{first_line}"
        if explicit:
            raise Refused("id", f"{job_id!r} is also the id of {where}", "give every row its own id")
        raise Refused(
            "", f"same workflow and inputs as {where}", "remove the repeated row, or give each its own id"
        )

    try:
        job_id, workflow, inputs, fields = job_from_row(row, source.base_dir, registry, claim, needs_files)
    except Refused as exc:
        return RowError(
            exc.message, path=source.path, line=row.line, field=exc.field, fix=exc.fix, job_id=exc.job_id
        )
    return JobSpec(job_id, workflow, inputs, source.path, row.line, source.base_dir, fields)


# --- duplicate ids ------------------------------------------------------------------------------


class _FirstSeen:
    """Where each job id was first seen, in about 32 bytes an id.

    An open-addressing table (linear probing, load at most 1/2) of 64-bit BLAKE2b hashes of the ids,
    in two ``array('Q')``: a dict of Python ints costs about 120 bytes an entry, 120 MB for a
    million rows. Two different ids share a hash with probability about n²/2⁶⁵ (3·10⁻⁸ for a
    million ids); such a pair would be reported as a duplicate.
    """

    def __init__(self, files: int, capacity: int = 1024) -> None:
        self._files = max(files, 1)
        self._keys = array("Q", [0]) * capacity
        self._where = array("Q", [0]) * capacity
        self._count = 0

    def first(self, job_id: str, line: int, file_index: int) -> tuple[int, int] | None:
        """Record ``job_id`` at (line, file) unless seen; if seen, where it was first."""
        digest = hashlib.blake2b(job_id.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little") or 1  # 0 marks an empty slot
        found = self._insert(key, line * self._files + file_index)
        return None if found is None else divmod(found, self._files)

    def _insert(self, key: int, where: int) -> int | None:
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while True:
            current = keys[slot]
            if current == 0:
                keys[slot] = key
                self._where[slot] = where
                self._count += 1
                if 2 * self._count > len(keys):
                    self._grow()
                return None
            if current == key:
                return self._where[slot]
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old_keys, old_where = self._keys, self._where
        self._keys = array("Q", [0]) * (2 * len(old_keys))
        self._where = array("Q", [0]) * (2 * len(old_keys))
        self._count = 0
        for key, where in zip(old_keys, old_where, strict=True):
            if key:
                self._insert(key, where)
