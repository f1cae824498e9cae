"""Property tests: a row reads the same in every format, and every row is accounted for on its line.

Rows are generated as flat dicts, then written as JSON Lines, CSV and YAML with a byte order mark
or not, CRLF or LF line ends, blank lines (and YAML comments) between rows, and text with commas,
quotes, line breaks and any Unicode. Each format must give, row for row, the same job (id,
workflow, inputs) or the same error, on the physical line where the writer put the row.
"""

from __future__ import annotations

import csv
import io
import json
import random
import string
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from batcher.errors import ManifestError, RowError
from batcher.manifest import JobSpec, read_manifest
from batcher.workflows import WorkflowRegistry, load_workflows

REGISTRY: WorkflowRegistry = load_workflows()
SKETCH_ID = "66cec9a38aeef98f887211f1-v1"
CSV_COLUMNS = ["id", "workflow", "input_image", "title", "description"]
BAD = "QQBADQQ"  # replaced by bytes that are not UTF-8 after the row is written

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text but lone surrogates (not encodable) and CR: a CR inside a quoted CSV cell is a line
# end there and is read back as LF, by design (CRLF files), so it cannot round-trip.
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r"), max_size=30)
NONBLANK = TEXT.filter(lambda t: bool(t.strip()))
URLS = st.builds(
    lambda path: f"https://example.com/{path}.png",
    st.text(string.ascii_letters + string.digits + "-_./%~", max_size=20),
)
IDS = st.one_of(
    st.none(),
    st.integers(min_value=0, max_value=10**12),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,20}", fullmatch=True),
)


@dataclass(frozen=True)
class Spec:
    """One generated row: its fields (flat), how JSON/YAML nest them, and whether it must fail."""

    fields: dict[str, Any]
    nested: bool
    invalid: bool
    bad_bytes: bool = False


@st.composite
def specs(draw: st.DrawFn) -> Spec:
    fields: dict[str, Any] = {}
    row_id = draw(IDS)
    if row_id is not None:
        fields["id"] = row_id
    kind = draw(st.sampled_from(["sketch", "blog"]))
    names = [None, "sketch", SKETCH_ID] if kind == "sketch" else [None, "blog-image"]
    workflow = draw(st.sampled_from(names))
    problem = draw(st.sampled_from([None, None, None, "workflow", "value", "bytes"]))
    if workflow is not None:
        fields["workflow"] = "no-such-workflow" if problem == "workflow" else workflow
    elif problem == "workflow":
        fields["workflow"] = "no-such-workflow"
    if kind == "sketch":
        url = draw(URLS)
        fields["input_image"] = url.replace("https", "ftp") if problem == "value" else url
        if problem == "bytes":
            fields["input_image"] = url + BAD
    else:
        # A row must keep one non-blank cell, or CSV rightly reads it as a blank line.
        fields["title"] = "  " if problem == "value" else draw(NONBLANK)
        description = draw(st.one_of(st.none(), TEXT))
        if problem == "value" and not (description or "").strip():
            description = "about it"
        if description is not None:
            fields["description"] = description
        if problem == "bytes":
            fields["title"] += BAD
    return Spec(fields, nested=draw(st.booleans()), invalid=problem is not None, bad_bytes=problem == "bytes")


@dataclass(frozen=True)
class Layout:
    """How a file is written: byte order mark, line end, and blank lines before each row."""

    bom: bool
    crlf: bool
    gaps: list[int]


def layouts(count: int) -> st.SearchStrategy[Layout]:
    return st.builds(
        Layout, st.booleans(), st.booleans(), st.lists(st.integers(0, 2), min_size=count, max_size=count)
    )


def _shaped(spec: Spec) -> dict[str, Any]:
    if not spec.nested:
        return dict(spec.fields)
    row = {k: v for k, v in spec.fields.items() if k in ("id", "workflow")}
    row["input"] = {k: v for k, v in spec.fields.items() if k not in ("id", "workflow")}
    return row


def write_jsonl(specs: list[Spec], layout: Layout) -> tuple[str, list[int]]:
    end = "\r\n" if layout.crlf else "\n"
    out, lines, line = [], [], 1
    for spec, gap in zip(specs, layout.gaps, strict=True):
        out.append(end * gap)
        line += gap
        lines.append(line)
        out.append(json.dumps(_shaped(spec), ensure_ascii=gap == 1) + end)
        line += 1
    return "".join(out), lines


def write_csv(specs: list[Spec], layout: Layout) -> tuple[str, list[int]]:
    end = "\r\n" if layout.crlf else "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=end)
    writer.writerow(CSV_COLUMNS)
    lines, line = [], 2
    for spec, gap in zip(specs, layout.gaps, strict=True):
        buffer.write(end * gap)
        line += gap
        lines.append(line)
        before = buffer.tell()
        writer.writerow(["" if spec.fields.get(c) is None else str(spec.fields[c]) for c in CSV_COLUMNS])
        line += buffer.getvalue()[before:].count("\n")
    return buffer.getvalue(), lines


def write_yaml(specs: list[Spec], layout: Layout) -> tuple[str, list[int]]:
    out, lines, line = ["# generated\n"], [], 2
    for spec, gap in zip(specs, layout.gaps, strict=True):
        out.append("\n" * gap if gap != 1 else "# next row\n")
        line += gap
        lines.append(line)
        # PyYAML's emitter writes NEL, LS and PS raw when allowed Unicode, and YAML reads them back
        # as line breaks (YAML 1.1): an emitter round-trip bug, so escape them.
        raw_ok = not any(c in str(v) for v in spec.fields.values() for c in "\x85\u2028\u2029")
        item = yaml.safe_dump([_shaped(spec)], allow_unicode=gap == 2 and raw_ok, default_flow_style=False)
        out.append(item)
        line += item.count("\n")
    text = "".join(out)
    return (text.replace("\n", "\r\n") if layout.crlf else text), lines


