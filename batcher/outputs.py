"""Reading a completed job's ``output``, whatever shape it comes in (pure; no I/O).

Seen shapes (``../shared/segmind-api.md``): a JSON *string* holding a list of
``{"keyname": ..., "value": {"data": url, "type": "image"}}`` entries (current), a JSON string
holding a flat object ``{"image_output": url}`` (older), or the same already parsed. Values may
also be bare strings, nested lists or objects. Every URL found is an output to download; every
other scalar value (a workflow's text output, say) is kept as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: How deep a hostile or odd answer may nest before we stop looking.
MAX_DEPTH = 8
#: How many outputs of one job are saved; past this the rest are left, with a warning and a
#: note in the ledger (a bound on what a hostile answer can make us fetch and write).
MAX_OUTPUTS = 1000


@dataclass(frozen=True)
class OutputRef:
    """One output of a job: a URL to fetch, or a text value to save as it is."""

    key: str
    url: str | None = None
    text: str | None = None
    kind: str = ""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"key": self.key}
        if self.url is not None:
            data["url"] = self.url
        if self.text is not None:
            data["text"] = self.text
        if self.kind:
            data["type"] = self.kind
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputRef:
        return cls(
            key=str(data.get("key", "output")),
            url=data.get("url"),
            text=data.get("text"),
            kind=str(data.get("type", "")),
        )


def _looks_like_url(text: str) -> bool:
    head = text[:16].lower()
    if "://" in head:
        return True
    return head.startswith("data:")


def parse_outputs(output: Any) -> list[OutputRef]:
    """Every output in ``output``, in order, de-duplicated, up to :data:`MAX_OUTPUTS`."""
    return parse_outputs_capped(output)[0]


def parse_outputs_capped(output: Any) -> tuple[list[OutputRef], bool]:
    """The outputs in ``output`` (in order, de-duplicated, up to :data:`MAX_OUTPUTS`), and
    whether there were more than that. Never raises."""
    if isinstance(output, str | bytes):
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
        stripped = text.strip()
        if not stripped:
            return [], False
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
            parsed = stripped  # a bare URL or text, not JSON
        output = parsed
    found = _Found()
    _walk(output, "output", found, 0)
    return found[:MAX_OUTPUTS], len(found) > MAX_OUTPUTS


class _Found(list[OutputRef]):
    """The outputs the walk found, in order, without repeats: the walk stops one past the cap."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str | None, str | None]] = set()

    def add(self, ref: OutputRef) -> None:
        mark = (ref.url, ref.text if ref.url is None else None)
        if mark not in self._seen:
            self._seen.add(mark)
            self.append(ref)


def _walk(node: Any, key: str, found: _Found, depth: int) -> None:
    if depth > MAX_DEPTH or len(found) > MAX_OUTPUTS:
        return
    if isinstance(node, str):
        if _looks_like_url(node.strip()):
            found.add(OutputRef(key=key, url=node.strip()))
        elif node.strip():
            found.add(OutputRef(key=key, text=node))
        return
    if isinstance(node, bool) or node is None:
        return
    if isinstance(node, int | float):
        found.add(OutputRef(key=key, text=json.dumps(node)))
        return
    if isinstance(node, list):
        for index, item in enumerate(node):
            _walk(item, key if len(node) == 1 else f"{key}_{index}", found, depth + 1)
        return
    if isinstance(node, dict):
        # The current shape: {"keyname": "...", "value": {"data": "...", "type": "image"}}.
        if "keyname" in node and "value" in node:
            name = str(node.get("keyname") or key)
            value = node["value"]
            if isinstance(value, dict) and "data" in value:
                before = len(found)
                _walk(value["data"], name, found, depth + 1)
                kind = str(value.get("type") or "")
                for i in range(before, len(found)):
                    found[i] = OutputRef(key=found[i].key, url=found[i].url, text=found[i].text, kind=kind)
            else:
                _walk(value, name, found, depth + 1)
            return
        if "data" in node and isinstance(node.get("data"), str) and set(node) <= {"data", "type"}:
            before = len(found)
            _walk(node["data"], key, found, depth + 1)
            for i in range(before, len(found)):
                ref = found[i]
                found[i] = OutputRef(key=ref.key, url=ref.url, text=ref.text, kind=str(node.get("type", "")))
            return
        for name, value in node.items():
            _walk(value, str(name), found, depth + 1)
