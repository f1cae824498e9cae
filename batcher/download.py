"""Saving a job's outputs under ``--out``: streamed, hashed, size-capped, named safely.

All files sit side by side in ``<out>``: a job's first output is ``<job><ext>``
(``sketch-lighthouse.png``), any further one ``<job>+<key><ext>``. ``<job>`` and ``<key>`` are made
safe from anything a manifest or a hostile answer could put there (``../``, absolute paths, odd
bytes), and safe names never hold a ``+`` or begin with a dot, so two jobs never share a name (an
extension is one dot and letters, so ``<a><ext>`` cannot be ``<b><ext'>`` either). One folder, not
one per job: creating a folder cost more than writing the file (``bench/overhead.py``). A
file is written to a hidden ``.part`` file and renamed, so a file under its name is complete.

Files are not fsynced one by one (that cost more than everything else per job: see
``bench/overhead.py``). They survive a killed process at once; the run flushes them all with one
``syncfs`` as it ends and then writes ``run_end`` to the ledger. If the machine died before that,
the next run checks those runs' files and fetches any that did not reach the disk again, from the
provider, for free (both in :mod:`batcher.outfiles`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import aiofiles
import anyio

from .api import SegmindAPI
from .errors import BatcherError, ConfigError, RemoteError, TransportError, UnsafeOutputError
from .outputs import OutputRef, is_data_uri

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {
    ".png",
    ".jpg",
    ".jpeg",
    ".webp",
    ".gif",
    ".avif",
    ".bmp",
    ".tif",
    ".tiff",
    ".svg",
    ".mp4",
    ".webm",
    ".mov",
    ".mp3",
    ".wav",
    ".txt",
    ".json",
    ".glb",
    ".zip",
    ".pdf",
}
_BY_TYPE = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/avif": ".avif",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "text/plain": ".txt",
    "application/json": ".json",
}

#: Every suffix an output is saved under (:func:`_extension`).
OUTPUT_SUFFIXES = (*sorted(_EXTENSIONS | set(_BY_TYPE.values())), ".bin")


_PLAIN = re.compile(r"[A-Za-z0-9]+(?:[._-]+[A-Za-z0-9]+)*")


def safe_name(text: str, *, max_len: int = 80) -> str:
    """A file name made from ``text`` that cannot leave its folder or surprise a shell.

    Keeps letters, digits, ``.``, ``_`` and ``-``; everything else becomes ``_``. If anything had
    to change, a short hash of the original is appended, so different ids never share a name.
    """
    if len(text) <= max_len and _PLAIN.fullmatch(text):
        return text  # already safe (the usual case): nothing to fold or replace
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    clean = _UNSAFE.sub("_", folded).strip("._-")[:max_len] or "x"
    if clean != text:
        clean = f"{clean}-{hashlib.sha256(text.encode('utf-8', 'surrogatepass')).hexdigest()[:8]}"
    return clean


class DownloadFailed(BatcherError):
    """An output could not be saved. ``retryable``: a later run may succeed. ``local``: it could
    not be written under ``--out`` (trying again within seconds cannot help). ``folder``: why no
    output can be written there now (a full disk, a size limit, a folder gone or read-only), or
    None when only this file is affected. ``gone``: the output's host says it has no such file
    (403, 404, 410): outputs are kept about 7 days, so only running the job again can make it.
    ``retry_after``: seconds the host said to wait before trying again (a 429 or 503 with
    ``Retry-After``), or None."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        job_id: str | None = None,
        local: bool = False,
        folder: str | None = None,
        gone: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, job_id=job_id)
        self.retryable = retryable
        self.local = local
        self.folder = folder
        self.gone = gone
        self.retry_after = retry_after


#: Write errors that concern the whole output folder, not one file's name.
_FOLDER_WIDE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES})
_FOLDER_WIDE |= {errno.EPERM, errno.ENOTDIR, errno.ENOENT}


@dataclass(frozen=True)
class SavedOutput:
    key: str
    url: str | None
    path: str
    sha256: str
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "url": self.url,
            "path": self.path,
            "sha256": self.sha256,
            "bytes": self.bytes,
        }


def _extension(url: str | None, content_type: str) -> str:
    if url and not is_data_uri(url):
        path = url.split("?", 1)[0].split("#", 1)[0]
        name = path[path.find("//") + 2 :] if "//" in path else path
        name = name.rsplit("/", 1)[-1] if "/" in name else ""  # the host is not a file name
        suffix = os.path.splitext(unquote(name) if "%" in name else name)[1].lower()
        if suffix in _EXTENSIONS:
            return suffix
    return _BY_TYPE.get(content_type.split(";")[0].strip().lower(), ".bin")


