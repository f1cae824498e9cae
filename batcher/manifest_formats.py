"""Manifest formats: bytes in, rows out, one row at a time.

Each reader turns a manifest file into a stream of :class:`RawRow` (a row as parsed: a dict for a
well-formed row, with the 1-based physical line where it starts) and :class:`BadRow` (a row that
could not even be parsed: bad bytes, a line over the size cap, invalid JSON, a YAML error). Turning
rows into jobs (workflow, inputs, ids) is :mod:`batcher.manifest`'s concern; problems with the file
as a whole raise :class:`~batcher.errors.ManifestError`. CSV and YAML have their own modules,
:mod:`batcher.manifest_csv` and :mod:`batcher.manifest_yaml`.

Every reader works on physical lines read with a size limit (:func:`physical_lines`), so neither a
million rows nor one runaway line is ever held in memory whole.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from .errors import ManifestError

#: A row (a physical line; in CSV and YAML the whole record) over this many bytes is refused.
MAX_ROW_BYTES = 1024 * 1024

#: Manifest kind by file extension (compared lower-cased).
KINDS = {".jsonl": "jsonl", ".csv": "csv", ".yaml": "yaml", ".yml": "yaml", ".txt": "txt"}
KNOWN_EXTENSIONS = ".jsonl, .csv, .yaml, .yml or .txt"

TOO_LONG_FIX = "keep each row under 1 MiB; put large images in files or at URLs"
UTF8_FIX = "save the manifest as UTF-8"

_BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawRow:
    """A parsed row: ``data`` is what the row parsed to (a dict when it is well-formed)."""

    line: int
    data: object
    #: True for CSV, where every value is a text cell (numbers and booleans arrive as text).
    text_cells: bool = False
    #: The row's last physical line, for a CSV record with line breaks in a quoted cell; else 0.
    last: int = 0


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be parsed; becomes a :class:`~batcher.errors.RowError`."""

    line: int
    message: str
    fix: str = ""
    field: str = ""
    #: The row's last physical line, for a CSV record with line breaks in a quoted cell; else 0.
    last: int = 0


@dataclass(frozen=True, slots=True)
class Cut:
    """The row starting on ``line`` was still being written when the run started: the file has
    grown past what the run reads, and this row runs into that end (:class:`Lines`). It is not
    read; the next run reads it whole."""

    line: int


Row = RawRow | BadRow | Cut


class Lines:
    """The physical lines of a manifest: iterating gives ``(line number, line bytes)`` for each,
    ``None`` for a line over the cap.

    The line end (``\\n`` or ``\\r\\n``) is removed, and a UTF-8 byte order mark on line 1. A line over
    :data:`MAX_ROW_BYTES` is skipped in 64 KiB chunks (``readline(limit)``), never read whole.

    With ``end``, only the file's first ``end`` bytes are read: what it held when the run started
    (see :class:`~batcher.seams.Survey`), so that rows appended meanwhile wait for the next run.
    If the file has grown past ``end`` since, a writer may still be at work: :attr:`more` says
    so once the lines are read, and a last line with no line break that the file has since
    continued (no line break at ``end`` either) was cut off mid-write: it is not given at all,
    and :attr:`unfinished` is its number.
    """

    def __init__(self, fh: BinaryIO, path: str, end: int | None = None) -> None:
        self._fh = fh
        self._path = path
        self.end = end
        #: The file holds more than ``end`` bytes now (known once every line was read).
        self.more = False
        #: The line still being written at ``end`` (not given), or 0.
        self.unfinished = 0

    def __iter__(self) -> Iterator[tuple[int, bytes | None]]:
        return self._lines()

    def _lines(self) -> Iterator[tuple[int, bytes | None]]:
        fh = self._fh
        limit = MAX_ROW_BYTES + 2  # room for "\r\n"
        left = sys.maxsize if self.end is None else self.end  # bytes still to read
        number = 0
        try:
            while raw := fh.readline(min(limit, left)):
                number += 1
                left -= len(raw)
                if not raw.endswith(b"\n") and len(raw) == limit:
                    # Over the cap: skip to the line's end without keeping it.
                    while (rest := fh.readline(min(_SKIP_CHUNK, left))) and not rest.endswith(b"\n"):
                        left -= len(rest)
                    left -= len(rest)
                    yield number, None
                    continue
                if left == 0 and not raw.endswith(b"\n") and self._grown(cut=True):
                    self.unfinished = number
                    return
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                body = raw[:-1] if raw.endswith(b"\n") else raw  # the last line may have no line end
                if body.endswith(b"\r"):
                    body = body[:-1]
                yield number, (body if len(body) <= MAX_ROW_BYTES else None)
            if left == 0:
                self._grown(cut=False)
        except OSError as exc:
            raise ManifestError(
                f"cannot be read at line {number + 1}: {exc.strerror or exc}", path=self._path
            ) from exc

    def _grown(self, *, cut: bool) -> bool:
        """Whether the file now holds more than ``end`` bytes (sets :attr:`more`); with ``cut``,
        whether the line ending at ``end`` goes on after it (no line break there)."""
        assert self.end is not None
        try:
            fd = self._fh.fileno()
            self.more = os.fstat(fd).st_size > self.end
            return self.more and cut and os.pread(fd, 1, self.end) not in (b"\n", b"\r")
        except (OSError, io.UnsupportedOperation):  # not a file on disk: nothing to compare
            return False


