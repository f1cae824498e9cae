"""Manifest readers: every format, every bad input with its exact message, and stable job ids."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from batcher.errors import ManifestError, RowError
from batcher.manifest import (
    JobSpec,
    Unfinished,
    check_manifest_paths,
    job_id_for,
    read_manifest,
    read_manifests,
)
from batcher.manifest_formats import MAX_ROW_BYTES
from batcher.manifest_yaml import FastLoader, PureLoader, yaml_rows
from batcher.seams import survey
from batcher.workflows import WorkflowRegistry

REPO = Path(__file__).resolve().parent.parent
URL = "https://example.com/a.png"
URL2 = "https://example.com/b.png"
SKETCH_ID = "66cec9a38aeef98f887211f1-v1"
RAW_ID = "0123456789abcdef01234567-v1"  # a well-formed Segmind id with no definition in jobs/
GOOD = json.dumps({"id": "good", "workflow": "sketch", "input": {"input_image": URL}})
WORKFLOWS = "use one of: blog-image, sketch, or a Segmind workflow id like 66cec9a38aeef98f887211f1-v1"
TOO_LONG = (
    f"row is over the {MAX_ROW_BYTES}-byte limit "
    "(keep each row under 1 MiB; put large images in files or at URLs)"
)


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def read(path: Path, registry: WorkflowRegistry) -> list[JobSpec | RowError | Unfinished]:
    return list(read_manifest(path, registry))


def messages(items: Sequence[JobSpec | RowError | Unfinished]) -> list[str]:
    return [str(item) for item in items if isinstance(item, RowError)]


def jobs(items: Sequence[JobSpec | RowError | Unfinished]) -> list[JobSpec]:
    return [item for item in items if isinstance(item, JobSpec)]


# --- bad rows, one table per format ----------------------------------------------------------------

JSONL_ROW_ERRORS = [
    ('{"input_image": ', "invalid JSON: Expecting value at column 17 (write one JSON object per line)"),
    ("[1, 2]", 'row must be an object, not list (give an object, e.g. {"input_image": "https://..."})'),
    ("null", 'row must be an object, not null (give an object, e.g. {"input_image": "https://..."})'),
    (
        '{"workflow": "sketchy", "input": {"input_image": "https://example.com/a.png"}}',
        f"workflow: unknown workflow 'sketchy' ({WORKFLOWS})",
    ),
    (
        '{"workflow": "0123-v1", "input": {"input_image": "https://example.com/a.png"}}',
        f"workflow: unknown workflow '0123-v1' ({WORKFLOWS})",
    ),
    (
        '{"workflow": 5, "input_image": "https://example.com/a.png"}',
        "workflow: must be a workflow name, not int (use blog-image, sketch)",
    ),
    (
        '{"workflow": " ", "input_image": "https://example.com/a.png"}',
        "workflow: is empty (use blog-image, sketch, or leave it out to infer it from the inputs)",
    ),
    ('{"workflow": "sketch", "input": {}}', "input_image: is missing or empty (give input_image)"),
    ('{"workflow": "sketch", "input_image": "  "}', "input_image: is missing or empty (give input_image)"),
    ('{"id": "x"}', "input: is empty (give the workflow's inputs, e.g. input_image or title)"),
    ('{"input_image": null}', "input: is empty (give the workflow's inputs, e.g. input_image or title)"),
    (
        f'{{"workflow": "{RAW_ID}", "input": {{}}}}',
        "input: is empty (give the workflow's inputs as an object)",
    ),
    (
        '{"workflow": "sketch", "input": "https://example.com/a.png"}',
        """input: must be an object, not str ({"input_image": "https://..."})""",
    ),
    (
        '{"input": {"input_image": "https://example.com/a.png"}, "note": "x"}',
        "note: is beside 'input'; a row's inputs go inside 'input' (move it into 'input', or remove it)",
    ),
    (
        '{"inputs": {"input_image": "https://example.com/a.png"}}',
        "inputs: is not a field of a row (call it 'input', singular)",
    ),
    (
        '{"workflow": "sketch", "input": {"input_image": "https://example.com/a.png", "strength": 1}}',
        "strength: is not an input of workflow 'sketch' (use one of: input_image)",
    ),
    (
        '{"prompt": "a cat"}',
        "workflow: is not given, and no workflow takes the inputs prompt "
        "(add a workflow field, one of: blog-image, sketch)",
    ),
    (
        '{"description": "no title"}',
        "workflow: is not given, and no workflow takes the inputs description "
        "(add a workflow field, one of: blog-image, sketch)",
    ),
    (
        '{"Blog_title_and_description": "x", "title": "y"}',
        "title: is given together with Blog_title_and_description "
        "(give either Blog_title_and_description or title + description, not both)",
    ),
    ('{"title": "   "}', "title: is missing or empty (give a non-empty title)"),
    ('{"title": true}', "title: must be text, not bool (give a string)"),
    (
        '{"workflow": "blog-image", "Blog_title_and_description": 5}',
        "Blog_title_and_description: must be text, not int (give a string)",
    ),
    (
        json.dumps({"Blog_title_and_description": "x" * 8001}),
        "Blog_title_and_description: is 8001 characters long (keep it to 8000 characters)",
    ),
    ('{"input_image": 5}', "input_image: must be a URL, not int (give an http(s) URL)"),
    (
        '{"input_image": "ftp://example.com/a.png"}',
        "input_image: URL scheme 'ftp:' is not allowed (use http://, https://, data: or a local file path)",
    ),
    (
        '{"input_image": "file:///etc/hosts"}',
        "input_image: URL scheme 'file:' is not allowed (use http://, https://, data: or a local file path)",
    ),
    (
        '{"input_image": "http:///a.png"}',
        "input_image: URL has no host: 'http:///a.png' (give a full http(s) URL)",
    ),
    (
        '{"input_image": "http://[::1/a.png"}',
        "input_image: is not a valid URL: Invalid IPv6 URL (give a full http(s) URL)",
    ),
    (
        '{"input_image": "data:nonsense"}',
        "input_image: is not a valid data: URI (use data:<mime>;base64,<data>)",
    ),
    (
        '{"input_image": "missing.png"}',
        "input_image: local file not found: missing.png (give an existing image file or a URL)",
    ),
    (
        '{"input_image": "a\\u001b[31m.png"}',  # shown escaped, not sent to the terminal
        "input_image: local file not found: a\\x1b[31m.png (give an existing image file or a URL)",
    ),
    (
        '{"input_image": "a\\u0000.png"}',
        "input_image: local file cannot be read: embedded null byte (give an existing image file or a URL)",
    ),
    (  # a C1 control (U+009B is a terminal's CSI), as ids and the status text define them
        '{"input_image": "https://example.com/a\\u009b.png"}',
        "input_image: URL contains the control character U+009B at character 22"
        " (give one URL, on one line; percent-encode anything else (%0A))",
    ),
    (  # what a CSV quote left open makes of two rows
        '{"input_image": "https://example.com/a.png\\n2,https://example.com/b.png"}',
        "input_image: URL contains a line break at character 26"
        " (give one URL, on one line; percent-encode anything else (%0A))",
    ),
    (
        json.dumps({"input_image": "a" * 300 + ".png"}),
        "input_image: local file cannot be read: File name too long (give an existing image file or a URL)",
    ),
    (
        '{"id": true, "input_image": "https://example.com/a.png"}',
        'id: must be text or a whole number, not bool (e.g. "post-17" or 17)',
    ),
    (
        '{"id": 1.5, "input_image": "https://example.com/a.png"}',
        'id: must be text or a whole number, not float (e.g. "post-17" or 17)',
    ),
    (
        '{"id": " ", "input_image": "https://example.com/a.png"}',
        "id: is empty (give a non-empty id, or leave the id out)",
    ),
    (
        json.dumps({"id": "x" * 129, "input_image": URL}),
        "id: is 129 characters long (keep ids to 128 characters)",
    ),
    (
        '{"id": "a\\tb", "input_image": "https://example.com/a.png"}',
        "id: contains the control character U+0009 (use printable characters)",
    ),
    (
        '{"id": "good", "input_image": "https://example.com/b.png"}',
        "id: 'good' is also the id of line 1 (give every row its own id)",
    ),
    (
        '{"input_image": "https://example.com/a.png", "input_image": "https://example.com/b.png"}',
        "input_image: appears twice in one object (keep one of them)",
    ),
    (
        f'{{"workflow": "{RAW_ID}", "input": {{"strength": NaN}}}}',
        "strength: must be a finite number, not nan (give a number)",
    ),
    (
        f'{{"workflow": "{RAW_ID}", "input": {{"strength": 1e999}}}}',
        "strength: must be a finite number, not inf (give a number)",
    ),
    ('{"title": "\\ud800"}', "title: contains an unpaired UTF-16 surrogate (give valid text)"),
    (  # inside a mapping: its keys and values are checked like the input itself
        f'{{"workflow": "{RAW_ID}", "input": {{"options": {{"\\ud800": 1}}}}}}',
        "options: contains an unpaired UTF-16 surrogate (give valid text)",
    ),
    (
        '{"id": "a\\ud800", "input_image": "https://example.com/a.png"}',
        "id: contains an unpaired UTF-16 surrogate (give valid text)",
    ),
    (  # names in another case: said so, not "add a workflow field"
        '{"ID": "p1", "Title": "Bread"}',
        "workflow: is not given, and no workflow takes the inputs ID, Title "
        "(field names are case-sensitive: write 'ID' as 'id', 'Title' as 'title')",
    ),
    (
        '{"workflow": "sketch", "Input_Image": "https://example.com/a.png"}',
        "Input_Image: is not an input of workflow 'sketch'"
        " (field names are case-sensitive: call it 'input_image')",
    ),
    ("[" * 100_000, "invalid JSON: nested too deeply (write one flat JSON object per line)"),
    ('{"id": ' + "1" * 5000 + "}", "invalid JSON: a number has too many digits (write it as a string)"),
]


@pytest.mark.parametrize(("row", "expected"), JSONL_ROW_ERRORS)
def test_jsonl_bad_row_gets_its_exact_message_and_the_rest_runs(
    tmp_path: Path, registry: WorkflowRegistry, row: str, expected: str
) -> None:
    """Each bad JSONL row is one RowError on its line; the rows around it still become jobs."""
    after = json.dumps({"id": "after", "input_image": URL2})
    path = write(tmp_path, "m.jsonl", f"{GOOD}\n{row}\n{after}\n")
    items = read(path, registry)
    assert messages(items) == [f"{path}:2: {expected}"]
    assert [job.job_id for job in jobs(items)] == ["good", "after"]


BYTE_ROW_ERRORS = [
    (b'{"input_image": "http://x.com/\xff.png"}', "row is not valid UTF-8: byte 0xff at column 31"),
    (b'{"title": "caf\xe9"}', "row is not valid UTF-8: byte 0xe9 at column 15"),
]


@pytest.mark.parametrize(("row", "expected"), BYTE_ROW_ERRORS)
def test_non_utf8_bytes_spoil_only_their_row(
    tmp_path: Path, registry: WorkflowRegistry, row: bytes, expected: str
) -> None:
    """Latin-1 or stray bytes make that one row an error, not the whole file."""
    path = write(
        tmp_path, "m.jsonl", GOOD.encode() + b"\n" + row + b"\n" + GOOD.replace("good", "g2").encode()
    )
    items = read(path, registry)
    assert messages(items) == [f"{path}:2: {expected} (save the manifest as UTF-8)"]
    assert len(jobs(items)) == 2


def test_a_huge_row_is_skipped_without_losing_the_rows_after_it(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 3 MiB line is refused on its own line; the line after it is read normally."""
    huge = json.dumps({"input_image": "data:image/png;base64," + "A" * (3 * MAX_ROW_BYTES)})
    path = write(tmp_path, "m.jsonl", f"{GOOD}\n{huge}\r\n\n{json.dumps({'input_image': URL2})}\n")
    items = read(path, registry)
    assert messages(items) == [f"{path}:2: {TOO_LONG}"]
    assert [job.line for job in jobs(items)] == [1, 4]