def encode(text: str, layout: Layout) -> bytes:
    data = text.encode("utf-8").replace(BAD.encode(), b"\xff\xfe")
    return (b"\xef\xbb\xbf" if layout.bom else b"") + data


def read_file(name: str, data: bytes) -> list[JobSpec | RowError]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        return list(read_manifest(path, REGISTRY))


def outcome(item: JobSpec | RowError) -> tuple[Any, ...]:
    """What a row came to, without where it was (the path and line) or format-specific details."""
    if isinstance(item, JobSpec):
        return ("job", item.job_id, item.workflow.workflow_id, item.inputs)
    if "not valid UTF-8" in item.reason:
        return ("error", "not UTF-8")
    return ("error", item.field, item.reason.split(" line ")[0])


@SETTINGS
@given(
    st.lists(specs(), min_size=1, max_size=8).flatmap(
        lambda rows: st.tuples(st.just(rows), layouts(len(rows)))
    )
)
def test_every_format_reads_a_row_the_same_on_its_line(case: tuple[list[Spec], Layout]) -> None:
    """JSONL, CSV and YAML give the same job or error for each row, each on the line it was written."""
    rows, layout = case
    results = {}
    for name, writer in (("m.jsonl", write_jsonl), ("m.csv", write_csv), ("m.yaml", write_yaml)):
        text, lines = writer(rows, layout)
        items = read_file(name, encode(text, layout))
        assert [item.line for item in items] == lines, name
        results[name] = [outcome(item) for item in items]
    assert results["m.csv"] == results["m.jsonl"]
    assert results["m.yaml"] == results["m.jsonl"]
    for spec, item in zip(rows, results["m.jsonl"], strict=True):
        if spec.invalid:
            assert item[0] == "error"
        elif item[0] == "error":  # a valid row fails only as a repeat of an earlier one
            assert item[2].startswith(("same workflow and inputs as", "'")), item


@SETTINGS
@given(st.lists(URLS, min_size=1, max_size=10), st.booleans(), st.booleans())
def test_a_txt_line_is_the_same_job_as_its_jsonl_row(urls: list[str], crlf: bool, bom: bool) -> None:
    """One URL a line and one JSON object a line give the same ids, lines and outcomes."""
    layout = Layout(bom, crlf, [0] * len(urls))
    end = "\r\n" if crlf else "\n"
    txt = encode("".join(f"  {url}{end}" for url in urls), layout)
    jsonl, _ = write_jsonl([Spec({"input_image": url}, nested=False, invalid=False) for url in urls], layout)
    from_txt = read_file("m.txt", txt)
    from_jsonl = read_file("m.jsonl", encode(jsonl, layout))
    assert [(i.line, outcome(i)) for i in from_txt] == [(i.line, outcome(i)) for i in from_jsonl]


@SETTINGS
@given(st.lists(specs(), min_size=2, max_size=8), st.randoms())
def test_ids_do_not_depend_on_order_or_neighbours(rows: list[Spec], rnd: random.Random) -> None:
    """Shuffling rows and adding a new one anywhere keeps each valid row's job id."""
    distinct = list({json.dumps(s.fields, sort_keys=True): s for s in rows if not s.invalid}.values())
    distinct = [s for s in distinct if "id" not in s.fields]
    assume(distinct)
    shuffled = distinct[:]
    rnd.shuffle(shuffled)
    shuffled.insert(rnd.randrange(len(shuffled) + 1), Spec({"title": "a row added later"}, False, False))

    def ids(order: list[Spec]) -> dict[str, str]:
        text, _ = write_jsonl(order, Layout(False, False, [0] * len(order)))
        items = read_file("m.jsonl", text.encode())
        return {
            json.dumps(spec.fields, sort_keys=True): item.job_id
            for spec, item in zip(order, items, strict=True)
            if isinstance(item, JobSpec)
        }

    first, second = ids(distinct), ids(shuffled)
    assert {k: v for k, v in second.items() if k in first} == {k: v for k, v in first.items() if k in second}


LINES = st.lists(st.binary(max_size=40).filter(lambda b: b"\n" not in b), min_size=1, max_size=12)


def _blank(line: bytes) -> bool:
    # A BOM opens the file, or a file appended with its own (cat export.jsonl >> m.jsonl).
    line = line.removeprefix(b"\xef\xbb\xbf")
    line = line.removesuffix(b"\r")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not text.strip()


@SETTINGS
@given(LINES)
def test_arbitrary_bytes_in_jsonl_give_one_item_per_nonblank_line(lines: list[bytes]) -> None:
    """No byte sequence crashes the reader; each non-blank line is one job or one error, on its line."""
    if lines[0].startswith((b"\xff\xfe", b"\xfe\xff")):
        lines[0] = b"x" + lines[0]
    try:
        items = read_file("m.jsonl", b"\n".join(lines))
    except ManifestError as exc:
        assert "has no rows" in str(exc) or "is empty" in str(exc)
        return
    expected = [n for n, line in enumerate(lines, start=1) if not _blank(line)]
    assert [item.line for item in items] == expected


@SETTINGS
@given(LINES, st.sampled_from(["m.csv", "m.yaml", "m.txt"]))
def test_arbitrary_bytes_never_crash_any_reader(lines: list[bytes], name: str) -> None:
    """Whatever the bytes, a reader yields items on real, increasing lines, or raises ManifestError."""
    try:
        items = read_file(name, b"\n".join(lines))
    except ManifestError:
        return
    numbers = [item.line for item in items]
    assert numbers == sorted(numbers)
    assert all(1 <= n <= len(lines) for n in numbers)
