"""The emulator's memory on disk (``EmulatorConfig.state_dir``), as a real provider keeps requests.

A new emulator started on the same folder knows every request an earlier one accepted, even one
killed with ``kill -9``: its jobs keep their ids, owners, draws and times, their outputs, and
their bills. Layout::

    state_dir/journal.jsonl           one record a line (below), appended and fsync'd
    state_dir/outputs/<request_id>/   rendered files, each written to a temporary name, then renamed
    state_dir/port                    the port it last listened on (:func:`remembered_port`)

Records. Times are POSIX seconds: a monotonic clock means nothing to the next process, so they are
turned back into this clock's monotonic time on load, and written on that same timeline after. A
journal whose latest time is ahead of the new clock's wall time (an emulator under ``--speed`` runs
ahead of the real time; a wall clock set back) carries on from that time, not from the clock's::

    {"kind": "job", "request_id", "workflow", "inputs", "input_hash", "occurrence", "owner",
     "fate": {"duration", "fails", "error_shape", "reason"}, "submitted", "start", "finish"}
        before the submit is answered 200: nothing acknowledged is ever missing
    {"kind": "schedule", "request_id", "fate", "start", "finish"}
        a reconfigure drew again for an unfinished job
    {"kind": "rendered", "request_id", "at", "outputs": [{"name", "content_type"}], "error"}
        once its files are in place, before any poll may report the job finished
    {"kind": "stopped", "at"}
        the emulator stopped in order: the time it had reached

Derived again on load, not stored: statuses (from the times), the bill (the prices of completed
jobs), submissions per input, and the worker pool. A job whose render is missing (the emulator
stopped mid-render, or a file is gone) is rendered again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio

from ..clock import Clock
from ..errors import ConfigError
from .catalog import lookup
from .jobs import Fate, Job, Output, RenderResult
from .journal import Journal

log = logging.getLogger("batcher.emulator")

JOURNAL_FILE = "journal.jsonl"
OUTPUTS_DIR = "outputs"
PORT_FILE = "port"

# What may become part of a path under state_dir (a hand-edited journal must not escape it).
_SAFE_ID = re.compile(r"^\w{1,64}$")
_SAFE_NAME = re.compile(r"^\w[\w.-]{0,127}$")


def remembered_port(state_dir: str | os.PathLike[str]) -> int:
    """The port an emulator on ``state_dir`` last listened on, or 0 (any free port) if none."""
    try:
        port = int((Path(state_dir) / PORT_FILE).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0
    return port if 0 < port < 65536 else 0


def remember_port(state_dir: str | os.PathLike[str], port: int) -> None:
    """Note ``port`` in ``state_dir`` for the next :func:`remembered_port` (written atomically)."""
    folder = Path(state_dir)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{PORT_FILE}.tmp"
    tmp.write_text(f"{port}\n", encoding="ascii")
    os.replace(tmp, folder / PORT_FILE)


class StateDir:
    """An open state folder: the locked journal and the output files. Use :meth:`open`."""

    def __init__(self, root: Path, journal: Journal) -> None:
        self.root = root
        self.journal = journal
        #: Records that could not be used on load (unknown workflow, missing fields...).
        self.unusable_records = 0
        # The clock, and journal time minus its monotonic time: fixed by load().
        self._clock: Clock | None = None
        self._offset: float | None = None
        self._closed = False

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> StateDir:
        """Open (creating it if need be) and lock the folder. Raises ConfigError, LedgerLockedError."""
        folder = Path(root)
        try:
            journal = Journal.open(folder / JOURNAL_FILE)
        except OSError as exc:
            raise ConfigError(
                f"cannot use {folder}: {exc.strerror or exc}",
                key="emulator.state_dir",
                fix="give a folder this user can create and write to",
            ) from None
        if journal.repaired_bytes:
            log.warning(
                "emulator state %s: cut a torn last journal line (%d bytes)", folder, journal.repaired_bytes
            )
        return cls(folder, journal)

    def close(self) -> None:
        """Note the time reached, sync and release the folder (safe to call twice)."""
        if self._clock is not None and not self._closed and self.journal.failed is None:
            # Where this emulator's time had got to: the next one carries on from at least here.
            with contextlib.suppress(OSError):
                self.journal.append({"kind": "stopped", "at": self._journal_time(self._clock.monotonic())})
        self._closed = True
        self.journal.close()

    # --- time -----------------------------------------------------------------------------

    def _journal_time(self, monotonic: float) -> float:
        """A time of this emulator's clock (monotonic) as the journal writes it."""
        assert self._offset is not None, "load() first"
        return monotonic + self._offset

    # --- loading --------------------------------------------------------------------------

    def load(self, clock: Clock) -> list[Job]:
        """Every job the journal knows, with its times on ``clock``'s monotonic timeline.

        The journal's time carries on from where it stopped: if its last record is later than
        ``clock``'s wall time (an earlier emulator ran faster, under ``--speed``, or this
        machine's clock was set back since), the journal's time is taken to have stood still
        while no emulator ran, rather than jumping back. Read against a clock behind it, a job
        answered COMPLETED before the restart was QUEUED again, its files 404, for as long as
        the earlier clock had been ahead.
        """
        jobs: dict[str, Job] = {}
        renders: dict[str, dict[str, Any]] = {}
        # The latest time the journal saw pass: a submit, a render, a stop.
        latest = -math.inf
        for record in self.journal.records():
            try:
                kind = record["kind"]
                if kind == "job":
                    job = _job_from(record)
                    jobs[job.request_id] = job
                    latest = max(latest, job.submitted_at)
                elif kind == "schedule":
                    job = jobs[record["request_id"]]
                    job.fate = _fate_from(record["fate"])
                    job.start_at = _finite(record["start"])
                    job.finish_at = _finite(record["finish"])
                elif kind == "rendered":
                    renders[str(record["request_id"])] = record
                elif kind == "stopped":
                    latest = max(latest, _finite(record["at"]))
                else:
                    raise ValueError(kind)
            except (KeyError, TypeError, ValueError, AttributeError):
                self.unusable_records += 1
        rendered_at: dict[str, float] = {}
        for request_id, record in renders.items():
            rendered = jobs.get(request_id)
            try:
                at = _finite(record["at"])
                latest = max(latest, at)
                result = None if rendered is None else self._render_from(request_id, record)
            except (KeyError, TypeError, ValueError, AttributeError):
                self.unusable_records += 1
                continue
            if rendered is None or result is None:
                continue  # a render with no job, or whose files are gone: render again
            rendered.render, rendered_at[request_id] = result, at
            rendered.inputs = {}  # never rendered again: keep memory to what is still needed
        now_wall, now = clock.wall(), clock.monotonic()
        if latest > now_wall:
            log.info(
                "emulator state %s: its journal is %.0f s ahead of this clock; its time carries on"
                " from where it stopped",
                self.root,
                latest - now_wall,
            )
            now_wall = latest
        offset = now_wall - now
        self._clock, self._offset = clock, offset
        for job in jobs.values():
            job.submitted_at -= offset
            job.start_at -= offset
            job.finish_at -= offset
            when = rendered_at.get(job.request_id)
            if when is not None:
                job.rendered_at = when - offset
        skipped = self.journal.skipped_lines + self.unusable_records
        if skipped:
            log.warning("emulator state %s: skipped %d unusable journal lines", self.root, skipped)
        return list(jobs.values())

    def _render_from(self, request_id: str, record: dict[str, Any]) -> RenderResult | None:
        """The render a record describes, or ``None`` when a file of it is missing (render again)."""
        error = record.get("error")
        outputs = []
        for entry in record.get("outputs") or ():
            name = str(entry["name"])
            if not _SAFE_NAME.match(name):
                return None
            path = self.root / OUTPUTS_DIR / request_id / name
            if not path.is_file():
                return None
            outputs.append(Output(name, str(entry["content_type"]), path=path))
        return RenderResult(outputs=tuple(outputs), error=None if error is None else str(error))

    # --- writing --------------------------------------------------------------------------

    async def record_job(self, job: Job) -> None:
        """Write an accepted job through to disk; returns once it is durable."""
        offset = self._journal_time(0.0)
        self.journal.append(
            {
                "kind": "job",
                "request_id": job.request_id,
                "workflow": job.workflow.workflow_id,
                "inputs": job.inputs,
                "input_hash": job.input_hash,
                "occurrence": job.occurrence,
                "owner": job.owner,
                "fate": _fate_record(job.fate),
                "submitted": job.submitted_at + offset,
                "start": job.start_at + offset,
                "finish": job.finish_at + offset,
            }
        )
        await self.journal.sync()

    def record_schedules(self, jobs: Iterable[Job]) -> None:
        """Write new draws and times of unfinished jobs (after a reconfigure), durably, now."""
        offset = self._journal_time(0.0)
        for job in jobs:
            self.journal.append(
                {
                    "kind": "schedule",
                    "request_id": job.request_id,
                    "fate": _fate_record(job.fate),
                    "start": job.start_at + offset,
                    "finish": job.finish_at + offset,
                }
            )
        self.journal.sync_now()

    async def record_render(self, job: Job, result: RenderResult, now: float) -> RenderResult:
        """Put a render's files under ``outputs/`` and journal it; the result, backed by those files.

        ``now`` is the render's time on the clock :meth:`load` was given. Files first, then the
        journal line: a crash in between leaves a job that is simply rendered again.
        """
        folder = self.root / OUTPUTS_DIR / job.request_id
        kept = await anyio.to_thread.run_sync(_write_files, folder, result.outputs)
        self.journal.append(
            {
                "kind": "rendered",
                "request_id": job.request_id,
                "at": self._journal_time(now),
                "outputs": [{"name": out.name, "content_type": out.content_type} for out in kept],
                "error": result.error,
            }
        )
        await self.journal.sync()
        return RenderResult(outputs=kept, error=result.error)