def _out_dir_problem(out_dir: Path) -> str | None:
    """Why outputs could not be written under ``out_dir``, or None; creates nothing.
    The nearest folder that exists must be a folder this process may write in."""
    here = Path(os.path.abspath(out_dir))
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    if not here.is_dir():
        return f"cannot write outputs under {out_dir}: {here} is not a folder"
    if not os.access(here, os.W_OK | os.X_OK):
        return f"cannot write outputs under {out_dir}: no permission to write in {here}"
    return None


def check_out_dir(out_dir: Path, *, create: bool) -> None:
    """Raise ConfigError if outputs cannot be written under ``out_dir``, before anything is paid
    for. With ``create``, the folder is made and a file written and removed in it; without (a dry
    run, which writes nothing), only the nearest existing folder is looked at."""
    problem = _out_dir_problem(out_dir)
    if problem is None and create:
        probe = os.path.join(out_dir, f".batcher-probe.{os.getpid()}")
        try:
            os.makedirs(out_dir, exist_ok=True)
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            problem = f"cannot write outputs under {out_dir}: {exc.strerror}"
    if problem is not None:
        raise ConfigError(problem, fix="give --out (or output.out_dir in the config) a folder you can write")


class OutputSaver:
    """Saves outputs for a run. One per run; safe to use from many tasks."""

    def __init__(
        self, api: SegmindAPI, out_dir: Path, *, max_bytes: int, timeout: float, min_rate: float | None = None
    ) -> None:
        self._api = api
        # Absolute, so the paths the ledger records mean the same files whichever folder a
        # later run, ``status`` or ``report`` starts in.
        self._out = os.path.abspath(out_dir)
        self._max_bytes = max_bytes
        self._timeout = timeout
        #: Bytes a second that earn a download time past ``timeout`` (see :mod:`batcher.transport`).
        self._min_rate = min_rate
        self._pid = os.getpid()

    def _target(self, stem: str, index: int, key: str, ext: str, used: set[str]) -> str:
        """``<stem><ext>`` for a job's first output, ``<stem>+<key><ext>`` for the others."""
        base = stem if index == 0 else f"{stem}+{safe_name(key, max_len=60)}"
        name = f"{base}{ext}"
        n = 1
        while name in used:
            name = f"{base}_{n}{ext}"
            n += 1
        used.add(name)
        return os.path.join(self._out, name)

    async def save_all(self, job_id: str, refs: list[OutputRef]) -> list[SavedOutput]:
        """Save every output of a job, or raise DownloadFailed for the first that fails."""
        used: set[str] = set()
        saved = []
        # safe_name: no separators, no leading dots, so nothing can land outside --out.
        stem = safe_name(job_id)
        for index, ref in enumerate(refs):
            try:
                saved.append(await self._save_one(stem, index, ref, used))
            except DownloadFailed as exc:
                exc.job_id = exc.job_id or job_id
                raise
            except UnsafeOutputError as exc:
                raise DownloadFailed(f"{ref.key}: {exc}", retryable=False, job_id=job_id) from None
            except (TransportError, RemoteError) as exc:
                raise DownloadFailed(f"{ref.key}: {exc}", retryable=True, job_id=job_id) from None
            except OSError as exc:
                cause = f"cannot write outputs under {self._out}: {(exc.strerror or str(exc)).lower()}"
                raise DownloadFailed(
                    f"{ref.key}: {cause}; the next run downloads it again (not paid again)",
                    retryable=True,
                    job_id=job_id,
                    local=True,
                    folder=cause if exc.errno in _FOLDER_WIDE else None,
                ) from None
        return saved

    async def _save_one(self, stem: str, index: int, ref: OutputRef, used: set[str]) -> SavedOutput:
        """Fetch one output into memory (up to SPILL bytes; past that, stream to a part file)
        and write it and rename it into place: from the event loop if small, else in a thread."""
        digest = hashlib.sha256()
        part = os.path.join(self._out, part_name(f"{stem}+{index}", self._pid))
        buffer: list[bytes] = []
        held = 0
        spill: _Spill | None = None

        async def sink(chunk: bytes) -> None:
            nonlocal held, spill
            digest.update(chunk)
            if spill is not None:
                await spill.write(chunk)
                return
            buffer.append(chunk)
            held += len(chunk)
            if held > SPILL:  # a big file: stream the rest through aiofiles, not memory
                spill = await _Spill.open(part)
                await spill.write(b"".join(buffer))
                buffer.clear()

        try:
            if ref.url is None and ref.inline is not None:
                # Read back from the ledger, which keeps no inline bytes; a job with a poll_url
                # is polled again for them instead (see feeder), so this one has none.
                raise DownloadFailed(
                    f"{ref.key}: an inline output ({ref.inline}) is not kept in the ledger, and this"
                    " job has no poll_url to ask the provider for it again",
                    retryable=False,
                )
            if ref.url is None:
                content_type = "text/plain"
                data = (ref.text or "").encode()
                await sink(data)
                size = len(data)
            elif is_data_uri(ref.url):
                content_type, data = _decode_data_uri(ref.url, self._max_bytes)
                await sink(data)
                size = len(data)
            else:
                got = await self._api.download(
                    ref.url, sink, max_bytes=self._max_bytes, timeout=self._timeout, min_rate=self._min_rate
                )
                if got.status != 200:
                    if got.status in (403, 404, 410):
                        # Gone, or never there: what that means depends on the job's age (Collector).
                        raise DownloadFailed(
                            f"{ref.key}: HTTP {got.status} fetching output", retryable=False, gone=True
                        )
                    # A host that says when to come back (429, 503): its wait, not our guess.
                    raise DownloadFailed(
                        f"{ref.key}: HTTP {got.status} fetching output",
                        retryable=True,
                        retry_after=self._api.told_wait(got.headers) if got.status in (429, 503) else None,
                    )
                content_type, size = got.content_type, got.size
            target = self._target(stem, index, ref.key, _extension(ref.url, content_type), used)
            if spill is not None:
                await spill.close()
                await anyio.to_thread.run_sync(_commit, part, None, target)
            elif held <= INLINE_WRITE:
                # A page-cache write of a few hundred KB costs less than a trip to a thread.
                _commit(part, b"".join(buffer), target)
            else:
                await anyio.to_thread.run_sync(_commit, part, b"".join(buffer), target)
        except BaseException:
            # The part file goes first: a stop (a cancel) cuts any await here, the close too.
            with contextlib.suppress(OSError):
                os.unlink(part)
            if spill is not None:
                with anyio.CancelScope(shield=True), contextlib.suppress(OSError):
                    await spill.close()
            raise
        url = ref.url if ref.url and not is_data_uri(ref.url) else None
        return SavedOutput(ref.key, url, target, digest.hexdigest(), size)


