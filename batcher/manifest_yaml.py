"""YAML manifests: the items of a top-level list, read one at a time with PyYAML's event API.

``yaml.safe_load`` builds the whole document; a million-row list would be a million dicts at
once. Instead the list's start is read as events, then each item is composed
(``Composer.compose_node``) and constructed on its own, so memory holds one row. The rows are
checked by :mod:`batcher.manifest_rows` like any other format's.

Events come from libyaml's C parser when PyYAML was built with it (about 4x faster: some 25,000
rows/s instead of 6,000), else from PyYAML's pure-Python one; composing and constructing are
PyYAML's Python code either way.

Limits: PyYAML cannot resume after a syntax error, so one ends the file there (reported on its
line; the rows after it are not read). A single row is composed whole before it can be measured:
a row over the cap is reported, but it was read into memory first (a line over the cap, though,
is dropped unread). Anchored nodes (``&name``) are kept for the whole file, as later aliases may
refer to them.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode

from .errors import ManifestError
from .manifest_formats import MAX_ROW_BYTES, BadRow, Cut, Lines, RawRow, Row, not_utf8, too_long

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOT_PRINTABLE = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _DuplicateYamlKey(ConstructorError):
    def __init__(self, key: str, node: Node) -> None:
        super().__init__(None, None, f"key {key!r} appears twice", node.start_mark)
        self.key = key


class _NoDuplicateKeys(SafeConstructor):
    """Refuse a mapping that gives one key twice (PyYAML silently keeps the last)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise _DuplicateYamlKey(key_node.value, key_node)
                seen.add(key)
        return super().construct_mapping(node, deep)


class PureLoader(_NoDuplicateKeys, yaml.SafeLoader):
    """PyYAML's pure-Python safe loader, refusing duplicate keys."""


class FastLoader(_NoDuplicateKeys, yaml.CSafeLoader, Composer):
    """libyaml's parser for events, PyYAML's ``Composer`` to compose one list item at a time.

    ``CSafeLoader`` composes only whole documents (``get_node``); ``Composer.compose_node`` runs on
    any parser's ``check_event``/``get_event``/``peek_event``, libyaml's included.
    """

    def __init__(self, stream: _YamlText) -> None:
        super().__init__(stream)
        self.anchors = {}  # Composer's state; CSafeLoader.__init__ does not call Composer's


#: The loader :func:`yaml_rows` uses: libyaml's when PyYAML has it.
DEFAULT_LOADER: type[PureLoader | FastLoader] = FastLoader if yaml.__with_libyaml__ else PureLoader


@dataclass(frozen=True, slots=True)
class _Damage:
    start: int  # character offsets of the damaged line in the text given to PyYAML
    end: int
    problem: BadRow
    #: True when the line's content was dropped (too long): report it even outside any row.
    dropped: bool


class _YamlText:
    """A text stream for PyYAML built from physical lines, mapping offsets back to line numbers.

    PyYAML's own line numbers count U+2028, U+0085 and lone CRs as line breaks too; we report
    physical lines, so an item's line comes from its character offset instead. Unreadable lines are
    replaced (too long: an empty line; bad UTF-8 or characters YAML forbids: U+FFFD) so the rest
    of the file still parses, and the damage is noted so the row holding it gets the error.
    """

    def __init__(self, lines: Lines) -> None:
        self.lines = lines
        self._lines = iter(lines)
        self._offset = 0
        self._starts: list[int] = []  # offset of each remembered line; line numbers are consecutive
        self._first = 1
        self.damage: list[_Damage] = []

    def read(self, size: int = -1) -> str:
        try:
            number, body = next(self._lines)
        except StopIteration:
            return ""
        if not self._starts:
            self._first = number
        self._starts.append(self._offset)
        dropped = body is None
        problem: BadRow | None = None
        if body is None:
            problem, text = too_long(number), ""
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem, text = not_utf8(number, exc), body.decode("utf-8", "replace")
            if bad := _NOT_PRINTABLE.search(text):
                problem = problem or BadRow(
                    number,
                    f"row contains the control character U+{ord(bad.group()):04X}, which YAML does not allow",
                    "remove it, or write it as an escape in a double-quoted string",
                )
                text = _NOT_PRINTABLE.sub("\ufffd", text)
        text += "\n"
        if problem is not None:
            self.damage.append(_Damage(self._offset, self._offset + len(text), problem, dropped))
        self._offset += len(text)
        return text

    def read_so_far(self) -> int:
        """How many characters have been handed to PyYAML."""
        return self._offset

    def line_at(self, index: int) -> int:
        """The physical line holding character ``index``."""
        return self._first + max(bisect_right(self._starts, index) - 1, 0)

    def forget_before(self, index: int) -> None:
        """Drop what is known about lines before the one holding ``index`` (keeps memory flat)."""
        drop = bisect_right(self._starts, index) - 1
        if drop > 4096:
            del self._starts[:drop]
            self._first += drop

    def take_damage(self, start: int, end: int) -> tuple[list[_Damage], list[_Damage]]:
        """Damage before ``start`` (now settled) and damage within ``[start, end)``, removed."""
        before = [d for d in self.damage if d.end <= start]
        inside = [d for d in self.damage if d.end > start and d.start < end]
        if before or inside:
            self.damage = [d for d in self.damage if d.start >= end]
        return before, inside


