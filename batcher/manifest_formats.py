"""Manifest formats: bytes in, rows out, one row at a time.

Each reader turns a manifest file into a stream of :class:`RawRow` (a row as parsed: a dict for a
well-formed row, with the 1-based physical line where it starts) and :class:`BadRow` (a row that
could not even be parsed: bad bytes, a line over the size cap, invalid JSON, a YAML error). Turning
rows into jobs (workflow, inputs, ids) is :mod:`batcher.manifest`'s concern; problems with the file
as a whole raise :class:`~batcher.errors.ManifestError`. YAML has its own module,
:mod:`batcher.manifest_yaml`.

Every reader works on physical lines read with a size limit (:func:`physical_lines`), so neither a
million rows nor one runaway line is ever held in memory whole.
"""

from __future__ import annotations

import csv
import json
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


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be parsed; becomes a :class:`~batcher.errors.RowError`."""

    line: int
    message: str
    fix: str = ""
    field: str = ""


Row = RawRow | BadRow


def physical_lines(fh: BinaryIO, path: str) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, line bytes)`` for every physical line; ``None`` for a line over the cap.

    The line end (``\\n`` or ``\\r\\n``) is removed, and a UTF-8 byte order mark on line 1. A line over
    :data:`MAX_ROW_BYTES` is skipped in 64 KiB chunks (``readline(limit)``), never read whole.
    """
    limit = MAX_ROW_BYTES + 2  # room for "\r\n"
    number = 0
    try:
        while raw := fh.readline(limit):
            number += 1
            if not raw.endswith(b"\n") and len(raw) == limit:
                # Over the cap: skip to the line's end without keeping it.
                while (rest := fh.readline(_SKIP_CHUNK)) and not rest.endswith(b"\n"):
                    pass
                yield number, None
                continue
            if number == 1 and raw.startswith(_BOM):
                raw = raw[len(_BOM) :]
            body = raw[:-1] if raw.endswith(b"\n") else raw  # the last line may have no line end
            if body.endswith(b"\r"):
                body = body[:-1]
            yield number, (body if len(body) <= MAX_ROW_BYTES else None)
    except OSError as exc:
        raise ManifestError(f"cannot be read at line {number + 1}: {exc.strerror or exc}", path=path) from exc


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


def jsonl_rows(lines: Iterator[tuple[int, bytes | None]]) -> Iterator[Row]:
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
        if text and not text.isspace():
            yield parse_json_row(text, number)


# --- plain text: one image URL a line --------------------------------------------------------


def txt_rows(lines: Iterator[tuple[int, bytes | None]], workflow: str) -> Iterator[Row]:
    """Rows of a ``.txt`` manifest: one image reference a line, for ``workflow`` (sketch).

    Blank lines and lines starting with ``#`` are skipped; the rest is one ``input_image`` each.
    """
    for number, body in lines:
        if body is None:
            yield too_long(number)
            continue
        try:
            text = body.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            yield not_utf8(number, exc)
            continue
        if text and not text.startswith("#"):
            yield RawRow(number, {"workflow": workflow, "input": {"input_image": text}})


# --- CSV -------------------------------------------------------------------------------------


class _RecordTooBig(Exception):
    pass


class _CsvLines:
    """Feeds ``csv.reader`` one physical line at a time and remembers where a record began.

    ``csv.reader`` asks for exactly the lines one record needs (more than one when a quoted cell
    holds line breaks), so the first line asked for after :meth:`begin_record` is where the record
    starts. Unreadable lines are replaced (a line over the cap by an empty line, bad UTF-8 by
    U+FFFD), which keeps the quoting of the lines after them intact, and noted in ``problems``.
    """

    def __init__(self, lines: Iterator[tuple[int, bytes | None]]) -> None:
        self._lines = lines
        self.start = 0
        self.last = 0
        self.problems: list[BadRow] = []
        self._size = 0
        #: True once the file has ended. A record returned after that ended inside a quoted
        #: cell: every line ends with "\n", which ends any other record before the next is read.
        self.ended = False

    def begin_record(self) -> None:
        self.start = 0
        self.problems = []
        self._size = 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        try:
            number, body = next(self._lines)
        except StopIteration:
            self.ended = True
            raise
        self.start = self.start or number
        self.last = number
        where = f" on line {number}" if number != self.start else ""
        if body is None:
            self.problems.append(too_long(number, where))
            return "\n"
        self._size += len(body)
        if self._size > MAX_ROW_BYTES:
            # A quote left open can swallow the rest of the file; stop at the cap and let the
            # reader start afresh on the next line.
            raise _RecordTooBig
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(not_utf8(number, exc, where))
            text = body.decode("utf-8", "replace")
        # Line ends inside quoted cells are read as "\n", whatever the file used.
        return text + "\n"


