"""CSV manifests: bytes in, rows out, one record at a time (see :mod:`batcher.manifest_formats`
for the row types and the line reader every format shares).

The header row names the columns and decides the delimiter (commas if it has any, else semicolons
or tabs, as European Excel and tab-separated exports write; a ``sep=X`` first line names it). A
record may span lines inside a quoted cell; it is still read with a size cap, and a row appended
onto any of its lines without a line break is found (:mod:`batcher.seams`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from itertools import chain

from .errors import ManifestError
from .manifest_formats import MAX_ROW_BYTES, TOO_LONG_FIX, BadRow, Cut, Lines, RawRow, Row, not_utf8, too_long


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
