"""Workflow definitions: one YAML file per Segmind workflow in ``jobs/`` (data, not code).

A definition names the workflow, its Segmind id, its price, and its inputs with their types. Adding
a workflow is adding a file. A manifest row may also name a raw Segmind workflow id that has no
file; it then runs with its inputs passed through as given and no known price.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .inputs import Compose, InputProblem, InputSpec, check_value, compose_text, local_path

#: A Segmind workflow id: 24 hex digits, then ``-v`` and a version number. ``\Z``, not ``$``: ``$``
#: also matches before a trailing newline, and ``\d`` would accept non-ASCII digits.
WORKFLOW_ID_RE = re.compile(r"^[0-9a-f]{24}-v[0-9]+\Z")

INPUT_TYPES = ("image", "text", "number", "integer", "boolean", "any")

#: Default folder of workflow definitions: ``jobs/`` beside the package in a checkout.
DEFAULT_JOBS_DIR = Path(__file__).resolve().parent.parent / "jobs"


@dataclass(frozen=True)
class Workflow:
    """One Segmind workflow as batcher knows it."""

    name: str
    workflow_id: str
    title: str = ""
    price_usd: float | None = None
    inputs: tuple[InputSpec, ...] = ()
    source: str = ""
    #: False for a raw workflow id with no definition file: inputs pass through unchecked.
    defined: bool = True
    notes: str = field(default="", compare=False)

    def accepted_fields(self) -> set[str]:
        names = {spec.name for spec in self.inputs}
        for spec in self.inputs:
            if spec.compose:
                names.update(spec.compose.fields)
        return names

    def matches(self, fields: Iterable[str]) -> bool:
        """True when a row with these input fields could be meant for this workflow."""
        given = set(fields)
        if not given or not self.inputs or not given <= self.accepted_fields():
            return False
        for spec in self.inputs:
            composable = spec.compose is not None and set(spec.compose.required) <= given
            if spec.required and spec.name not in given and not composable:
                return False
        return True

    def fingerprint(self) -> str:
        """What, if changed, makes old ledger entries describe a different job."""
        data = {"workflow_id": self.workflow_id, "inputs": [spec.name for spec in self.inputs]}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]

    def templates_fingerprint(self) -> str | None:
        """Its ``compose`` templates, hashed; None if it has none. A row without an id is named
        after the inputs it sends, and a composed input is the template filled in: change a
        template and every such row gets a new id, so a run would pay for all of them again.
        Kept apart from :meth:`fingerprint` so that ledgers written before it was recorded are
        not refused."""
        templates = {spec.name: spec.compose.template for spec in self.inputs if spec.compose}
        if not templates:
            return None
        return hashlib.sha256(json.dumps(templates, sort_keys=True).encode()).hexdigest()[:16]

    def prepare(
        self, fields: Mapping[str, Any], base_dir: Path | None = None, *, files: bool = True
    ) -> dict[str, Any]:
        """Check a row's fields and return the inputs to send; raises :class:`InputProblem`.
        ``files=False`` leaves out whether local image files exist (:meth:`local_files` lists
        them, :func:`~batcher.inputs.check_local_file` checks one)."""
        if not self.defined:
            if not fields:
                raise InputProblem("input", "is empty", "give the workflow's inputs as an object")
            return dict(fields)
        accepted = self.accepted_fields()
        for name in fields:
            if name not in accepted:
                raise InputProblem(
                    name,
                    f"is not an input of workflow '{self.name}'",
                    f"use one of: {', '.join(sorted(accepted))}",
                )
        out: dict[str, Any] = {}
        for spec in self.inputs:
            value = fields.get(spec.name)
            if spec.compose is not None and spec.name in fields:
                extra = [f for f in spec.compose.fields if f in fields]
                if extra:
                    # Both forms given: which one the user meant is a guess, so ask.
                    raise InputProblem(
                        extra[0],
                        f"is given together with {spec.name}",
                        f"give either {spec.name} or {' + '.join(spec.compose.fields)}, not both",
                    )
            if value is None and spec.compose is not None:
                value = compose_text(spec.compose, fields)
            if value is None or (isinstance(value, str) and not value.strip()):
                if spec.required:
                    hint = ""
                    if spec.compose:
                        hint = f" or {' + '.join(spec.compose.required)}"
                    raise InputProblem(spec.name, "is missing or empty", f"give {spec.name}{hint}")
                continue
            out[spec.name] = check_value(spec, value, base_dir, files=files)
        return out

    def local_files(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(input name, path as written)`` of each local image file in prepared inputs."""
        return [
            (spec.name, value)
            for spec in self.inputs
            if spec.type == "image"
            and isinstance(value := inputs.get(spec.name), str)
            and local_path(value, None) is not None
        ]