def _get_event(loader: PureLoader | FastLoader) -> yaml.Event:
    return _event(loader.get_event())  # type: ignore[no-untyped-call, unused-ignore]  # stubs


def _peek_event(loader: PureLoader | FastLoader) -> yaml.Event:
    return _event(loader.peek_event())  # type: ignore[no-untyped-call, unused-ignore]  # stubs


def _event(event: object) -> yaml.Event:
    if not isinstance(event, yaml.Event):  # only past the end of the stream, which we never read
        raise yaml.YAMLError("unexpected end of the YAML stream")
    return event


def _index(mark: object) -> int:
    """A mark's character offset (the stubs allow an event without marks; PyYAML's have them)."""
    index = getattr(mark, "index", 0)
    return index if isinstance(index, int) else 0


def _yaml_problem(exc: yaml.YAMLError) -> tuple[str, int | None]:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        return problem, (mark.index if mark is not None else None)
    return str(exc), None


def yaml_rows(
    lines: Lines,
    path: str,
    loader_class: type[PureLoader | FastLoader] = DEFAULT_LOADER,
) -> Iterator[Row]:
    """Rows of a ``.yaml`` manifest: the items of its top-level list, composed one at a time.

    PyYAML's event API reads the list's start; then each item is composed (``compose_node``) and
    constructed on its own, so memory holds one row, not the file. A syntax error ends the file:
    PyYAML cannot resume after one, so it is reported on its line and the rows after it are not read.

    If the file has grown past what is read (:attr:`Lines.more`), its last item may still be
    being written (a YAML item goes on over the lines that follow it): that item, or a syntax
    error at the end, is :class:`~batcher.manifest_formats.Cut`, left for the next run.
    """
    text = _YamlText(lines)
    loader = loader_class(text)
    try:
        try:
            _get_event(loader)  # StreamStart
            if loader.check_event(yaml.StreamEndEvent):
                return
            _get_event(loader)  # DocumentStart
            if not loader.check_event(yaml.SequenceStartEvent):
                event = _peek_event(loader)
                if isinstance(event, yaml.ScalarEvent) and event.value in ("", "~", "null"):
                    return
                raise ManifestError(
                    f"line {text.line_at(_index(event.start_mark))}: must be a list of rows",
                    path=path,
                    fix="start each row with '- ', e.g. '- input_image: https://...'",
                )
            _get_event(loader)
        except yaml.YAMLError as exc:
            problem, index = _yaml_problem(exc)
            where = f"line {text.line_at(index)}: " if index is not None else ""
            raise ManifestError(
                f"{where}YAML syntax error: {problem}", path=path, fix="fix the YAML there and run again"
            ) from exc
        yield from _yaml_items(loader, text)
    finally:
        loader.dispose()