def part_name(name: str, pid: int) -> str:
    """The hidden file an output is written to before it is renamed: ``.<name>.<pid>.part``."""
    return f".{name}.{pid}.part"


#: A :func:`part_name`; its group is the writer's pid (``outfiles.sweep_parts`` reads it).
PART_NAME = re.compile(r"\..+\.([0-9]{1,9})\.part")

#: Outputs up to this size are held in memory and written in one go (Segmind's are images).
SPILL = 8 * 1024 * 1024
#: Outputs up to this size are written from the event loop; larger ones in a worker thread.
INLINE_WRITE = 256 * 1024


class _Spill:
    """An output too big to hold: streamed to its part file through aiofiles."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._closed = False

    @classmethod
    async def open(cls, part: str) -> _Spill:
        await anyio.to_thread.run_sync(lambda: os.makedirs(os.path.dirname(part), exist_ok=True))
        return cls(await aiofiles.open(part, "wb"))

    async def write(self, data: bytes) -> None:
        await self._handle.write(data)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._handle.close()


def _commit(part: str, data: bytes | None, target: str) -> None:
    """Write ``data`` (unless already spilled) to ``part`` and rename it to ``target``, so a file
    under its final name is complete. Not fsynced: a file survives a killed process at once and
    reaches the disk with the next sync (see :func:`~batcher.outfiles.sync_outputs`)."""
    if data is not None:
        try:
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # --out does not exist yet
            os.makedirs(os.path.dirname(part), exist_ok=True)
            fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    os.replace(part, target)


def _decode_data_uri(uri: str, max_bytes: int) -> tuple[str, bytes]:
    head, _, payload = uri.partition(",")
    meta = head[5:].split(";")
    if "base64" in meta:
        # MIME's base64 (RFC 2045, which data: URIs use) breaks its lines every 76 characters.
        payload = "".join(payload.split())
    if len(payload) > max_bytes * 4 // 3 + 4:
        raise UnsafeOutputError(f"inline output is over the {max_bytes}-byte cap")
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in meta else unquote(payload).encode()
    except (binascii.Error, ValueError):
        raise UnsafeOutputError("inline output is not valid base64") from None
    return meta[0] or "text/plain", data