class WorkflowRegistry:
    """The workflows batcher knows, by manifest name and by Segmind id."""

    def __init__(self, workflows: Iterable[Workflow]) -> None:
        self._by_name: dict[str, Workflow] = {}
        self._by_id: dict[str, Workflow] = {}
        for wf in workflows:
            self._by_name[wf.name] = wf
            self._by_id.setdefault(wf.workflow_id, wf)

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def fingerprints(self) -> dict[str, str]:
        """Each workflow's :meth:`Workflow.fingerprint`, by name (recorded in a ledger's ``run``)."""
        return {wf.name: wf.fingerprint() for wf in self._by_name.values()}

    def templates(self) -> dict[str, str]:
        """Each workflow's :meth:`Workflow.templates_fingerprint`, by name, for those that compose."""
        found = {wf.name: wf.templates_fingerprint() for wf in self._by_name.values()}
        return {name: fp for name, fp in found.items() if fp is not None}

    def get(self, name_or_id: str) -> Workflow | None:
        """A workflow by manifest name or Segmind id; a raw, well-formed id gets an ad-hoc one."""
        wf = self._by_name.get(name_or_id) or self._by_id.get(name_or_id)
        if wf is None and WORKFLOW_ID_RE.match(name_or_id):
            wf = Workflow(name=name_or_id, workflow_id=name_or_id, defined=False)
        return wf

    def infer(self, fields: Iterable[str]) -> list[Workflow]:
        """The defined workflows a row with these fields could be meant for."""
        keys = list(fields)
        return [wf for wf in self._by_name.values() if wf.matches(keys)]


def load_workflows(jobs_dir: Path = DEFAULT_JOBS_DIR) -> WorkflowRegistry:
    """Read every ``*.yaml`` definition directly in ``jobs_dir`` (sample manifests live below it)."""
    if not jobs_dir.is_dir():
        raise ConfigError(
            "workflow definitions folder not found",
            key="jobs_dir",
            source=str(jobs_dir),
            fix="point jobs_dir at the folder holding sketch.yaml and blog-image.yaml",
        )
    workflows = []
    for path in sorted(jobs_dir.glob("*.yaml")) + sorted(jobs_dir.glob("*.yml")):
        workflows.append(parse_workflow(path))
    names = [wf.name for wf in workflows]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ConfigError(f"workflow name defined twice: {', '.join(sorted(dupes))}", source=str(jobs_dir))
    return WorkflowRegistry(workflows)


def template_problem(template: str, fields: Mapping[Any, Any]) -> str | None:
    """What is wrong with a ``compose`` template, or None. Checked when the definition is read, so
    a template naming a field it is not given fails there, not as a traceback mid-run."""
    for name in fields:
        if not isinstance(name, str) or not name.isidentifier():
            return f"field {name!r} is not a plain name"
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:  # a lone brace
        return f"is not a valid template: {exc}"
    for _, name, _, conversion in parts:
        if name is None:
            continue
        if name not in fields:
            listed = ", ".join(f"{{{f}}}" for f in fields)
            return f"names {{{name}}}, which is not one of its fields ({listed})"
        if conversion is not None:
            return f"{{{name}!{conversion}}}: conversions are not supported"
    try:
        template.format(**{name: "" for name in fields})
    except (ValueError, KeyError, IndexError) as exc:  # a format spec text cannot take
        return f"cannot be filled in: {exc}"
    return None