def _yaml_items(loader: PureLoader | FastLoader, text: _YamlText) -> Iterator[Row]:
    while True:
        line = 0  # the item's line, once it has begun
        try:
            if loader.check_event(yaml.SequenceEndEvent):
                break
            event = _peek_event(loader)
            line = text.line_at(_index(event.start_mark))
            node = loader.compose_node(None, None)  # type: ignore[arg-type]  # index: unused
            # The last item read may go on in what the file holds now (the check reads to the
            # end of the list, and so learns whether the file grew).
            cut = loader.check_event(yaml.SequenceEndEvent) and text.lines.more
        except (yaml.YAMLError, RecursionError) as exc:
            if text.lines.more:  # a syntax error where the reading stopped: a row half written
                index = _yaml_problem(exc)[1] if isinstance(exc, yaml.YAMLError) else None
                line = line or text.line_at(index if index is not None else text.read_so_far())
                yield from (d.problem for d in text.damage if d.dropped and d.problem.line < line)
                yield Cut(line)
                return
            yield from _fatal(exc, text)
            return
        assert node is not None  # compose_node returns None only at the end of the stream
        if cut:
            yield Cut(line)
            return
        # An alias item (``- *x``) returns the anchored node: its line is the alias's, not the node's.
        start = _index(event.start_mark)
        end = start if isinstance(event, yaml.AliasEvent) else _content_end(node)
        end = max(end, _index(event.end_mark))
        before, inside = text.take_damage(start, end)
        yield from (d.problem for d in before if d.dropped)
        text.forget_before(start)
        if inside:
            first = inside[0].problem
            where = f" on line {first.line}" if first.line != line else ""
            yield BadRow(line, f"{first.message}{where}", first.fix, first.field)
            continue
        if end - start > MAX_ROW_BYTES:
            yield too_long(line)
            continue
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            _reset_constructor(loader)
            field = exc.key if isinstance(exc, _DuplicateYamlKey) else ""
            message = "appears twice in one mapping" if field else f"YAML: {_yaml_problem(exc)[0]}"
            yield BadRow(line, message, "keep one of them" if field else "quote the value", field)
            continue
        except RecursionError:
            _reset_constructor(loader)
            yield BadRow(line, "YAML: nested too deeply", "write each row as a flat mapping")
            continue
        yield RawRow(line, _raw_int_id(node, data))
    try:
        _get_event(loader)  # SequenceEnd
        _get_event(loader)  # DocumentEnd
        if not loader.check_event(yaml.StreamEndEvent):
            event = _peek_event(loader)
            yield BadRow(
                text.line_at(_index(event.start_mark)),
                "a second YAML document begins here; it is not read",
                "put every row in one list, without '---' between them",
            )
    except yaml.YAMLError as exc:
        yield from _fatal(exc, text)
        return
    yield from (d.problem for d in text.damage if d.dropped)


def _content_end(node: Node) -> int:
    """Where a node's content ends. A block collection's own end mark is the next token (the next
    item's ``-``), which would lend it the blank lines, comments and dropped lines after it."""
    while isinstance(node, CollectionNode) and node.value and not node.flow_style:
        last = node.value[-1]
        node = last[1] if isinstance(last, tuple) else last
    return _index(node.end_mark)


def _fatal(exc: BaseException, text: _YamlText) -> Iterator[Row]:
    if isinstance(exc, yaml.YAMLError):
        problem, index = _yaml_problem(exc)
    else:
        problem, index = "nested too deeply", None
    # Without a mark (a RecursionError), the last line read is the best place we know.
    line = text.line_at(index if index is not None else text.read_so_far())
    yield from (d.problem for d in text.damage if d.dropped and d.problem.line < line)
    yield BadRow(
        line,
        f"YAML syntax error: {problem}; the rows after it were not read",
        "fix the YAML here and run again",
    )


def _reset_constructor(loader: PureLoader | FastLoader) -> None:
    loader.constructed_objects = {}
    loader.recursive_objects = {}
    loader.state_generators = []
    loader.deep_construct = False


def _raw_int_id(node: Node, data: object) -> object:
    """Keep an id written as a bare number as written: ``id: 00123`` is "00123", not 83 (octal)."""
    if isinstance(node, MappingNode) and isinstance(data, dict) and isinstance(data.get("id"), int):
        for key_node, value_node in node.value:
            if key_node.value == "id" and isinstance(value_node, ScalarNode) and value_node.tag == _INT_TAG:
                data["id"] = value_node.value
    return data
