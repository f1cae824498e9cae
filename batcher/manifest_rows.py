"""One manifest row into one job: its id, its workflow and its checked inputs.

The format readers (:mod:`batcher.manifest_formats`, :mod:`batcher.manifest_yaml`) turn bytes into
rows; this module checks a row the same way whatever its format, so the same row gives the same job
(and the same id) in JSON Lines, CSV, YAML or a ``.txt`` line. Every problem is a :class:`Refused`
naming the field and the fix; :mod:`batcher.manifest` turns it into a
:class:`~batcher.errors.RowError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .inputs import CONTROL, InputProblem, check_local_file
from .manifest_formats import RawRow
from .workflows import Workflow, WorkflowRegistry

#: Explicit ids are 1 to this many characters.
MAX_ID_LENGTH = 128

#: ``claim(job_id, explicit)`` records an id as taken, or raises :class:`Refused` if it already is.
Claim = Callable[[str, bool], None]

#: ``needs_files(job_id)``: False when the job will not be sent again (see :func:`job_from_row`).
NeedsFiles = Callable[[str], bool]

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")
_RESERVED = ("id", "workflow")
_ID_EXAMPLE = 'e.g. "post-17" or 17'
_EXAMPLE_WORKFLOW_ID = "66cec9a38aeef98f887211f1-v1"


class Refused(Exception):
    """A row is refused: the field at fault, what is wrong, how to fix it, and the row's own id."""

    def __init__(self, field: str, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.field, self.message, self.fix = field, message, fix
        #: The row's explicit id once known to be its own (unique); never a duplicate's id, which
        #: belongs to another row that a ledger must not mark invalid.
        self.job_id: str | None = None


def job_id_for(workflow: Workflow, inputs: Mapping[str, Any]) -> str:
    """The id of a row that gives none: 16 hex digits of SHA-256 over the workflow and inputs.

    The hash covers the workflow's Segmind id and the canonical JSON of the *prepared* inputs
    (sorted keys, compact separators, UTF-8), so it does not depend on the row's position, key
    order, format or on the friendlier fields (``title``) the inputs were composed from. A local
    image path enters as written, never the file's bytes: the same path in two manifest folders
    gives the same id, and so does a row whose file was moved away after its job ran.
    """
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(f"{workflow.workflow_id}\n{canonical}".encode())
    return digest.hexdigest()[:16]


def inputs_hash(workflow: Workflow, fields: Mapping[str, Any]) -> str:
    """What a row with its own id says, hashed (``inputs_hash`` in the ledger): 16 hex digits of
    SHA-256 over the workflow's name and the row's input fields as written (canonical JSON, as
    :func:`job_id_for`), so that a row edited in place under the id of a job that ran is told
    from that job. What the row says, not what is sent: a local image counts by its path, never
    its bytes (the file may have been archived), and a composed input by its fields (a changed
    ``compose`` template or Segmind id is the ledger's concern, not an edit of the row)."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{workflow.name}\n{canonical}".encode()).hexdigest()[:16]


def job_from_row(
    row: RawRow,
    base_dir: Path,
    registry: WorkflowRegistry,
    claim: Claim,
    needs_files: NeedsFiles | None = None,
) -> tuple[str, Workflow, dict[str, Any], dict[str, Any] | None]:
    """``(job id, workflow, prepared inputs, fields)`` for a parsed row, or :class:`Refused`;
    ``fields`` (the row's input fields, for :func:`inputs_hash`) only for a row with its own id.

    The checks run in the order a user fixes things: the row's shape, its id (an explicit id is
    claimed first, so a later row reusing it is the duplicate even if this row is invalid), the
    workflow (named or inferred from the input names), then the inputs themselves, and last
    the local image files they name. Those are looked at only if ``needs_files(job_id)`` (or
    with no ``needs_files``): a job the ledger has finished, or whose poll_url it knows, is
    never sent again, so its files may have been archived since.
    """
    own_id: str | None = None
    try:
        data = row.data
        if not isinstance(data, dict):
            kind = "null" if data is None else type(data).__name__
            raise Refused(
                "",
                f"row must be an object, not {kind}",
                'give an object, e.g. {"input_image": "https://..."}',
            )
        fields = _input_fields(data)
        job_id: str | None = None
        if data.get("id") is not None:
            job_id = _explicit_id(data["id"])
            claim(job_id, True)
            own_id = job_id
        workflow = _workflow(data.get("workflow"), fields, registry)
        if row.text_cells:
            fields = _from_text_cells(workflow, fields)
        try:
            inputs = workflow.prepare(fields, base_dir, files=False)
            if job_id is None:
                job_id = job_id_for(workflow, inputs)
            files = workflow.local_files(inputs)
            if files and (needs_files is None or needs_files(job_id)):
                for name, ref in files:
                    check_local_file(name, ref, base_dir)
        except InputProblem as exc:
            fix = exc.fix
            if exc.field in fields and (meant := _meant(exc.field, workflow.accepted_fields())):
                fix = f"field names are case-sensitive: call it {meant!r}"
            raise Refused(exc.field, exc.message, fix) from exc
        if own_id is None:
            claim(job_id, False)
    except Refused as exc:
        exc.job_id = own_id
        raise
    return job_id, workflow, inputs, fields if own_id is not None else None


def _input_fields(data: dict[Any, Any]) -> dict[str, Any]:
    """The row's inputs, from ``input`` or beside ``id``/``workflow``; nulls are absent."""
    for key in data:
        if not isinstance(key, str):
            raise Refused(str(key), "field names must be text", "quote the field name")
    if "input" in data:
        inputs = data["input"]
        if not isinstance(inputs, dict):
            kind = "null" if inputs is None else type(inputs).__name__
            raise Refused("input", f"must be an object, not {kind}", '{"input_image": "https://..."}')
        for key in data:
            if key not in ("input", *_RESERVED):
                raise Refused(
                    key,
                    "is beside 'input'; a row's inputs go inside 'input'",
                    "move it into 'input', or remove it",
                )
    else:
        inputs = {k: v for k, v in data.items() if k not in _RESERVED}
        if isinstance(inputs.get("inputs"), dict) and len(inputs) == 1:
            raise Refused("inputs", "is not a field of a row", "call it 'input', singular")
    fields: dict[str, Any] = {}
    for name, value in inputs.items():
        if not isinstance(name, str):
            raise Refused(str(name), "input names must be text", "quote the input name")
        if value is not None:
            _check_json_value(name, value)
            fields[name] = value
    return fields


def _check_json_value(field: str, value: object) -> None:
    """Refuse what JSON cannot carry (YAML dates, NaN, lone surrogates, a list or mapping inside
    itself), iteratively (no recursion).

    A YAML alias can put a list or mapping inside itself (``&r [*r]``), which would never end, or
    repeat one many times over (``[*a, *a]`` where ``a`` repeats another), which grows without
    bound; a list or mapping that appears twice in one row is refused either way.
    """
    stack = [value]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if isinstance(item, list | dict):
            if id(item) in seen:
                raise Refused(
                    field,
                    "repeats a list or mapping by a YAML alias (or holds itself)",
                    "write the value out in full instead of using *alias",
                )
            seen.add(id(item))
        if isinstance(item, str):
            if _SURROGATE.search(item):
                raise Refused(field, "contains an unpaired UTF-16 surrogate", "give valid text")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise Refused(field, f"must be a finite number, not {item}", "give a number")
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key in item:
                if not isinstance(key, str):
                    raise Refused(field, f"has a non-text key {key!r}", "quote the key")
                stack.append(key)
            stack.extend(item.values())
        elif not (item is None or isinstance(item, bool | int)):
            raise Refused(
                field,
                f"must be text, a number, true/false, a list or an object, not {type(item).__name__}",
                "quote the value",
            )


def _explicit_id(value: object) -> str:
    """A row's own id: text (spaces around it dropped) or a whole number (as its digits)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise Refused("id", f"must be text or a whole number, not {type(value).__name__}", _ID_EXAMPLE)
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        raise Refused("id", "is empty", "give a non-empty id, or leave the id out")
    if len(text) > MAX_ID_LENGTH:
        raise Refused("id", f"is {len(text)} characters long", f"keep ids to {MAX_ID_LENGTH} characters")
    if bad := CONTROL.search(text):
        raise Refused(
            "id", f"contains the control character U+{ord(bad.group()):04X}", "use printable characters"
        )
    if _SURROGATE.search(text):
        raise Refused("id", "contains an unpaired UTF-16 surrogate", "give valid text")
    return text


def _workflow(value: object, fields: Mapping[str, Any], registry: WorkflowRegistry) -> Workflow:
    names = ", ".join(registry.names())
    if value is not None:
        if not isinstance(value, str):
            raise Refused("workflow", f"must be a workflow name, not {type(value).__name__}", f"use {names}")
        name = value.strip()
        if not name:
            raise Refused("workflow", "is empty", f"use {names}, or leave it out to infer it from the inputs")
        workflow = registry.get(name)
        if workflow is None:
            shown = name if len(name) <= 80 else f"{name[:80]}..."
            raise Refused(
                "workflow",
                f"unknown workflow {shown!r}",
                f"use one of: {names}, or a Segmind workflow id like {_EXAMPLE_WORKFLOW_ID}",
            )
        return workflow
    if not fields:
        raise Refused("input", "is empty", "give the workflow's inputs, e.g. input_image or title")
    candidates = registry.infer(fields)
    if len(candidates) == 1:
        return candidates[0]
    given = ", ".join(sorted(fields))
    if candidates:
        could = ", ".join(sorted(wf.name for wf in candidates))
        raise Refused(
            "workflow", f"is not given, and the inputs ({given}) fit {could}", "add a workflow field"
        )
    known = {name for wf in registry for name in wf.accepted_fields()}
    if renamed := [f"{field!r} as {meant!r}" for field in sorted(fields) if (meant := _meant(field, known))]:
        fix = f"field names are case-sensitive: write {', '.join(renamed)}"
    else:
        fix = f"add a workflow field, one of: {names}"
    raise Refused("workflow", f"is not given, and no workflow takes the inputs {given}", fix)


def _meant(field: str, known: set[str]) -> str | None:
    """The name ``field`` differs from only by case (a CSV header's ``ID`` or ``Title``), if any."""
    if field in known or field in _RESERVED:
        return None
    folded = field.strip().casefold()
    return next((name for name in sorted({*known, *_RESERVED}) if name.casefold() == folded), None)


_INT_TEXT = re.compile(r"[+-]?[0-9]+\Z")


def _from_text_cells(workflow: Workflow, fields: dict[str, Any]) -> dict[str, Any]:
    """CSV cells are text: read the cells of number, integer and boolean inputs as such.

    A cell that does not parse stays text, so :meth:`Workflow.prepare` reports it as a wrong type.
    """
    out = dict(fields)
    for spec in workflow.inputs:
        cell = out.get(spec.name)
        if not isinstance(cell, str):
            continue
        text = cell.strip()
        if spec.type in ("number", "integer") and _INT_TEXT.match(text):
            out[spec.name] = int(text)
        elif spec.type in ("number", "integer"):
            try:
                number = float(text)
            except ValueError:
                continue
            if math.isfinite(number):
                out[spec.name] = number
        elif spec.type == "boolean" and text.lower() in ("true", "false"):
            out[spec.name] = text.lower() == "true"
    return out