def parse_workflow(path: Path) -> Workflow:
    src = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read workflow definition: {exc}", source=src) from exc
    if not isinstance(data, dict):
        raise ConfigError("a workflow definition must be a mapping", source=src)

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        value = data.get(key)
        if not isinstance(value, kind):
            raise ConfigError(f"missing or wrong type ({value!r})", source=src, key=key)
        return value

    name = need("name", str)
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z", name):
        raise ConfigError(f"bad name {name!r}", source=src, key="name", fix="letters, digits, - _ .")
    workflow_id = need("workflow_id", str)
    if not WORKFLOW_ID_RE.match(workflow_id):
        raise ConfigError(
            f"{workflow_id!r} is not a Segmind workflow id",
            source=src,
            key="workflow_id",
            fix="24 hex digits, then -v and the version, e.g. 66cec9a38aeef98f887211f1-v1",
        )
    price = data.get("price_usd")
    # YAML's .nan and .inf are floats: NaN passed "price < 0", and then every --budget check
    # (spent + NaN > budget is False: no budget at all) and `status --json` (NaN is no JSON);
    # an integer past a float's range raised OverflowError below.
    if price is not None and (
        isinstance(price, bool) or not isinstance(price, int | float) or not 0 <= price <= sys.float_info.max
    ):
        raise ConfigError(f"bad price {price!r}", source=src, key="price_usd", fix="a number of USD")
    raw_inputs = need("inputs", dict)
    inputs = []
    for input_name, spec in raw_inputs.items():
        key = f"inputs.{input_name}"
        if not isinstance(spec, dict):
            raise ConfigError("must be a mapping", source=src, key=key)
        kind = spec.get("type", "any")
        if kind not in INPUT_TYPES:
            raise ConfigError(
                f"unknown type {kind!r}",
                source=src,
                key=f"{key}.type",
                fix=f"one of {', '.join(INPUT_TYPES)}",
            )
        compose = None
        if "compose" in spec:
            c = spec["compose"]
            if (
                not isinstance(c, dict)
                or not isinstance(c.get("template"), str)
                or not isinstance(c.get("fields"), dict)
            ):
                raise ConfigError("needs a template and fields", source=src, key=f"{key}.compose")
            if not all(v is None or isinstance(v, dict) for v in c["fields"].values()):
                raise ConfigError(
                    "each field must be a mapping, e.g. {required: true}",
                    source=src,
                    key=f"{key}.compose.fields",
                )
            if problem := template_problem(c["template"], c["fields"]):
                raise ConfigError(
                    problem,
                    source=src,
                    key=f"{key}.compose.template",
                    fix="name only the listed fields, e.g. {title}; write a literal brace as {{ or }}",
                )
            req = tuple(k for k, v in c["fields"].items() if (v or {}).get("required"))
            opt = tuple(k for k, v in c["fields"].items() if not (v or {}).get("required"))
            compose = Compose(template=c["template"], required=req, optional=opt)
        max_length = spec.get("max_length")
        if max_length is not None and (
            isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
        ):
            raise ConfigError(
                f"bad max_length {max_length!r}",
                source=src,
                key=f"{key}.max_length",
                fix="a whole number of characters",
            )
        inputs.append(
            InputSpec(
                name=str(input_name),
                type=kind,
                required=bool(spec.get("required", False)),
                max_length=int(max_length) if max_length is not None else None,
                compose=compose,
            )
        )
    return Workflow(
        name=name,
        workflow_id=workflow_id,
        title=str(data.get("title", name)),
        price_usd=float(price) if price is not None else None,
        inputs=tuple(inputs),
        source=src,
        notes=str(data.get("outputs", "")),
    )
