"""The workflows the emulator knows: its own table, as the provider has its own catalog.

Deliberately not read from ``jobs/*.yaml``: the emulator stands for the provider, and a client
whose definitions drift from the provider's must see the provider's answers (404, 400), not its
own assumptions echoed back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

#: Any Segmind workflow id: 24 hex digits, then ``-v`` and a version.
WORKFLOW_ID_RE = re.compile(r"^[0-9a-f]{24}-v\d+$")

Renderer = Literal["sketch", "blog"]


class InputError(Exception):
    """A submit's body is wrong for the workflow: answered 400 with this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class InputField:
    """One named input of a workflow."""

    name: str
    kind: Literal["image", "text"]
    required: bool = True
    max_length: int | None = None


@dataclass(frozen=True)
class CatalogWorkflow:
    """One workflow of the emulated provider."""

    workflow_id: str
    title: str
    price: float
    inputs: tuple[InputField, ...]
    renderer: Renderer
    #: The output node's name in the current list-shaped output (the real one is undocumented).
    output_key: str
    #: The model named in list-shaped failure messages.
    model: str


SKETCH = CatalogWorkflow(
    workflow_id="66cec9a38aeef98f887211f1-v1",
    title="AI Sketch Maker",
    price=0.1006,
    inputs=(InputField("input_image", "image"),),
    renderer="sketch",
    output_key="sketch_output",
    model="controlnet-sketch",
)

BLOG_IMAGE = CatalogWorkflow(
    workflow_id="66b518aa31bd2081a8de2a98-v5",
    title="Blog Image Generator",
    price=0.4363,
    inputs=(InputField("Blog_title_and_description", "text", max_length=8000),),
    renderer="blog",
    output_key="feature_image",
    model="flux-schnell",
)

CATALOG: Mapping[str, CatalogWorkflow] = {wf.workflow_id: wf for wf in (SKETCH, BLOG_IMAGE)}


def lookup(workflow_id: str) -> CatalogWorkflow | None:
    """The workflow with this id, or ``None`` (any other id, well-formed or not, is unknown)."""
    return CATALOG.get(workflow_id)


def check_inputs(workflow: CatalogWorkflow, body: Any) -> dict[str, str]:
    """The body's inputs, checked against ``workflow``; raises :class:`InputError` for a 400."""
    if not isinstance(body, dict):
        raise InputError(f"Request body must be a JSON object of inputs, not {type(body).__name__}")
    known = {f.name for f in workflow.inputs}
    for name in body:
        if name not in known:
            raise InputError(
                f"Unknown input '{name}' for workflow {workflow.workflow_id}; "
                f"expected: {', '.join(sorted(known))}"
            )
    inputs: dict[str, str] = {}
    for spec in workflow.inputs:
        value = body.get(spec.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                raise InputError(f"Missing required input '{spec.name}'")
            continue
        if not isinstance(value, str):
            raise InputError(f"Input '{spec.name}' must be a string, not {type(value).__name__}")
        if spec.kind == "image":
            _check_image_ref(spec.name, value)
        if spec.max_length is not None and len(value) > spec.max_length:
            raise InputError(f"Input '{spec.name}' is longer than {spec.max_length} characters")
        inputs[spec.name] = value
    return inputs


def _check_image_ref(name: str, value: str) -> None:
    parts = urlsplit(value.strip())
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.hostname:
        return
    if scheme == "data" and "," in value:
        return
    raise InputError(f"Input '{name}' must be an image URL (http, https or data:), got {value[:60]!r}")


def canonical_input(workflow: CatalogWorkflow, inputs: Mapping[str, str]) -> str:
    """The submission as one string: equal for equal (workflow, inputs), whatever the key order."""
    return json.dumps(
        {"workflow": workflow.workflow_id, "inputs": dict(inputs)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )


def input_hash(canonical: str) -> str:
    """A short, stable name for a canonical input (what the stats count submissions by)."""
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def split_blog_text(text: str) -> tuple[str, str]:
    """``(title, description)`` from ``"Title: ...\\n\\nDescription: ...\\n"``, tolerant of free text."""
    match = re.match(r"\s*Title:\s*(.*?)\s*(?:\n\s*Description:\s*(.*))?\s*$", text, re.DOTALL)
    if match:
        return match.group(1).strip(), (match.group(2) or "").strip()
    first, _, rest = text.strip().partition("\n")
    return first.strip(), rest.strip()