def test_a_row_just_under_the_cap_is_read(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """The cap is on the row: a data: URI row of exactly MAX_ROW_BYTES (plus CRLF) is fine."""
    head = '{"input_image": "data:image/png;base64,'
    row = head + "A" * (MAX_ROW_BYTES - len(head) - 2) + '"}'
    assert len(row) == MAX_ROW_BYTES
    path = write(tmp_path, "m.jsonl", row + "\r\n")
    assert messages(read(path, registry)) == []


CSV_ROW_ERRORS = [
    (
        "1,sketch,https://example.com/a.png,extra",
        'has 4 cells but the header has 3 columns (put a cell that contains commas in double quotes: "a, b")',
    ),
    ("2,sketchy,https://example.com/a.png", f"workflow: unknown workflow 'sketchy' ({WORKFLOWS})"),
    (
        "3,,ftp://example.com/a.png",
        "input_image: URL scheme 'ftp:' is not allowed (use http://, https://, data: or a local file path)",
    ),
    ("4,sketch,", "input_image: is missing or empty (give input_image)"),
    (
        "good,sketch,https://example.com/b.png",
        "id: 'good' is also the id of line 2 (give every row its own id)",
    ),
    (
        "a,b\rc,d",
        "has a carriage return (CR) outside quotes (end lines with LF or CRLF (a file saved with CR"
        " alone is one long line), and put a cell holding a line break in double quotes)",
    ),
    (
        '5,sketch,"' + "x" * 200_000 + '"',
        "a cell is over 131072 characters (keep each row under 1 MiB; put large images in files or at URLs)",
    ),
]


@pytest.mark.parametrize(("row", "expected"), CSV_ROW_ERRORS)
def test_csv_bad_row_gets_its_exact_message_and_the_rest_runs(
    tmp_path: Path, registry: WorkflowRegistry, row: str, expected: str
) -> None:
    """Each bad CSV record is one RowError on its line; the records around it still become jobs."""
    path = write(tmp_path, "m.csv", f"id,workflow,input_image\ngood,sketch,{URL}\n{row}\nafter,,{URL2}\n")
    items = read(path, registry)
    assert messages(items) == [f"{path}:3: {expected}"]
    assert [job.job_id for job in jobs(items)] == ["good", "after"]


def test_csv_error_inside_a_multiline_record_is_reported_where_the_record_starts(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A bad byte on the 3rd physical line of a quoted cell: the error is on the record's first line."""
    content = b'id,title,description\n1,"A title","one\ntwo\nth\xffree"\n2,Next,fine\n'
    path = write(tmp_path, "m.csv", content)
    items = read(path, registry)
    assert messages(items) == [
        f"{path}:2: row is not valid UTF-8: byte 0xff at column 3 on line 4 (save the manifest as UTF-8)"
    ]
    assert [(job.job_id, job.line) for job in jobs(items)] == [("2", 5)]


def test_csv_unclosed_quote_stops_at_the_cell_limit_and_reading_resumes(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A quote left open cannot swallow the file: the cell is refused at csv's 128 KiB cell limit."""
    filler = ("x" * 1000 + "\n") * 200
    path = write(tmp_path, "m.csv", f'id,input_image\n1,"{URL}\n{filler}2,{URL2}\n')
    items = read(path, registry)
    assert messages(items)[0] == (
        f"{path}:2: a cell is over 131072 characters"
        " (keep each row under 1 MiB; put large images in files or at URLs)"
    )
    assert [job.job_id for job in jobs(items)] == ["2"]


def test_csv_quote_left_open_to_the_end_of_the_file_runs_none_of_the_rows_it_swallowed(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Which of the swallowed lines were meant as rows cannot be known: the record is refused whole."""
    path = write(tmp_path, "m.csv", 'id,title\n1,Bread\n2,"Cake\n3,Pie\n4,Tea\n')
    items = read(path, registry)
    assert messages(items) == [
        f"{path}:3: a quote opened in this row is never closed, so lines 3-5 were read as one row"
        ' and none of them was run (close the quote, or double a quote that is part of a cell (""))'
    ]
    assert [job.job_id for job in jobs(items)] == ["1"]
    last = write(tmp_path, "last.csv", 'id,title\n1,Bread\n2,"Cake\n')
    assert messages(read(last, registry)) == [
        f"{last}:3: a quote opened in this row is never closed (close the quote, or double a quote that is"
        ' part of a cell (""))'
    ]
    with pytest.raises(ManifestError, match="line 1: a quote opened in the header is never closed"):
        read(write(tmp_path, "head.csv", '"id,title\n1,Bread\n'), registry)


def test_csv_record_over_the_cap_across_lines_is_refused(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Many quoted cells with line breaks add up: past 1 MiB the record is refused where it starts."""
    cell = '"' + "x" * 100_000 + "\n" + "x" * 20_000 + '"'
    header = ",".join(["input_image"] + [f"c{i}" for i in range(10)])
    path = write(tmp_path, "m.csv", f"{header}\n{URL}," + ",".join([cell] * 10) + f"\n{URL2}\n")
    items = read(path, registry)
    # What follows the cut is read as new records (the quoting state is lost), then all is well.
    assert messages(items)[0] == f"{path}:2: {TOO_LONG}"
    assert [job.line for job in jobs(items)] == [13]


# (name, what the file held as the run started, what its writer added since, the rows read as
# jobs by their line, the line of the row left unfinished)
GROWING = [
    ("m.jsonl", '{"title": "A"}\n{"title": "B"}\n{"title": "Cr', 'umbs"}\n{"title": "D"}\n', [1, 2], 3),
    ("m.txt", f"{URL}\n{URL2}\nhttps://example.com/c", ".png\n", [1, 2], 3),
    ("m.csv", "title\nA\nB\nCr", "umbs\nD\n", [2, 3], 4),
    ("m.csv", 'title,description\nA,a\nB,"one\n', 'two"\nD,d\n', [2], 3),  # in a quoted cell
    ("m.csv", 'title,description\nA,a\nB,"one\ntw', 'o"\n', [2], 3),
    ("m.yaml", "- title: A\n- title: B\n", "  description: b\n- title: C\n", [1], 2),  # items go on
    ("m.yaml", "- title: A\n- title: B\n  descr", "iption: b\n", [1], 2),
    # Grown, but the last row was whole: it ran, and what follows starts a new line.
    ("m.jsonl", '{"title": "A"}\n{"title": "B"}', '\n{"title": "C"}\n', [1, 2], None),
    ("m.csv", "title\nA\nB\n", "C\n", [2, 3], None),
]


@pytest.mark.parametrize(("name", "started", "added", "read_lines", "unfinished"), GROWING)
def test_a_manifest_is_read_as_it_was_when_the_run_started_and_a_row_cut_off_is_left(
    tmp_path: Path,
    registry: WorkflowRegistry,
    name: str,
    started: str,
    added: str,
    read_lines: list[int],
    unfinished: int | None,
) -> None:
    """Read with the survey taken as the run started, a manifest that has grown since gives the
    rows it held then; a row its writer had not finished then (a line with no line break yet,
    a CSV quote still open, a YAML item, which may go on over the lines after it) is
    :class:`Unfinished`, not a job: the next run reads it whole. Without growth, a last line
    with no line break is a row like any other."""
    path = write(tmp_path, name, started)
    found = survey([path], [])
    with path.open("a") as fh:
        fh.write(added)
    items = list(read_manifests([path], registry, survey=found))
    assert messages(items) == []
    assert [j.line for j in jobs(items)] == read_lines
    cut = [item for item in items if isinstance(item, Unfinished)]
    assert [(u.line, u.at, u.name) for u in cut] == (
        [(unfinished, len(started), str(path.resolve()))] if unfinished else []
    )
    # The same file, not grown: its last line is a row (a job, or an invalid row), as ever.
    whole = write(tmp_path, f"whole/{name}", started)
    rows = list(read_manifests([whole], registry, survey=survey([whole], [])))
    assert not any(isinstance(item, Unfinished) for item in rows)
    assert max(item.line for item in rows) >= (unfinished or read_lines[-1])


YAML_ROW_ERRORS = [
    (
        "- https://example.com/a.png\n",
        'row must be an object, not str (give an object, e.g. {"input_image": "https://..."})',
    ),
    ("-\n", 'row must be an object, not null (give an object, e.g. {"input_image": "https://..."})'),
    (
        "- {input_image: https://example.com/b.png, when: 2024-01-01}\n",
        "when: must be text, a number, true/false, a list or an object, not date (quote the value)",
    ),
    ("- title: a\n  title: b\n", "title: appears twice in one mapping (keep one of them)"),
    (
        "- input_image: !foo bar\n",
        "YAML: could not determine a constructor for the tag '!foo' (quote the value)",
    ),
    (
        "- {1: x, input_image: https://example.com/b.png}\n",
        "1: field names must be text (quote the field name)",
    ),
    (  # a workflow without a definition takes any input name, but only as text
        f"- {{workflow: {RAW_ID}, input: {{1: x, prompt: a cat}}}}\n",
        "1: input names must be text (quote the input name)",
    ),
    (  # inside a mapping: its keys and values are checked like the input itself
        f"- {{workflow: {RAW_ID}, input: {{options: {{1: x}}}}}}\n",
        "options: has a non-text key 1 (quote the key)",
    ),
    (
        f"- {{workflow: {RAW_ID}, input: {{options: {{when: 2024-01-01}}}}}}\n",
        "options: must be text, a number, true/false, a list or an object, not date (quote the value)",
    ),
    (
        "- id: good\n  input_image: https://example.com/b.png\n",
        "id: 'good' is also the id of line 1 (give every row its own id)",
    ),
    (  # an alias inside its own anchor would never end; repeats of repeats grow without bound
        "- input_image: &r [*r]\n",
        "input_image: repeats a list or mapping by a YAML alias (or holds itself)"
        " (write the value out in full instead of using *alias)",
    ),
    (
        "- title: &a [x, x]\n  description: [*a, *a]\n",
        "description: repeats a list or mapping by a YAML alias (or holds itself)"
        " (write the value out in full instead of using *alias)",
    ),
    (
        "- title: bell \x07 here\n",
        "row contains the control character U+0007, which YAML does not allow"
        " (remove it, or write it as an escape in a double-quoted string)",
    ),
]


@pytest.mark.parametrize(("item", "expected"), YAML_ROW_ERRORS)
def test_yaml_bad_item_gets_its_exact_message_and_the_rest_runs(
    tmp_path: Path, registry: WorkflowRegistry, item: str, expected: str
) -> None:
    """Each bad YAML item is one RowError on its first line; the items around it still become jobs."""
    first = f"- {{id: good, workflow: sketch, input: {{input_image: '{URL}'}}}}\n"
    content = f"{first}{item}- {{id: after, input_image: '{URL2}'}}\n"
    path = write(tmp_path, "m.yaml", content)
    items = read(path, registry)
    assert messages(items) == [f"{path}:2: {expected}"]
    assert [job.job_id for job in jobs(items)] == ["good", "after"]


def test_yaml_bad_bytes_inside_an_item_are_reported_at_the_item_start(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Non-UTF-8 on an item's 3rd line: that item is the error, reported where it starts."""
    content = b"- id: one\n  workflow: blog-image\n  title: caf\xe9\n- id: two\n  title: fine\n"
    path = write(tmp_path, "m.yaml", content)
    items = read(path, registry)
    assert messages(items) == [
        f"{path}:1: row is not valid UTF-8: byte 0xe9 at column 13 on line 3 (save the manifest as UTF-8)"
    ]
    assert [job.job_id for job in jobs(items)] == ["two"]


def test_yaml_huge_line_is_its_own_error_and_the_list_goes_on(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 2 MiB item line is dropped (never parsed) and reported; the items after it are read."""
    huge = "- input_image: data:image/png;base64," + "A" * (2 * MAX_ROW_BYTES)
    content = f"- id: one\n  input_image: {URL}\n{huge}\n- id: two\n  input_image: {URL2}\n"
    path = write(tmp_path, "m.yaml", content)
    items = read(path, registry)
    assert messages(items) == [f"{path}:3: {TOO_LONG}"]
    assert [(job.job_id, job.line) for job in jobs(items)] == [("one", 1), ("two", 4)]


def test_yaml_syntax_error_after_good_rows_ends_the_file_with_a_row_error(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """PyYAML cannot resume after a syntax error: rows before it run, the error says the rest was not read."""
    content = f"- input_image: {URL}\n- input_image: [unclosed\n- input_image: {URL2}\n"
    path = write(tmp_path, "m.yaml", content)
    items = read(path, registry)
    assert len(jobs(items)) == 1
    [error] = [item for item in items if isinstance(item, RowError)]
    assert error.reason.startswith("YAML syntax error: ")
    assert error.reason.endswith("; the rows after it were not read")
    assert error.fix == "fix the YAML here and run again"
    assert error.line in (3, 4)


def test_yaml_second_document_is_reported(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Rows after a '---' are not silently dropped: the second document is an error on its line."""
    path = write(tmp_path, "m.yaml", f"- input_image: {URL}\n---\n- input_image: {URL2}\n")
    items = read(path, registry)
    assert messages(items) == [
        f"{path}:2: a second YAML document begins here; it is not read"
        " (put every row in one list, without '---' between them)"
    ]


TXT_ROW_ERRORS = [
    (
        "ftp://example.com/a.png",
        "input_image: URL scheme 'ftp:' is not allowed (use http://, https://, data: or a local file path)",
    ),
    ("missing.png", "input_image: local file not found: missing.png (give an existing image file or a URL)"),
    (URL, "same workflow and inputs as line 1 (remove the repeated row, or give each its own id)"),
]


@pytest.mark.parametrize(("line", "expected"), TXT_ROW_ERRORS)
def test_txt_bad_line_gets_its_exact_message(
    tmp_path: Path, registry: WorkflowRegistry, line: str, expected: str
) -> None:
    """A .txt line is one sketch job; a bad one is a RowError on its line."""
    path = write(tmp_path, "m.txt", f"{URL}\n{line}\n{URL2}\n")
    items = read(path, registry)
    assert messages(items) == [f"{path}:2: {expected}"]
    assert len(jobs(items)) == 2


# --- whole-file problems ---------------------------------------------------------------------------

FILE_ERRORS: list[tuple[str, str | bytes, str]] = [
    ("m.json", GOOD, "unknown manifest type '.json' (use .jsonl, .csv, .yaml, .yml or .txt)"),
    ("manifest", GOOD, "has no file extension (use .jsonl, .csv, .yaml, .yml or .txt)"),
    ("m.jsonl", "", "is empty (add at least one row)"),
    ("m.jsonl", "\n  \r\n\n", "has no rows (add at least one row)"),
    ("m.txt", "# only a comment\n\n", "has no image URLs (put one image URL on each line)"),
    ("m.csv", "id,workflow,input_image\r\n", "has no rows (put a header row, then one row per job)"),
    (
        "m.csv",
        "\n\nid,,input_image\n",
        "line 3: column 2 of the header has no name (name every column, e.g. id,workflow,input_image)",
    ),
    ("m.csv", "title,title\n", "line 1: column 'title' appears twice in the header (keep one)"),
    (
        "m.csv",
        f"{URL}\n{URL2}\n",
        "line 1: the first row must be a header naming the columns, but it holds data"
        " (add a header row, e.g. id,workflow,input_image)",
    ),
    (
        "m.csv",
        "id,workflow\n1,sketch\n",
        "line 1: the header names no input columns"
        " (add columns named after the workflow's inputs, e.g. input_image or title)",
    ),
    (  # saved with CR alone (classic Mac): Python's own text, "do you need to open the file in
        # universal-newline mode?", was the message
        "m.csv",
        "id,title\rp1,Bread\r",
        "line 1: header has a carriage return (CR) outside quotes (end lines with LF or CRLF (a file"
        " saved with CR alone is one long line), and put a cell holding a line break in double quotes)",
    ),
    (
        "m.csv",
        b"id,t\xffitle\n",
        "line 1: header row is not valid UTF-8: byte 0xff at column 5 (save the manifest as UTF-8)",
    ),
    ("m.yaml", "# nothing yet\n", "has no rows (add at least one row)"),
    ("m.yaml", "[]\n", "has no rows (add at least one row)"),
    (
        "m.yml",
        "# a comment\njobs:\n  - input_image: x\n",
        "line 2: must be a list of rows (start each row with '- ', e.g. '- input_image: https://...')",
    ),
    (
        "m.jsonl",
        "\ufeff".encode("utf-16-le") + GOOD.encode("utf-16-le"),
        "is UTF-16 encoded (save the manifest as UTF-8)",
    ),
]


@pytest.mark.parametrize(("name", "content", "expected"), FILE_ERRORS)
def test_whole_file_problem_raises_manifest_error_with_exact_message(
    tmp_path: Path, registry: WorkflowRegistry, name: str, content: str | bytes, expected: str
) -> None:
    """A file that cannot be a manifest raises ManifestError on the first next(), before any row."""
    path = write(tmp_path, name, content)
    with pytest.raises(ManifestError) as info:
        next(read_manifest(path, registry))
    assert str(info.value) == f"{path}: {expected}"


def test_missing_manifest_and_folder_are_refused_up_front(tmp_path: Path) -> None:
    """check_manifest_paths refuses a missing file and a folder, naming the fix."""
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ManifestError, match=r"nope\.jsonl: manifest not found \(check the path\)$"):
        check_manifest_paths([missing])
    folder = tmp_path / "dir.jsonl"
    folder.mkdir()
    with pytest.raises(ManifestError) as info:
        check_manifest_paths([folder])
    assert str(info.value) == (
        f"{folder}: is a folder, not a manifest file (give a .jsonl, .csv, .yaml, .yml or .txt file)"
    )


def test_no_manifest_or_the_same_one_twice_is_refused(tmp_path: Path) -> None:
    """An empty list and a path given twice (even spelled differently) are usage errors."""
    with pytest.raises(
        ManifestError, match=r"^manifest: no manifest given \(give at least one manifest file\)$"
    ):
        check_manifest_paths([])
    path = write(tmp_path, "m.jsonl", GOOD)
    with pytest.raises(ManifestError, match=r"is given twice \(give each manifest once\)$"):
        check_manifest_paths([path, tmp_path / "." / "m.jsonl"])


def test_a_bad_second_manifest_stops_the_run_before_the_first_job(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Every file's head is read before any row is yielded, so a run never stops halfway for one."""
    good = write(tmp_path, "a.jsonl", GOOD)
    bad = write(tmp_path, "b.csv", "title,title\n")
    stream = read_manifests([good, bad], registry)
    with pytest.raises(ManifestError, match="appears twice in the header"):
        next(stream)


def test_txt_needs_a_sketch_workflow(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Without a 'sketch' definition a .txt manifest is refused as a whole, with the fix."""
    only_blog = WorkflowRegistry([wf for wf in registry if wf.name != "sketch"])
    path = write(tmp_path, "m.txt", URL)
    with pytest.raises(ManifestError) as info:
        next(read_manifest(path, only_blog))
    assert str(info.value) == (
        f"{path}: a .txt manifest makes sketch jobs, but no workflow named 'sketch' is defined"
        " (add jobs/sketch.yaml, or write the manifest as .jsonl with a workflow field)"
    )


def test_the_extension_is_case_insensitive(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """M.JSONL and M.YML are manifests too."""
    a = write(tmp_path, "A.JSONL", GOOD)
    b = write(tmp_path, "B.YML", f"- input_image: {URL2}\n")
    assert len(jobs(list(read_manifests([a, b], registry)))) == 2


# --- each format reads rows right ---------------------------------------------------------------


def test_jsonl_nested_and_flat_rows(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Inputs under "input" or beside id/workflow; ints become string ids; workflows are inferred."""
    rows = [
        {"id": "n", "workflow": "sketch", "input": {"input_image": URL}},
        {"id": 17, "input_image": URL2},
        {"title": "Bread", "description": "Sourdough"},
        {"workflow": RAW_ID, "input": {"prompt": "a cat", "steps": 20}},
    ]
    path = write(tmp_path, "m.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    items = read(path, registry)
    assert messages(items) == []
    got = [(j.job_id, j.workflow.name, j.inputs, j.line) for j in jobs(items)]
    assert got[:2] == [("n", "sketch", {"input_image": URL}, 1), ("17", "sketch", {"input_image": URL2}, 2)]
    assert got[2][1:] == (
        "blog-image",
        {"Blog_title_and_description": "Title: Bread\n\nDescription: Sourdough\n"},
        3,
    )
    assert got[3][1:] == (RAW_ID, {"prompt": "a cat", "steps": 20}, 4)
    assert jobs(items)[3].workflow.defined is False


def test_jobspec_records_where_the_row_came_from(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """path is the manifest as given, base_dir its (absolute) folder."""
    path = write(tmp_path, "sub/m.jsonl", GOOD)
    [job] = read(path, registry)
    assert isinstance(job, JobSpec)
    assert job.path == str(path)
    assert job.base_dir == path.parent.absolute()


def test_csv_with_bom_crlf_quotes_and_blank_rows(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """BOM, CRLF, quoted commas and line breaks, spreadsheet blank rows: lines are where records start."""
    content = (
        "\ufeffid , workflow,title,description\r\n"
        '1,blog-image,"Bread, butter","one\r\ntwo"\r\n'
        ",,,\r\n"
        "\r\n"
        '2,,"She said ""hi""",\r\n'
    )
    path = write(tmp_path, "m.csv", content)
    items = read(path, registry)
    assert messages(items) == []
    assert [(j.job_id, j.line, j.inputs["Blog_title_and_description"]) for j in jobs(items)] == [
        ("1", 2, "Title: Bread, butter\n\nDescription: one\ntwo\n"),
        ("2", 6, 'Title: She said "hi"\n\nDescription: \n'),
    ]


def test_a_csv_header_in_another_case_is_named_in_each_row_fix(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A header typed in a spreadsheet (``ID,Title``) names no known field: each row's error
    says which names to write in lower case, instead of asking for a workflow field."""
    path = write(tmp_path, "m.csv", "ID,Title,Description\r\np1,Bread,Flour\r\n")
    assert messages(read(path, registry)) == [
        f"{path}:2: workflow: is not given, and no workflow takes the inputs Description, ID, Title (field "
        "names are case-sensitive: write 'Description' as 'description', 'ID' as 'id', 'Title' as 'title')"
    ]


@pytest.mark.parametrize(
    "content",
    [
        # European Excel ("CSV" where the comma is the decimal mark): semicolons, cp1252 aside.
        'id;workflow;title;description\r\n1;blog-image;"Bread; butter";Flour, water\r\n2;;Bikes;\r\n',
        # Excel's own first-line hint naming the delimiter.
        "sep=;\r\nid;workflow;title;description\r\n"
        '1;blog-image;"Bread; butter";Flour, water\r\n2;;Bikes;\r\n',
        # Tab-separated, saved as .csv.
        'id\tworkflow\ttitle\tdescription\n1\tblog-image\t"Bread; butter"\tFlour, water\n2\t\tBikes\t\n',
    ],
    ids=["semicolons", "sep= hint", "tabs"],
)
def test_csv_separated_by_semicolons_or_tabs_is_read_as_its_header_is(
    tmp_path: Path, registry: WorkflowRegistry, content: str
) -> None:
    """A CSV whose header row is separated by semicolons (European Excel) or tabs is split that
    way: the same jobs, with the same ids, as the comma-separated file. Every row of it was
    refused ("has 2 cells but the header has 1 columns", or no workflow takes the input
    "id;workflow;title;description")."""
    comma = write(
        tmp_path,
        "comma.csv",
        'id,workflow,title,description\n1,blog-image,"Bread; butter","Flour, water"\n2,,Bikes,\n',
    )
    path = write(tmp_path, "m.csv", content)
    items = read(path, registry)
    assert messages(items) == []
    expected = [(j.job_id, j.inputs) for j in jobs(read(comma, registry))]
    assert [(j.job_id, j.inputs) for j in jobs(items)] == expected
    assert expected[0] == (
        "1",
        {"Blog_title_and_description": "Title: Bread; butter\n\nDescription: Flour, water\n"},
    )
    assert [j.line for j in jobs(items)] == ([3, 4] if content.startswith("sep=") else [2, 3])


def test_yaml_rows_and_ids_as_written(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Block and flow items; `id: 00123` stays "00123" (not octal 83); an alias item gets its own line."""
    content = (
        "# jobs\n"
        "- id: 00123\n"
        "  workflow: sketch\n"
        "  input:\n"
        f"    input_image: {URL}\n"
        "\n"
        "- &blog {title: Bread}\n"
        "-\n"
        "  id: 7\n"
        f"  input_image: {URL2}\n"
    )
    path = write(tmp_path, "m.yaml", content)
    items = read(path, registry)
    assert messages(items) == []
    assert [(j.job_id, j.line) for j in jobs(items)] == [("00123", 2), (jobs(items)[1].job_id, 7), ("7", 9)]


def test_txt_skips_blanks_and_comments_and_trims(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """A .txt line is an image reference; blank lines and # comments are skipped; spaces trimmed."""
    path = write(tmp_path, "m.txt", f"\ufeff# header\r\n\r\n  {URL}  \r\n#{URL2}\n{URL2}")
    items = read(path, registry)
    assert [(j.line, j.workflow.name, j.inputs) for j in jobs(items)] == [
        (3, "sketch", {"input_image": URL}),
        (5, "sketch", {"input_image": URL2}),
    ]


def test_csv_cells_of_number_and_boolean_inputs_are_typed(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """CSV cells are text: a workflow's integer/number/boolean inputs are read as such."""
    definition = tmp_path / "defs" / "upscale.yaml"
    definition.parent.mkdir()
    definition.write_text(
        "name: upscale\nworkflow_id: 0123456789abcdef01234567-v2\ninputs:\n"
        "  image: {type: image, required: true}\n  scale: {type: integer}\n"
        "  strength: {type: number}\n  face: {type: boolean}\n",
        encoding="utf-8",
    )
    from batcher.workflows import load_workflows

    custom = load_workflows(definition.parent)
    path = write(tmp_path, "m.csv", f"image,scale,strength,face\n{URL},2,0.5,TRUE\n{URL2},two,,\n")
    items = read(path, custom)
    assert [j.inputs for j in jobs(items)] == [{"image": URL, "scale": 2, "strength": 0.5, "face": True}]
    assert messages(items) == [f"{path}:3: scale: must be a integer, not 'two' (give a integer)"]


def test_csv_cells_are_typed_only_for_typed_inputs_and_only_when_they_read_as_their_type(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A text input's cell stays text even when it reads as a number or a boolean ("1984",
    "true"); a number input's "1" is the int 1, as JSON has it, so the row is the same job as its
    JSONL twin; a boolean cell is true or false in any case, and any other word is refused (never
    read as false)."""
    definition = tmp_path / "defs" / "tag.yaml"
    definition.parent.mkdir()
    definition.write_text(
        "name: tag\nworkflow_id: 0123456789abcdef01234567-v3\ninputs:\n"
        "  image: {type: image, required: true}\n  label: {type: text}\n  scale: {type: integer}\n"
        "  strength: {type: number}\n  face: {type: boolean}\n",
        encoding="utf-8",
    )
    from batcher.workflows import load_workflows

    custom = load_workflows(definition.parent)
    third = "https://example.com/c.png"
    path = write(
        tmp_path,
        "m.csv",
        f"image,label,scale,strength,face\n{URL},1984,2,1,false\n{URL2},true,3,0.5,TRUE\n{third},x,4,1,yes\n",
    )
    items = read(path, custom)
    first = {"image": URL, "label": "1984", "scale": 2, "strength": 1, "face": False}
    second = {"image": URL2, "label": "true", "scale": 3, "strength": 0.5, "face": True}
    assert [job.inputs for job in jobs(items)] == [first, second]
    assert [type(value) for value in jobs(items)[0].inputs.values()] == [str, str, int, int, bool]
    assert messages(items) == [f"{path}:4: face: must be true or false, not 'yes' (give a boolean)"]
    twin = write(tmp_path, "m.jsonl", json.dumps({"workflow": "tag", **first}) + "\n")
    assert [job.job_id for job in jobs(read(twin, custom))] == [jobs(items)[0].job_id]


def test_invalid_row_carries_its_own_id_but_a_duplicate_does_not(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """RowError.job_id is the row's own explicit id; a duplicate's id belongs to another row."""
    content = f'{{"id": "x", "input_image": "ftp://a"}}\n{GOOD}\n{{"id": "good", "input_image": "{URL2}"}}\n'
    path = write(tmp_path, "m.jsonl", content)
    errors = [item for item in read(path, registry) if isinstance(item, RowError)]
    assert [(e.line, e.field, e.job_id) for e in errors] == [(1, "input_image", "x"), (3, "id", None)]


# --- ids -------------------------------------------------------------------------------------------


def test_job_id_is_sha256_of_workflow_id_and_canonical_inputs(registry: WorkflowRegistry) -> None:
    """The derived id is pinned: changing it would re-run (and re-pay) every job of every ledger."""
    sketch = registry.get("sketch")
    assert sketch is not None
    inputs = {"input_image": "https://example.com/é.png"}
    canonical = '{"input_image":"https://example.com/é.png"}'
    expected = hashlib.sha256(f"{SKETCH_ID}\n{canonical}".encode()).hexdigest()[:16]
    assert job_id_for(sketch, inputs) == expected


def test_job_id_hashes_the_inputs_with_sorted_keys_whatever_their_order_in_the_row(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The derived id of a row with several inputs is pinned too (sorted keys): a workflow
    without a definition sends its inputs in the row's order, and a CSV export with its columns
    reordered must not make every row a new job, paid for again."""
    canonical = '{"prompt":"a cat","steps":20}'
    expected = hashlib.sha256(f"{RAW_ID}\n{canonical}".encode()).hexdigest()[:16]
    path = write(
        tmp_path,
        "m.jsonl",
        json.dumps({"workflow": RAW_ID, "steps": 20, "prompt": "a cat"})
        + "\n"
        + json.dumps({"workflow": RAW_ID, "prompt": "a cat", "steps": 20})
        + "\n",
    )
    items = read(path, registry)
    assert [job.job_id for job in jobs(items)] == [expected]
    assert messages(items) == [
        f"{path}:2: same workflow and inputs as line 1 (remove the repeated row, or give each its own id)"
    ]


def test_inputs_hash_is_pinned_over_the_workflow_name_and_the_row_fields_as_written(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A row with its own id: the ledger's inputs_hash is SHA-256 of the workflow's name and the
    row's input fields (sorted keys, compact, UTF-8), 16 hex digits. Pinned: another hash would
    make every row of every nightly ledger look edited since its job ran (warned about, exit 1)."""
    row = {"id": "bread-1", "title": "Pain é", "description": "Levain"}
    path = write(tmp_path, "m.jsonl", json.dumps(row, ensure_ascii=False) + "\n")
    [job] = jobs(read(path, registry))
    canonical = '{"description":"Levain","title":"Pain é"}'
    assert job.inputs_hash() == hashlib.sha256(f"blog-image\n{canonical}".encode()).hexdigest()[:16]


def test_a_128_character_id_and_nulls_inside_an_input_are_taken(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The limits are inclusive: an id of 128 characters is the row's own id, and a null inside a
    list or mapping is a value sent as written (only an input that is null itself is left out)."""
    row = {
        "id": "x" * 128,
        "workflow": RAW_ID,
        "input": {"options": {"a": None, "b": [1, None]}, "seed": None},
    }
    path = write(tmp_path, "m.jsonl", json.dumps(row) + "\n")
    items = read(path, registry)
    assert messages(items) == []
    assert [(job.job_id, job.inputs) for job in jobs(items)] == [
        ("x" * 128, {"options": {"a": None, "b": [1, None]}})
    ]


def test_the_same_row_has_the_same_id_in_every_format(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """A .txt line, a JSONL row (nested, flat, by workflow id), a CSV row and a YAML item: one job id."""
    files = [
        write(tmp_path, "a.txt", f"{URL}\n"),
        write(tmp_path, "b.jsonl", json.dumps({"workflow": "sketch", "input": {"input_image": URL}})),
        write(tmp_path, "c.jsonl", json.dumps({"input_image": f"  {URL} "})),
        write(tmp_path, "d.jsonl", json.dumps({"workflow": SKETCH_ID, "input_image": URL})),
        write(tmp_path, "e.csv", f"workflow,input_image\r\nsketch,{URL}\r\n"),
        write(tmp_path, "f.yaml", f"- input_image: '{URL}'\n"),
    ]
    ids = {job.job_id for path in files for job in jobs(read(path, registry))}
    assert len(ids) == 1


def test_composed_and_direct_blog_inputs_are_the_same_job(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """title + description and the provider's field they compose to send the same body: same id."""
    direct = {"Blog_title_and_description": "Title: Bread\n\nDescription: Sourdough\n"}
    path = write(
        tmp_path,
        "m.jsonl",
        json.dumps({"description": "Sourdough", "title": " Bread "}) + "\n" + json.dumps(direct),
    )
    items = read(path, registry)
    assert messages(items) == [
        f"{path}:2: same workflow and inputs as line 1 (remove the repeated row, or give each its own id)"
    ]


def test_ids_do_not_depend_on_row_position(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Rows appended (or inserted) between nightly runs keep the ids the old rows had."""
    rows = [json.dumps({"input_image": f"https://example.com/{i}.png"}) for i in range(5)]
    before = write(tmp_path, "before.jsonl", "\n".join(rows))
    grown = [json.dumps({"title": "new first"}), *rows, json.dumps({"input_image": URL2})]
    after = write(tmp_path, "after.jsonl", "\n".join(grown))
    old = {j.inputs["input_image"]: j.job_id for j in jobs(read(before, registry))}
    new = {j.inputs.get("input_image"): j.job_id for j in jobs(read(after, registry))}
    assert all(new[url] == job_id for url, job_id in old.items())


def test_ids_are_unique_across_manifests(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """A later manifest repeating a job or an id names the first file and line (also when that is
    not the first manifest)."""
    a = write(tmp_path, "a.jsonl", f"{GOOD}\n{json.dumps({'input_image': URL2})}\n")
    b = write(tmp_path, "b.csv", f"id,input_image\ngood,https://example.com/c.png\n,{URL2}\nmid,{URL}\n")
    c = write(tmp_path, "c.jsonl", json.dumps({"id": "mid", "input_image": URL2}) + "\n")
    assert messages(list(read_manifests([a, b, c], registry))) == [
        f"{b}:2: id: 'good' is also the id of {a}:1 (give every row its own id)",
        f"{b}:3: same workflow and inputs as {a}:2 (remove the repeated row, or give each its own id)",
        f"{c}:1: id: 'mid' is also the id of {b}:4 (give every row its own id)",
    ]


def test_duplicates_are_found_among_thousands_of_rows(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """The compact id table keeps first lines right as it grows past its initial size."""
    rows = [json.dumps({"input_image": f"https://example.com/{i}.png"}) for i in range(5000)]
    rows += [
        rows[0],
        rows[4321],
        json.dumps({"id": "x", "input_image": URL}),
        json.dumps({"id": "x", "title": "t"}),
    ]
    path = write(tmp_path, "m.jsonl", "\n".join(rows))
    fix = "(remove the repeated row, or give each its own id)"
    assert messages(read(path, registry)) == [
        f"{path}:5001: same workflow and inputs as line 1 {fix}",
        f"{path}:5002: same workflow and inputs as line 4322 {fix}",
        f"{path}:5004: id: 'x' is also the id of line 5003 (give every row its own id)",
    ]


# --- local image files ----------------------------------------------------------------------------


def test_local_images_are_relative_to_the_manifest_folder(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative path is looked up beside the manifest, not in the working directory; kept as written."""
    write(tmp_path, "project/img/cat.png", b"\x89PNG fake")
    path = write(tmp_path, "project/m.jsonl", json.dumps({"input_image": "img/cat.png"}))
    monkeypatch.chdir(tmp_path)
    [job] = read(Path("project/m.jsonl"), registry)
    assert isinstance(job, JobSpec)
    assert job.inputs == {"input_image": "img/cat.png"}
    assert job.base_dir == path.parent
    assert (job.base_dir / job.inputs["input_image"]).is_file()


def test_local_image_absolute_path_and_folder(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """An absolute path to a file is fine; a folder is not an image file."""
    image = write(tmp_path, "cat.png", b"\x89PNG fake")
    (tmp_path / "img").mkdir()
    path = write(tmp_path, "m.txt", f"{image}\nimg\n")
    items = read(path, registry)
    assert [j.inputs["input_image"] for j in jobs(items)] == [str(image)]
    assert messages(items) == [
        f"{path}:2: input_image: local path is a folder: img (give an image file or a URL)"
    ]


def test_a_pipe_given_as_an_image_is_refused_not_read(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """Reading a FIFO would wait for a writer for ever; it is named for what it is."""
    os.mkfifo(tmp_path / "pipe.png")
    path = write(tmp_path, "m.txt", "pipe.png\n")
    assert messages(read(path, registry)) == [
        f"{path}:1: input_image: local path is not a regular file (a pipe, socket or device): pipe.png"
        " (give an image file or a URL)"
    ]


# --- the samples and both YAML parsers ----------------------------------------------------------------


def test_the_sample_manifests_are_all_valid(registry: WorkflowRegistry) -> None:
    """jobs/examples/ holds one sample per format, every row valid, no id repeated across them."""
    names = ["sketch-urls.txt", "blog-posts.csv", "mixed.yaml", "mixed.jsonl"]
    items = list(read_manifests([REPO / "jobs" / "examples" / n for n in names], registry))
    assert messages(items) == []
    assert {Path(j.path).name for j in jobs(items)} == set(names)


@pytest.mark.parametrize("loader", [PureLoader, FastLoader], ids=["pure-python", "libyaml"])
def test_both_yaml_parsers_give_the_same_rows(tmp_path: Path, loader: type[PureLoader | FastLoader]) -> None:
    """Events from libyaml or from PyYAML's own parser: same rows, same physical lines."""
    # U+2028 is a line break to YAML but not a physical line: "last" is on line 11, not 12.
    content = (
        '# c\n- id: 00123\n  t: |\n    a\n\n    b\n- {x: 1,\n   y: 2}\n- [1]\n- "\u00e9\u2028x"\n- last\n'
    )
    path = write(tmp_path, "m.yaml", content)
    with path.open("rb") as fh:
        from batcher.manifest_formats import physical_lines

        rows = list(yaml_rows(physical_lines(fh, str(path)), str(path), loader))
    assert [(getattr(r, "line", None), getattr(r, "data", None)) for r in rows] == [
        (2, {"id": "00123", "t": "a\n\nb\n"}),
        (7, {"x": 1, "y": 2}),
        (9, [1]),
        (10, "\u00e9\u2028x"),
        (11, "last"),
    ]


def test_a_raw_workflow_id_must_match_exactly(registry: WorkflowRegistry) -> None:
    """24 hex digits, -v and ASCII digits, nothing after: no trailing newline, no other digits."""
    assert registry.get(RAW_ID) is not None
    assert registry.get(RAW_ID + "\n") is None
    assert registry.get(RAW_ID[:-1] + "\u0661") is None  # ARABIC-INDIC DIGIT ONE matches \d


def test_yaml_syntax_error_before_the_list_is_a_manifest_error(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A YAML file that breaks before its first row is refused as a whole, with the line."""
    path = write(tmp_path, "m.yaml", '# rows\n"unclosed\n')
    with pytest.raises(
        ManifestError, match=r": line [23]: YAML syntax error: .+ \(fix the YAML there and run again\)$"
    ):
        next(read_manifest(path, registry))
