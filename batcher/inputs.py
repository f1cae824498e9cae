"""A workflow's inputs: their specs, and checking, composing and sending one row's values.

Checks are strict (a bad value is an :class:`InputProblem` naming the field and the fix) and
cheap: a local image file is only looked at, and read just before its job is sent. Whether the
file is there is checked apart from the rest (:func:`check_local_file`), and only for a job that
is still to be sent: once a job ran, its row is that job whatever became of the file.
"""

from __future__ import annotations

import base64
import json
import math
import mimetypes
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

#: Control characters (C0, DEL, C1): what no URL, path or id may hold raw, and what a message
#: must not print raw (ANSI escapes).
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: The usual image input, accepted without a full parse: http(s), a plain host name (letters,
#: digits, dots, hyphens) with an optional port, and no spaces or control characters. Everything
#: this matches, the full check accepts unchanged; anything else gets the full check.
_PLAIN_URL = re.compile(
    r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:[/?#][^\x00-\x20\x7f-\x9f]*)?\Z",
    re.IGNORECASE,
)

#: Local image files larger than this are refused (they travel inline, as data: URIs).
MAX_LOCAL_IMAGE_BYTES = 20 * 1024 * 1024


class InputProblem(Exception):
    """One input of a row is wrong: which field, what is wrong, how to fix it."""

    def __init__(self, field: str, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.fix = fix


@dataclass(frozen=True)
class Compose:
    """Build an input from friendlier fields, e.g. ``title`` + ``description`` into one text."""

    template: str
    required: tuple[str, ...]
    optional: tuple[str, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


@dataclass(frozen=True)
class InputSpec:
    name: str
    type: str = "any"
    required: bool = False
    max_length: int | None = None
    compose: Compose | None = None


def compose_text(compose: Compose, fields: Mapping[str, Any]) -> str | None:
    if not any(f in fields for f in compose.fields):
        return None
    values: dict[str, str] = {}
    for name in compose.fields:
        value = fields.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if name in compose.required:
                raise InputProblem(name, "is missing or empty", f"give a non-empty {name}")
            value = ""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InputProblem(name, f"must be text, not {type(value).__name__}", "give a string")
        values[name] = str(value).strip()
    return compose.template.format(**values)


def check_value(spec: InputSpec, value: Any, base_dir: Path | None, *, files: bool = True) -> Any:
    """The value to send for one input; raises :class:`InputProblem`. ``files=False`` leaves
    out whether a local image file exists (see :func:`check_local_file`)."""
    kind = spec.type
    if kind == "image":
        return check_image_ref(spec.name, value, base_dir, files=files)
    if kind == "text":
        if not isinstance(value, str):
            raise InputProblem(spec.name, f"must be text, not {type(value).__name__}", "give a string")
        if spec.max_length is not None and len(value) > spec.max_length:
            raise InputProblem(
                spec.name, f"is {len(value)} characters long", f"keep it to {spec.max_length} characters"
            )
        return value
    if kind in ("number", "integer"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputProblem(spec.name, f"must be a {kind}, not {value!r}", f"give a {kind}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InputProblem(spec.name, f"must be a finite {kind}, not {value!r}", f"give a {kind}")
        # float(value) would overflow for a huge int; an int is whole already.
        if kind == "integer" and isinstance(value, float) and not value.is_integer():
            raise InputProblem(spec.name, f"must be a whole number, not {value!r}", "give an integer")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InputProblem(spec.name, f"must be true or false, not {value!r}", "give a boolean")
        return value
    return value


def check_image_ref(name: str, value: Any, base_dir: Path | None, *, files: bool = True) -> str:
    """An image input: an http(s) URL, a data: URI, or a local file path (kept as written; with
    ``files``, the file must be a readable image file of at most the size limit)."""
    if not isinstance(value, str):
        raise InputProblem(name, f"must be a URL, not {type(value).__name__}", "give an http(s) URL")
    ref = value.strip()
    if _PLAIN_URL.match(ref):
        return ref
    try:
        parts = urlsplit(ref)
        scheme = parts.scheme.lower()
        host = parts.hostname
    except ValueError as exc:  # e.g. "http://[::1": urlsplit raises "Invalid IPv6 URL"
        raise InputProblem(name, f"is not a valid URL: {exc}", "give a full http(s) URL") from exc
    if scheme in ("http", "https"):
        if not host:
            raise InputProblem(name, f"URL has no host: {ref[:80]!r}", "give a full http(s) URL")
        if bad := CONTROL.search(ref):
            char = bad.group()
            what = "a line break" if char in "\r\n" else f"the control character U+{ord(char):04X}"
            raise InputProblem(
                name,
                f"URL contains {what} at character {bad.start() + 1}",
                "give one URL, on one line; percent-encode anything else (%0A)",
            )
        return ref
    if scheme == "data":
        if not re.match(r"^data:[\w.+-]+/[\w.+-]+(;[\w=.+-]+)*(;base64)?,", ref, re.IGNORECASE):
            raise InputProblem(name, "is not a valid data: URI", "use data:<mime>;base64,<data>")
        return ref
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise InputProblem(
            name,
            f"URL scheme '{scheme}:' is not allowed",
            "use http://, https://, data: or a local file path",
        )
    if files:
        check_local_file(name, ref, base_dir)
    return ref


def local_path(ref: str, base_dir: Path | None) -> Path | None:
    """The file a checked image input names (relative to ``base_dir``), or None for a URL or a
    data: URI."""
    if _PLAIN_URL.match(ref):
        return None
    try:
        scheme = urlsplit(ref).scheme.lower()
    except ValueError:  # refused by check_image_ref already; not a path either way
        return None
    if scheme in ("http", "https", "data"):
        return None
    path = Path(ref)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return path


def is_a_file(path: Path) -> bool:
    """``path.is_file()``, but False instead of an error for a name no filesystem takes ("File
    name too long": one line of text over 255 bytes, looked up in case it names a file) or a
    folder this user may not read."""
    try:
        return path.is_file()
    except OSError:
        return False


def check_local_file(name: str, ref: str, base_dir: Path | None) -> None:
    """Raise :class:`InputProblem` unless the local image file ``ref`` names (checked by
    :func:`check_image_ref`) is a regular file, small enough to send inline."""
    path = local_path(ref, base_dir)
    if path is None:
        return
    # Path.is_file() swallows only ENOENT-like errors: a 5,000-character "path" raises ENAMETOOLONG
    # and an unreadable folder EACCES, so both are caught here and reported as this row's problem.
    shown = CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", ref if len(ref) <= 200 else f"{ref[:200]}...")
    try:
        mode, size = (info := path.stat()).st_mode, info.st_size
    except (FileNotFoundError, NotADirectoryError):
        raise InputProblem(
            name, f"local file not found: {shown}", "give an existing image file or a URL"
        ) from None
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, EACCES, ELOOP; ValueError: a NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InputProblem(
            name, f"local file cannot be read: {reason}", "give an existing image file or a URL"
        ) from exc
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise InputProblem(name, f"local path is {kind}: {shown}", "give an image file or a URL")
    if size > MAX_LOCAL_IMAGE_BYTES:
        raise InputProblem(name, f"local file is over {MAX_LOCAL_IMAGE_BYTES} bytes", "use a URL")


def materialize(
    specs: Iterable[InputSpec], inputs: Mapping[str, Any], base_dir: Path | None
) -> dict[str, Any]:
    """The body to send: local image paths become data: URIs (read now, not held for the run)."""
    out = dict(inputs)
    for spec in specs:
        value = out.get(spec.name)
        if spec.type != "image" or not isinstance(value, str):
            continue
        path = local_path(value, base_dir)
        if path is None:
            continue
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        out[spec.name] = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"
    return out


def preview_inputs(inputs: Mapping[str, Any], base_dir: Path | None, limit: int = 300) -> dict[str, Any]:
    """A short, ledger-safe view of a job's inputs (for status and reports).

    URLs and text are kept up to ``limit`` characters; data: URIs become a note of their type and
    size; local paths become absolute, so a report can show the input image.
    """
    out: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, str):
            scheme = "http" if _PLAIN_URL.match(value) else urlsplit(value).scheme.lower()
            if scheme == "data":
                head = value.split(",", 1)[0]
                out[name] = f"{head},… ({len(value)} characters)"
            elif scheme in ("http", "https") or len(scheme) > 1:
                out[name] = value[:limit]
            elif base_dir is not None and value and not Path(value).is_absolute() and "\n" not in value:
                candidate = base_dir / value
                out[name] = str(candidate.resolve()) if is_a_file(candidate) else value[:limit]
            else:
                out[name] = value[:limit]
        elif isinstance(value, int | float | bool) or value is None:
            out[name] = value
        else:
            out[name] = json.dumps(value, ensure_ascii=False)[:limit]
    return out