def _write_files(folder: Path, outputs: Iterable[Output]) -> tuple[Output, ...]:
    """Write each output to ``folder`` atomically (tmp, fsync, rename); file-backed Outputs."""
    kept = []
    for out in outputs:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / out.name
        tmp = folder / f".{out.name}.tmp"
        with tmp.open("wb") as handle:
            handle.write(out.data if out.path is None else out.path.read_bytes())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        kept.append(Output(out.name, out.content_type, path=target))
    return tuple(kept)


def _fate_record(fate: Fate) -> dict[str, Any]:
    return {
        "duration": fate.duration,
        "fails": fate.fails,
        "error_shape": fate.error_shape,
        "reason": fate.reason,
    }


def _fate_from(data: dict[str, Any]) -> Fate:
    return Fate(
        duration=float(data["duration"]),
        fails=bool(data["fails"]),
        error_shape=str(data["error_shape"]),
        reason=str(data["reason"]),
    )


def _finite(value: Any) -> float:
    """A journal time: a finite number (raises ValueError or TypeError otherwise)."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(value)
    return number


def _job_from(record: dict[str, Any]) -> Job:
    """A job from its ``job`` record, its times as written (journal time); raises ValueError (or
    KeyError, TypeError) if unusable."""
    request_id = str(record["request_id"])
    workflow = lookup(str(record["workflow"]))
    inputs = record["inputs"]
    if not _SAFE_ID.match(request_id) or workflow is None or not isinstance(inputs, dict):
        raise ValueError(request_id)
    return Job(
        request_id=request_id,
        workflow=workflow,
        inputs={str(k): str(v) for k, v in inputs.items()},
        input_hash=str(record["input_hash"]),
        occurrence=int(record["occurrence"]),
        owner=str(record["owner"]),
        fate=_fate_from(record["fate"]),
        submitted_at=_finite(record["submitted"]),
        start_at=_finite(record["start"]),
        finish_at=_finite(record["finish"]),
    )