def physical_lines(fh: BinaryIO, path: str, end: int | None = None) -> Lines:
    """The physical lines of ``fh`` (see :class:`Lines`)."""
    return Lines(fh, path, end)


def too_long(line: int, where: str = "") -> BadRow:
    """The row on ``line`` is over the cap (``where`` names another line of a multi-line row)."""
    return BadRow(line, f"row is over the {MAX_ROW_BYTES}-byte limit{where}", TOO_LONG_FIX)


def not_utf8(line: int, exc: UnicodeDecodeError, where: str = "") -> BadRow:
    """The row on ``line`` has bytes that are not UTF-8."""
    byte = exc.object[exc.start]
    return BadRow(
        line, f"row is not valid UTF-8: byte 0x{byte:02x} at column {exc.start + 1}{where}", UTF8_FIX
    )


def check_encoding(head: bytes, path: str) -> None:
    """Refuse a UTF-16 (or UTF-32) file as a whole: every line of it would be an error."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ManifestError("is UTF-16 encoded", path=path, fix=UTF8_FIX)


# --- JSON Lines ------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads keeps the last of two equal keys without a word; a row saying two things is a
    # mistake worth reporting, not a coin toss.
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


_JSON = json.JSONDecoder(object_pairs_hook=_unique_pairs)


def parse_json_row(text: str, line: int) -> Row:
    """One JSON Lines row: a :class:`RawRow`, or a :class:`BadRow` saying what is wrong with it."""
    try:
        return RawRow(line, _JSON.decode(text))
    except _DuplicateKey as exc:
        return BadRow(line, "appears twice in one object", "keep one of them", field=exc.key)
    except json.JSONDecodeError as exc:
        return BadRow(
            line, f"invalid JSON: {exc.msg} at column {exc.colno}", "write one JSON object per line"
        )
    except ValueError as exc:  # an integer over Python's int/str conversion limit (4300 digits)
        if str(exc).startswith("Exceeds the limit"):
            return BadRow(line, "invalid JSON: a number has too many digits", "write it as a string")
        return BadRow(line, f"invalid JSON: {exc}", "write one JSON object per line")
    except RecursionError:
        return BadRow(line, "invalid JSON: nested too deeply", "write one flat JSON object per line")


def jsonl_rows(lines: Lines) -> Iterator[Row]:
    """Rows of a ``.jsonl`` manifest: one JSON value per non-blank line."""
    for number, body in lines:
        if body is None:
            yield too_long(number)
            continue
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield not_utf8(number, exc)
            continue
        if text.startswith("\ufeff"):  # a file appended with its byte order mark
            text = text[1:]
        if text and not text.isspace():
            yield parse_json_row(text, number)
    if lines.unfinished:
        yield Cut(lines.unfinished)


# --- plain text: one image URL a line --------------------------------------------------------


def txt_rows(lines: Lines, workflow: str) -> Iterator[Row]:
    """Rows of a ``.txt`` manifest: one image reference a line, for ``workflow`` (sketch).

    Blank lines and lines starting with ``#`` are skipped; the rest is one ``input_image`` each.
    """
    for number, body in lines:
        if body is None:
            yield too_long(number)
            continue
        try:
            text = body.decode("utf-8").strip().lstrip("\ufeff")  # a list appended with its BOM
        except UnicodeDecodeError as exc:
            yield not_utf8(number, exc)
            continue
        if text and not text.startswith("#"):
            yield RawRow(number, {"workflow": workflow, "input": {"input_image": text}})
    if lines.unfinished:
        yield Cut(lines.unfinished)


# --- CSV -------------------------------------------------------------------------------------
