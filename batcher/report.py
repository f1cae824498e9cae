"""``batcher report``: one self-contained HTML page about a ledger (numbers, gallery, failures, chart).

Two streaming passes, so memory stays bounded however long the ledger is: the first is the
status fold (counts, spend, failures, durations, each job's last line); the second collects
inputs and outputs only for the jobs the page shows: the latest ones (the ``gallery_cap`` jobs
that completed last and the failed jobs that failed last, newest first: on a ledger that grows
every night, last night's, not the first night's).
Thumbnails are made with Pillow and embedded as data: URIs, so the page needs no network and no
files beside it; a file that is not an image is linked by its path relative to the page.
Like ``status``, it never takes the ledger's lock.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import io
import itertools
import os
import re
import stat
import time
import warnings
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from PIL import Image, ImageOps

from .errors import UsageError
from .fold import LedgerFold, fold_ledger
from .inputs import is_a_file
from .ledger import path_bases, read_records, utc_iso
from .report_data import Card, FailedJob, Page, Tile
from .report_html import render_page
from .status import FAILURE_STATUSES, summarize

GALLERY_CAP = 500
FAILED_CAP = 100
THUMB_PX = 200
#: Source images larger than this are linked, not thumbnailed (decoding them would take too long).
MAX_SOURCE_BYTES = 40 * 1024 * 1024
TEXT_PREVIEW = 600
#: Inputs, and outputs, shown on one card; the rest are counted. A workflow that makes 50 images
#: a job made a 500-card page of 25,000 thumbnails (minutes to make, hundreds of MB).
CARD_TILES = 4
#: The blog-image workflow's composed input (jobs/blog-image.yaml): shown as a title and a description.
_BLOG = re.compile(r"\ATitle: (?P<title>[^\n]*)\n\nDescription: (?P<description>.*)\Z", re.DOTALL)


@dataclass(frozen=True)
class ReportInfo:
    """What :func:`build_report` wrote."""

    path: Path
    jobs: int
    completed: int
    shown: int  # completed jobs in the gallery
    thumbnails: int  # images embedded
    missing: int  # output or input files not found on disk
    bytes: int


class Thumbnailer:
    """Small JPEG data: URIs of local images, each file made once."""

    def __init__(self, px: int = THUMB_PX) -> None:
        self.px = px
        self.made = 0
        self._cache: dict[Path, str | None] = {}

    def __call__(self, path: Path) -> str | None:
        if path not in self._cache:
            self._cache[path] = self._make(path)
            self.made += self._cache[path] is not None
        return self._cache[path]

    def _make(self, path: Path) -> str | None:
        try:
            if path.stat().st_size > MAX_SOURCE_BYTES:
                return None
            with warnings.catch_warnings():
                # A decompression bomb is refused, not half-decoded (and is a warning otherwise).
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    opened.draft("RGB", (self.px * 2, self.px * 2))  # JPEG: decode at a fraction of size
                    image = ImageOps.exif_transpose(opened)
                    image.thumbnail((self.px, self.px))
                    if image.mode in ("RGBA", "LA", "P", "PA"):
                        rgba = image.convert("RGBA")
                        image = Image.new("RGB", rgba.size, (255, 255, 255))
                        image.paste(rgba, mask=rgba.getchannel("A"))
                    elif image.mode not in ("RGB", "L"):
                        image = image.convert("RGB")
                    buf = io.BytesIO()
                    image.save(buf, "JPEG", quality=80, optimize=True)
        except (
            OSError,
            ValueError,
            SyntaxError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            return None
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _locate(text: str, bases: Iterable[Path]) -> Path | None:
    path = Path(text)
    if path.is_absolute():
        return path if is_a_file(path) else None
    for base in bases:
        candidate = base / path
        if is_a_file(candidate):
            return candidate
    return None


class _Moved:
    """Outputs of a run folder that was moved or copied since (``mv runs/nightly /archive/``, or
    ``scp -r`` to a laptop): the ledger holds their absolute paths, which are gone, and every
    output was "file not found" while it lay beside the ledger. A gone path is looked for under
    the ledger's folder and the one above it by its tail, longest first, and taken only if its
    size is the one the ledger recorded; a folder found so is tried first for the next one."""

    def __init__(self, ledger: Path) -> None:
        here = ledger.resolve().parent
        self.roots = [here, here.parent]
        self.moves: dict[Path, Path] = {}  # an old folder's path -> where it is now

    def find(self, path: Path, size: object) -> Path | None:
        for old, new in self.moves.items():
            if path.is_relative_to(old) and self._fits(found := new / path.relative_to(old), size):
                return found
        parts = path.parts[1:]
        for root in self.roots:
            for keep in range(len(parts), 0, -1):
                found = root.joinpath(*parts[-keep:])
                if self._fits(found, size):
                    self.moves[path.parents[keep - 1]] = root
                    return found
        return None

    @staticmethod
    def _fits(path: Path, size: object) -> bool:
        try:
            return path.is_file() and (not isinstance(size, int) or path.stat().st_size == size)
        except OSError:
            return False


def _href(path: Path, page_dir: Path) -> str:
    # The name's bytes on disk, quoted: a name that is not UTF-8 was a UnicodeEncodeError.
    return quote(os.fsencode(os.path.relpath(path, page_dir).replace(os.sep, "/")))


def _is_web(text: str) -> bool:
    return urlsplit(text).scheme.lower() in ("http", "https")


def _clip(text: str, n: int = TEXT_PREVIEW) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


class _Tiles:
    """Turns ledger input previews and saved outputs into gallery tiles."""

    def __init__(self, bases: list[Path], page_dir: Path, thumbs: Thumbnailer, moved: _Moved) -> None:
        self.bases = bases
        self.page_dir = page_dir
        self.thumbs = thumbs
        self.moved = moved
        self.missing = 0

    def input(self, name: str, value: Any) -> Tile:
        if not isinstance(value, str):
            return Tile(name, text=_clip(str(value)))
        if _is_web(value):
            return Tile(name, text=_clip(value), href=value, note="remote image (not fetched)")
        if value.startswith("data:"):
            return Tile(name, text=_clip(value), note="sent inline")
        if "\n" not in value and len(value) < 4096 and (value.startswith("/") or "." in Path(value).name):
            found = _locate(value, self.bases)
            if found is not None:
                image = self.thumbs(found)
                href = _href(found, self.page_dir)
                return (
                    Tile(name, image=image, href=href) if image else Tile(name, text=_clip(value), href=href)
                )
            if value.startswith("/"):
                self.missing += 1
                return Tile(name, text=_clip(value), note="file not found")
        blog = _BLOG.match(value)
        if blog:
            return Tile(name, title=_clip(blog["title"], 300), text=_clip(blog["description"].strip()))
        return Tile(name, text=_clip(value))

    def output(self, out: Mapping[str, Any]) -> Tile:
        key = str(out.get("key", "output"))
        path, url = out.get("path"), out.get("url")
        found = _locate(path, self.bases) if isinstance(path, str) and path else None
        if found is None and isinstance(path, str) and os.path.isabs(path):
            found = self.moved.find(Path(path), out.get("bytes"))
        if found is not None:
            image = self.thumbs(found)
            href = _href(found, self.page_dir)
            if image:
                return Tile(key, image=image, href=href)
            return Tile(key, text=_clip(_read_text(found) or found.name), href=href)
        if isinstance(out.get("text"), str):
            return Tile(key, text=_clip(out["text"]))
        self.missing += 1
        link = url if isinstance(url, str) and _is_web(url) else None
        return Tile(key, text=str(path or url or "?"), href=link, note="file not found")


def _read_text(path: Path) -> str | None:
    if path.suffix.lower() not in (".txt", ".json", ".md", ".csv") or path.stat().st_size > 256 * 1024:
        return None
    try:
        return path.read_text(encoding="utf-8", errors="replace")[:TEXT_PREVIEW]
    except OSError:
        return None


def _first_input(tiles: _Tiles, inputs: Any) -> Tile | None:
    if isinstance(inputs, dict) and inputs:
        name, value = next(iter(inputs.items()))
        return tiles.input(str(name), value)
    return None


def _latest(fold: LedgerFold, statuses: Container[str], cap: int) -> list[str]:
    """The ``cap`` jobs in one of ``statuses`` whose last line came last, newest first: done
    jobs too, for ``completed`` (the fold keeps the latest of those aside)."""
    jobs = ((job.last_line, job_id) for job_id, job in fold.jobs.items() if job.status in statuses)
    done = fold.latest_done() if "completed" in statuses else []
    return [job_id for _, job_id in heapq.nlargest(max(0, cap), itertools.chain(jobs, done))]


def _details(ledger: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """Pass two: the last ``submitting`` inputs and ``completed`` outputs of the wanted jobs."""
    found: dict[str, dict[str, Any]] = {}
    for rec in read_records(ledger):
        job_id = rec.get("job_id")
        if not isinstance(job_id, str) or job_id not in wanted:  # a hand-edited line: a list id
            continue
        status = rec.get("status")
        if status == "submitting":
            entry = found.setdefault(job_id, {})
            entry["inputs"] = rec.get("inputs")
            entry["workflow"] = rec.get("workflow")
        elif status == "completed":
            entry = found.setdefault(job_id, {})
            outputs = rec.get("outputs")
            valid = [o for o in outputs if isinstance(o, dict)] if isinstance(outputs, list) else []
            entry["outputs"] = valid[:CARD_TILES]  # only what a card shows is kept, for 500 cards
            entry["outputs_total"] = len(valid)
            entry["ts"] = rec.get("ts")
    return found


def _looks_like_html(path: Path) -> bool:
    """An empty file, or one whose first character (past a BOM and blank space) opens a tag."""
    with path.open("rb") as fh:
        head = fh.read(512)
    return not head.strip() or head.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<")


def check_page_path(ledger: Path, out_html: Path) -> None:
    """Refuse a page path whose file must not be replaced: the ledger itself (by any name: a
    link, ``./``, another spelling), any other file that is not a web page (a manifest, another
    ledger, an output image: the page is written over it whole), or a read-only one. ``-o`` onto
    the ledger replaced it with the page: the record of every paid job was gone, and the next run
    paid for them all again."""
    try:
        mode = out_html.stat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        return  # a folder or a device: the caller says what is wrong with it
    try:
        same = ledger.exists() and os.path.samefile(ledger, out_html)
        html = _looks_like_html(out_html)
    except OSError as exc:
        raise UsageError(f"cannot check report path {out_html}: {exc.strerror}") from None
    if same:
        raise UsageError(
            f"{out_html} is the ledger itself; give -o the page's own file name"
            f" such as {Path(out_html).with_name('report.html')}"
        )
    if not html:
        raise UsageError(
            f"{out_html} is there and is not a web page (the report would replace it whole); give -o"
            " a new file name, or an earlier report's"
        )
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise UsageError(
            f"{out_html} is read-only; make it writable (chmod u+w) or give -o another file name"
        )


def build_report(
    ledger: Path,
    out_html: Path,
    *,
    prices: Mapping[str, float | None],
    now: float | None = None,
    gallery_cap: int = GALLERY_CAP,
    thumb_px: int = THUMB_PX,
    retry_failed: bool = False,
) -> ReportInfo:
    """Write the report for ``ledger`` to ``out_html`` (replaced atomically). Raises LedgerError,
    or UsageError for a page path that must not be replaced (:func:`check_page_path`)."""
    check_page_path(ledger, out_html)
    now = time.time() if now is None else now
    fold = fold_ledger(ledger, durations=True, lines=True, latest_done=max(0, gallery_cap))
    status = summarize(fold, ledger=str(ledger), prices=prices, now=now, retry_failed=retry_failed)
    completed = status.by_state.get("completed", 0)
    shown = _latest(fold, ("completed",), gallery_cap)
    failed_ids = _latest(fold, FAILURE_STATUSES, FAILED_CAP)
    details = _details(ledger, set(shown) | set(failed_ids))

    page_dir = out_html.resolve().parent
    tiles = _Tiles(path_bases(ledger), page_dir, Thumbnailer(thumb_px), _Moved(ledger))
    cards = []
    for job_id in shown:
        entry = details.get(job_id, {})
        inputs = list(entry["inputs"].items()) if isinstance(entry.get("inputs"), dict) else []
        outputs = entry.get("outputs", [])
        cards.append(
            Card(
                job_id=job_id,
                workflow=fold.workflow_of(job_id),
                finished=entry.get("ts"),
                inputs=tuple(tiles.input(str(k), v) for k, v in inputs[:CARD_TILES]),
                outputs=tuple(tiles.output(o) for o in outputs),
                more_inputs=max(0, len(inputs) - CARD_TILES),
                more_outputs=entry.get("outputs_total", 0) - len(outputs),
            )
        )
    failed = tuple(
        FailedJob(
            job_id=job_id,
            workflow=fold.jobs[job_id].workflow,
            status=fold.jobs[job_id].status,
            error=_clip(str(fold.jobs[job_id].error or "(no error message)"), 1000),
            retryable=fold.jobs[job_id].retryable,
            input=_first_input(tiles, details.get(job_id, {}).get("inputs")),
        )
        for job_id in failed_ids
    )
    page = Page(
        title=f"batcher report: {ledger.name}",
        generated=utc_iso(now).replace("T", " ")[:19] + " UTC",
        status=status,
        cards=tuple(cards),
        completed_total=completed,
        failed=failed,
        durations=fold.durations or [],
    )
    # A file name that is not UTF-8 (lone surrogates) is shown escaped, as on stdout.
    data = render_page(page).encode("utf-8", "backslashreplace")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_html.with_name(f".{out_html.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        with contextlib.suppress(FileNotFoundError):  # an earlier page kept private stays private
            os.chmod(tmp, stat.S_IMODE(out_html.stat().st_mode))
        os.replace(tmp, out_html)  # a reader never sees half a page
    finally:
        tmp.unlink(missing_ok=True)
    return ReportInfo(
        path=out_html,
        jobs=status.jobs,
        completed=completed,
        shown=len(cards),
        thumbnails=tiles.thumbs.made,
        missing=tiles.missing,
        bytes=len(data),
    )
