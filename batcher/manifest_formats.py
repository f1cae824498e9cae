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
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
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
        self._lines = iter(lines)
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
        except _RecordTooBig as exc:
            raise ManifestError(
                f"line {source.start}: the header {too_long(source.start).message}", path=path
            ) from exc
        except csv.Error as exc:
            problem = _csv_error(source.start or source.last, exc)
            raise ManifestError(
                f"line {problem.line}: header {problem.message}", path=path, fix=problem.fix
            ) from exc
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


#: What a CSV header row may separate its names with instead of commas: European Excel saves
#: "CSV" with semicolons (a comma is their decimal mark), and tab-separated files often end in .csv.
_OTHER_DELIMITERS = (";", "\t")
#: Excel's own hint on a CSV's first line, naming its delimiter: ``sep=;``.
_SEP_HINT = re.compile(r'"?sep=([,;\t|])"?')
_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}


def _delimiter(lines: Iterator[tuple[int, bytes | None]]) -> tuple[Iterator[tuple[int, bytes | None]], str]:
    """The delimiter of a CSV, and its lines (without Excel's ``sep=`` line, if it has one).

    The header row decides: commas if it has any, else semicolons or tabs if it has those, so
    every row is split the way its header is. (Header names hold no commas, semicolons or tabs:
    they are input names.)"""
    peeked: list[tuple[int, bytes | None]] = []
    delimiter = ","
    for number, body in lines:
        if body is None:
            peeked.append((number, body))
            break
        text = body.decode("utf-8", "replace").strip(" ")
        if hint := _SEP_HINT.fullmatch(text):
            delimiter = hint.group(1)
            break
        peeked.append((number, body))
        if text.strip():
            if "," not in text:
                delimiter = next((d for d in _OTHER_DELIMITERS if d in text), ",")
            break
    return chain(peeked, lines), delimiter


def csv_rows(lines: Lines, path: str) -> Iterator[Row]:
    """Rows of a ``.csv`` manifest: a header row, then one record per row.

    Cells are separated by commas, or by semicolons or tabs if the header row is (see
    :func:`_delimiter`). An empty cell is absent (a cell of spaces is present, and read as JSON's
    ``" "`` would be), and so are missing cells at the end of a record. A record whose cells are
    all empty or spaces is a blank line, skipped, and so is the header row again (see
    :func:`_header_again`). A record with more non-empty cells than the header has columns is an
    error (an unquoted comma, most likely). A record that runs into the
    end of what is read while the file goes on growing is :class:`Cut`: still being written.
    """
    rest, delimiter = _delimiter(iter(lines))
    source = _CsvLines(rest)
    reader = csv.reader(source, delimiter=delimiter)
    header = _read_header(reader, source, path)
    if header is None:
        return
    width = len(header)
    while True:
        source.begin_record()
        try:
            cells = next(reader)
        except StopIteration:
            if lines.unfinished:  # a line cut off mid-write, where a new record would begin
                yield Cut(lines.unfinished)
            return
        except _RecordTooBig:
            yield too_long(source.start)
            continue
        except csv.Error as exc:
            yield _csv_error(source.start or source.last, exc)
            continue
        if source.ended and lines.more:
            yield Cut(source.start)  # inside a quoted cell when the file ended: being written
            return
        last = source.last if source.last != source.start else 0
        if source.problems:
            problem = source.problems[0]
            yield BadRow(source.start, problem.message, problem.fix, last=last)
            continue
        if source.ended:
            yield _unclosed_quote(source.start, source.last)
            continue
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or a spreadsheet's row of empty cells
        if again := _header_again(cells, header):
            header = again  # a CSV appended with its own header row: its rows follow that one
            continue
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            what = _DELIMITER_NAMES[delimiter]
            yield BadRow(
                source.start,
                f"has {len(cells)} cells but the header has {width} columns",
                f'put a cell that contains {what} in double quotes: "a{delimiter} b"'.replace("\t", "\\t"),
                last=last,
            )
            continue
        data = {name: cell for name, cell in zip(header, cells, strict=False) if cell}
        yield RawRow(source.start, data, text_cells=True, last=last)


def _header_again(cells: list[str], header: list[str]) -> list[str] | None:
    """The column names, if this record is a header row again: another CSV appended with its
    own header (an export added to the nightly manifest as it is), perhaps behind a byte order
    mark, perhaps with its columns in another order. Else None: a row of data, whose cells are
    not all the column names."""
    first = cells[0].strip().lstrip("\ufeff").strip()
    if first not in header:  # cheap: a data row's first cell is no column name
        return None
    names = [first, *(cell.strip() for cell in cells[1:])]
    while names and not names[-1]:
        names.pop()
    return names if sorted(names) == sorted(header) else None


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
        last=last,
    )


def _csv_error(line: int, exc: csv.Error) -> BadRow:
    text = str(exc)
    if text.startswith("field larger than field limit"):
        limit = csv.field_size_limit()
        return BadRow(line, f"a cell is over {limit} characters", TOO_LONG_FIX)
    if text.startswith("new-line character seen in unquoted field"):
        # Also what a file whose lines end with CR alone (old Mac programs) meets on line 1.
        return BadRow(
            line,
            "has a carriage return (CR) outside quotes",
            "end lines with LF or CRLF (a file saved with CR alone is one long line),"
            " and put a cell holding a line break in double quotes",
        )
    return BadRow(
        line,
        f"cannot be read as CSV: {text}",
        'put a cell with commas, quotes or line breaks in double quotes, and double its quotes ("")',
    )
