"""Reading a completed job's ``output``, whatever shape it comes in (pure; no I/O).

Seen shapes (``../shared/segmind-api.md``): a JSON *string* holding a list of
``{"keyname": ..., "value": {"data": url, "type": "image"}}`` entries (current), a JSON string
holding a flat object ``{"image_output": url}`` (older), or the same already parsed. Values may
also be bare strings, nested lists or objects. Every URL found is an output to download; a
string of bare base64 whose bytes are an image or a video (some workflows return their image so,
without a ``data:`` prefix) becomes a ``data:`` URI of that type; every other scalar value (a
workflow's text output, say) is kept as text.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

#: How deep a hostile or odd answer may nest before we stop looking.
MAX_DEPTH = 8
#: How many outputs of one job are saved; past this the rest are left, with a warning and a
#: note in the ledger (a bound on what a hostile answer can make us fetch and write).
MAX_OUTPUTS = 1000


@dataclass(frozen=True)
class OutputRef:
    """One output of a job: a URL to fetch (a ``data:`` URI holds its bytes), or a text value to
    save as it is. ``inline`` is set on an inline output read back from the ledger, which keeps
    its type and size but not its bytes (:meth:`to_json`): its MIME type."""

    key: str
    url: str | None = None
    text: str | None = None
    kind: str = ""
    inline: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The ledger's record of it. An inline output's bytes are not written there: a
        multi-megabyte line would cost every reader of the ledger (``status`` reads it all) and
        is past what a ledger line may be (:data:`~batcher.appendlog.MAX_LINE`); a run that
        needs them again polls the job again, which is free."""
        data: dict[str, Any] = {"key": self.key}
        if self.url is not None and is_data_uri(self.url):
            data["inline"] = data_uri_type(self.url)
            data["chars"] = len(self.url)
        elif self.url is not None:
            data["url"] = self.url
        elif self.inline is not None:
            data["inline"] = self.inline
        if self.text is not None:
            data["text"] = self.text
        if self.kind:
            data["type"] = self.kind
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputRef:
        url, inline = data.get("url"), data.get("inline")
        return cls(
            key=str(data.get("key", "output")),
            url=url,
            text=data.get("text"),
            kind=str(data.get("type", "")),
            inline=str(inline) if inline is not None and url is None else None,
        )


def is_data_uri(url: str) -> bool:
    """Whether ``url`` is a ``data:`` URI (an output that carries its own bytes)."""
    return url[:5].lower() == "data:"


def data_uri_type(uri: str) -> str:
    """The MIME type a ``data:`` URI names (``text/plain`` when it names none, as RFC 2397 says)."""
    head = uri[5 : uri.find(",", 0, 256)] if "," in uri[:256] else uri[5:256]
    return head.split(";", 1)[0].strip().lower() or "text/plain"


# --- bare base64 --------------------------------------------------------------------------

#: Base64 without whitespace, padding optional: the standard alphabet, or the URL-safe one.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_BASE64_URLSAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")
#: Base64 characters decoded to look at a value's first bytes (12 bytes: every signature below).
_HEAD = 16


def sniff_media(head: bytes) -> str | None:
    """The MIME type of an image or video that starts with ``head``, or None: PNG, JPEG, GIF,
    WebP, and the ISO media files (MP4, QuickTime, AVIF) by their ``ftyp`` box."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        return "video/quicktime" if brand == b"qt  " else "video/mp4"
    return None


def base64_media(text: str) -> str | None:
    """``text`` as a ``data:`` URI if it is bare base64 (whitespace and MIME's line breaks
    allowed, the standard or URL-safe alphabet, padding optional) of an image or video, as
    :func:`sniff_media` knows them; else None. The signature is what tells: a caption that
    happens to be valid base64 ("Tree", "Sunset") does not decode to a PNG's first bytes, so it
    stays text. Only the first bytes are decoded here; the whole is decoded when saved, after
    its size is checked against ``output.max_bytes``."""
    head = "".join(text[: _HEAD * 8].split())[:_HEAD]
    if len(head) < _HEAD:
        return None  # 12 bytes or fewer: no image or video is that small
    try:
        first = base64.b64decode(head, altchars=b"-_" if "-" in head or "_" in head else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    mime = sniff_media(first)
    if mime is None:
        return None
    compact = "".join(text.split())
    urlsafe = "-" in compact or "_" in compact
    if not (_BASE64_URLSAFE if urlsafe else _BASE64).fullmatch(compact):
        return None  # not base64 after all (or the two alphabets mixed)
    data = compact.rstrip("=")
    if len(data) % 4 == 1 or (len(data) != len(compact) and len(compact) % 4):
        return None  # no base64 is that long, or its padding is wrong
    if urlsafe:
        data = data.translate(_TO_STANDARD)
    return f"data:{mime};base64,{data}{'=' * (-len(data) % 4)}"


_TO_STANDARD = str.maketrans("-_", "+/")


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
    whether there were more than that. Never raises. A string that opens as a JSON array or
    object but is not JSON (cut short, say) names no output (:func:`malformed` tells it from an
    empty one)."""
    stripped = _text(output)
    if stripped is not None:
        if not stripped:
            return [], False
        try:
            parsed = json.loads(stripped)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's limit
            if stripped[0] in _OPENERS:
                return [], False  # the outputs' JSON, broken: its URLs cannot be trusted
            parsed = stripped  # a bare URL or text, not JSON
        output = parsed
    found = _Found()
    _walk(output, "output", found, 0)
    return found[:MAX_OUTPUTS], len(found) > MAX_OUTPUTS


#: How the JSON of a list of outputs, or of an object of them, opens.
_OPENERS = "[{"


def _text(output: Any) -> str | None:
    """``output`` as stripped text if it is a string (or bytes), else None (already parsed)."""
    if isinstance(output, bytes):
        return output.decode("utf-8", "replace").strip()
    return output.strip() if isinstance(output, str) else None


def malformed(output: Any) -> str | None:
    """``output``'s text if it names no output although it is not empty: a string that opens as
    a JSON array or object (the shapes outputs come in) and is not JSON, cut short or garbled;
    else None. Saved as it was, it made a text file in place of the job's image, and the job
    "completed". Called only when :func:`parse_outputs_capped` found nothing, so the usual
    answer is parsed once."""
    text = _text(output)
    if not text or text[0] not in _OPENERS:
        return None
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return text
    return None


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
            uri = base64_media(node)
            found.add(OutputRef(key=key, url=uri) if uri is not None else OutputRef(key=key, text=node))
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