def _read_header(reader: Iterator[list[str]], source: _CsvLines, path: str) -> list[str] | None:
    while True:
        source.begin_record()
        try:
            cells = next(reader)
        except StopIteration:
            return None
        except (csv.Error, _RecordTooBig) as exc:
            raise ManifestError(f"line {source.start}: the header cannot be read: {exc}", path=path) from exc
        if source.problems:
            problem = source.problems[0]
            raise ManifestError(f"line {source.start}: header {problem.message}", path=path, fix=problem.fix)
        if source.ended:
            unclosed = "a quote opened in the header is never closed"
            raise ManifestError(f"line {source.start}: {unclosed}", path=path, fix=_QUOTE_FIX)
        if any(cell.strip() for cell in cells):
            break
    names = [cell.strip() for cell in cells]
    line = source.start
    for column, name in enumerate(names, start=1):
        if not name:
            raise ManifestError(
                f"line {line}: column {column} of the header has no name",
                path=path,
                fix="name every column, e.g. id,workflow,input_image",
            )
        if "://" in name or name.startswith("data:"):
            raise ManifestError(
                f"line {line}: the first row must be a header naming the columns, but it holds data",
                path=path,
                fix="add a header row, e.g. id,workflow,input_image",
            )
        if names.index(name) != column - 1:
            raise ManifestError(
                f"line {line}: column {name!r} appears twice in the header", path=path, fix="keep one"
            )
    if not set(names) - {"id", "workflow"}:
        raise ManifestError(
            f"line {line}: the header names no input columns",
            path=path,
            fix="add columns named after the workflow's inputs, e.g. input_image or title",
        )
    return names


def csv_rows(lines: Iterator[tuple[int, bytes | None]], path: str) -> Iterator[Row]:
    """Rows of a ``.csv`` manifest: a header row, then one record per row.

    An empty cell is absent (a cell of spaces is present, and read as JSON's ``" "`` would be), and
    so are missing cells at the end of a record. A record whose cells are all empty or spaces is a
    blank line, skipped. A record with more non-empty cells than the header has columns is an
    error (an unquoted comma, most likely).
    """
    source = _CsvLines(lines)
    reader = csv.reader(source)
    header = _read_header(reader, source, path)
    if header is None:
        return
    width = len(header)
    while True:
        source.begin_record()
        try:
            cells = next(reader)
        except StopIteration:
            return
        except _RecordTooBig:
            yield too_long(source.start)
            continue
        except csv.Error as exc:
            yield _csv_error(source.start or source.last, exc)
            continue
        if source.problems:
            problem = source.problems[0]
            yield BadRow(source.start, problem.message, problem.fix)
            continue
        if source.ended:
            yield _unclosed_quote(source.start, source.last)
            continue
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or a spreadsheet's row of empty cells
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            yield BadRow(
                source.start,
                f"has {len(cells)} cells but the header has {width} columns",
                'put a cell that contains commas in double quotes: "a, b"',
            )
            continue
        data = {name: cell for name, cell in zip(header, cells, strict=False) if cell}
        yield RawRow(source.start, data, text_cells=True)


_QUOTE_FIX = 'close the quote, or double a quote that is part of a cell ("")'


def _unclosed_quote(start: int, last: int) -> BadRow:
    """A record that ran to the end of the file inside a quoted cell: refused whole, as which of
    its lines were meant as rows cannot be known (running them could pay for a broken row)."""
    if last == start:
        return BadRow(start, "a quote opened in this row is never closed", _QUOTE_FIX)
    return BadRow(
        start,
        f"a quote opened in this row is never closed, so lines {start}-{last} were read as one row"
        " and none of them was run",
        _QUOTE_FIX,
    )


def _csv_error(line: int, exc: csv.Error) -> BadRow:
    text = str(exc)
    if text.startswith("field larger than field limit"):
        limit = csv.field_size_limit()
        return BadRow(line, f"a cell is over {limit} characters", TOO_LONG_FIX)
    if text.startswith("new-line character seen in unquoted field"):
        return BadRow(
            line,
            "has a carriage return (CR) outside quotes",
            "end lines with LF or CRLF, and put a cell holding a line break in double quotes",
        )
    return BadRow(
        line,
        f"cannot be read as CSV: {text}",
        'put a cell with commas, quotes or line breaks in double quotes, and double its quotes ("")',
    )
