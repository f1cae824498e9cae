"""stdout and stderr as cron, systemd, Docker, ssh and pipes hand them to a run.

A run's log and summary are for the operator; its work is in the ledger. So nothing that
happens to those two streams may stop a run or change its exit code:

- **Closed** by the caller (``2>&-``, ``>&-``, ``<&-``): /dev/null takes the descriptor, so the
  streams exist and no file the run opens later (a socket, an output) is given number 1 or 2.
- **Gone** mid-run: a pipe whose reader exited (``| head``, a log shipper that died: EPIPE),
  a terminal that hung up (an ssh session closed: EIO), a full disk under ``>> cron.log``. The
  first write that fails points the descriptor at /dev/null and the rest of the run writes
  nothing there, without an error. (Raised, the error ended the run at its next progress line,
  cancelling POSTs on the wire; caught, the interpreter's own flush at exit still failed, and
  turned any exit code into 120.) :func:`lost` says whether, and why, for the one line that
  tells the operator where to look instead.
- **Not UTF-8** (``PYTHONIOENCODING=ascii``, a Latin-1 locale), or a file name that is not
  UTF-8: what a stream cannot encode is written escaped (``\\xe4``), as Python already does on
  stderr; it was a UnicodeEncodeError traceback on stdout. JSON written there is escaped by
  JSON's own rules instead (:func:`ascii_json`), so it stays JSON.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

from .ledger import utc_iso


class _Guarded:
    """A text stream whose writes never raise: the first OSError sends the rest to /dev/null."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        #: The error the first failed write or flush met (None while the stream works).
        self.failure: OSError | None = None

    def write(self, text: str) -> int:
        if self.failure is None:
            try:
                return self._inner.write(text)
            except OSError as exc:
                self._gone(exc)
        return len(text)

    def flush(self) -> None:
        if self.failure is None:
            try:
                self._inner.flush()
            except OSError as exc:
                self._gone(exc)

    def _gone(self, exc: OSError) -> None:
        self.failure = exc
        # What is still in the buffer drains into /dev/null, here and at the interpreter's exit.
        with contextlib.suppress(OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, self._inner.fileno())
            finally:
                os.close(null)
            self._inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _reopen(fd: int) -> None:
    """Put /dev/null on ``fd`` if the caller closed it."""
    try:
        os.fstat(fd)
    except OSError:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)


def guard_standard_streams() -> None:
    """Make ``sys.stdout`` and ``sys.stderr`` safe for a run (see the module's docstring).
    Called once, first thing, by the ``batcher`` command."""
    for fd in (0, 1, 2):
        _reopen(fd)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        stream = getattr(sys, name)
        if isinstance(stream, _Guarded):
            continue
        if stream is None:  # closed when the interpreter started: /dev/null is there now
            stream = open(fd, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
        setattr(sys, name, _Guarded(stream))


def lost(stream: TextIO) -> OSError | None:
    """Why ``stream`` stopped taking writes (after a flush, so a buffered line is counted), or
    None if it did not (or is not guarded)."""
    stream.flush()
    failure: OSError | None = getattr(stream, "failure", None)
    return failure


def ascii_json(stream: TextIO | None) -> bool:
    """Whether JSON written to ``stream`` must escape non-ASCII text (``\\u00e4``): it cannot
    encode it (backslashreplace would write ``\\xe4``, which is not JSON)."""
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    return encoding != "utf8"


def event_line(
    message: str,
    *,
    level: str,
    created: float,
    stream: TextIO | None,
    event: str = "log",
    fields: Mapping[str, Any] | None = None,
) -> str:
    """One ``--log-format json`` event, one line whatever ``message`` holds (its line breaks
    are JSON escapes): ``ts``, ``level``, ``event`` and ``message`` first, then ``fields``."""
    data = {"ts": utc_iso(created), "level": level, "event": event, "message": message, **(fields or {})}
    return json.dumps(data, ensure_ascii=ascii_json(stream))


def stderr_event(
    message: str, *, level: str, event: str = "log", fields: Mapping[str, Any] | None = None
) -> str:
    """An :func:`event_line` of now, for stderr: what the command itself says there (a usage
    mistake, why a run stopped, its summary), not through the log."""
    return event_line(
        message, level=level, created=time.time(), stream=sys.stderr, event=event, fields=fields
    )
