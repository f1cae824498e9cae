"""The emulator's memory on disk (``EmulatorConfig.state_dir``), as a real provider keeps requests.

A new emulator started on the same folder knows every request an earlier one accepted, even one
killed with ``kill -9``: its jobs keep their ids, owners, draws and times, their outputs, and
their bills. Layout::

    state_dir/journal.jsonl           one record a line (below), appended and fsync'd
    state_dir/outputs/<request_id>/   rendered files, each written to a temporary name, then renamed
    state_dir/port                    the port it last listened on (:func:`remembered_port`)

Records. Times are POSIX seconds (``clock.wall()``): a monotonic clock means nothing to the next
process, so they are turned back into this clock's monotonic time on load::

    {"kind": "job", "request_id", "workflow", "inputs", "input_hash", "occurrence", "owner",
     "fate": {"duration", "fails", "error_shape", "reason"}, "submitted", "start", "finish"}
        before the submit is answered 200: nothing acknowledged is ever missing
    {"kind": "schedule", "request_id", "fate", "start", "finish"}
        a reconfigure drew again for an unfinished job
    {"kind": "rendered", "request_id", "at", "outputs": [{"name", "content_type"}], "error"}
        once its files are in place, before any poll may report the job finished

Derived again on load, not stored: statuses (from the times), the bill (the prices of completed
jobs), submissions per input, and the worker pool. A job whose render is missing (the emulator
stopped mid-render, or a file is gone) is rendered again.
"""

from __future__ import annotations

import logging
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
        """Sync and release the folder (safe to call twice)."""
        self.journal.close()

    # --- loading --------------------------------------------------------------------------

    def load(self, clock: Clock) -> list[Job]:
        """Every job the journal knows, with its times on ``clock``'s monotonic timeline."""
        offset = clock.wall() - clock.monotonic()
        jobs: dict[str, Job] = {}
        renders: dict[str, dict[str, Any]] = {}
        for record in self.journal.records():
            try:
                kind = record["kind"]
                if kind == "job":
                    job = _job_from(record, offset)
                    jobs[job.request_id] = job
                elif kind == "schedule":
                    job = jobs[record["request_id"]]
                    job.fate = _fate_from(record["fate"])
                    job.start_at = float(record["start"]) - offset
                    job.finish_at = float(record["finish"]) - offset
                elif kind == "rendered":
                    renders[str(record["request_id"])] = record
                else:
                    raise ValueError(kind)
            except (KeyError, TypeError, ValueError, AttributeError):
                self.unusable_records += 1
        for request_id, record in renders.items():
            rendered = jobs.get(request_id)
            try:
                result = None if rendered is None else self._render_from(request_id, record)
                at = float(record["at"]) - offset
            except (KeyError, TypeError, ValueError, AttributeError):
                self.unusable_records += 1
                continue
            if rendered is None or result is None:
                continue  # a render with no job, or whose files are gone: render again
            rendered.render, rendered.rendered_at = result, at
            rendered.inputs = {}  # never rendered again: keep memory to what is still needed
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

    async def record_job(self, job: Job, clock: Clock) -> None:
        """Write an accepted job through to disk; returns once it is durable."""
        offset = clock.wall() - clock.monotonic()
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

    def record_schedules(self, jobs: Iterable[Job], clock: Clock) -> None:
        """Write new draws and times of unfinished jobs (after a reconfigure), durably, now."""
        offset = clock.wall() - clock.monotonic()
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

    async def record_render(self, job: Job, result: RenderResult, now: float, clock: Clock) -> RenderResult:
        """Put a render's files under ``outputs/`` and journal it; the result, backed by those files.

        ``now`` is the render's time on ``clock``. Files first, then the journal line: a crash in
        between leaves a job that is simply rendered again.
        """
        folder = self.root / OUTPUTS_DIR / job.request_id
        kept = await anyio.to_thread.run_sync(_write_files, folder, result.outputs)
        self.journal.append(
            {
                "kind": "rendered",
                "request_id": job.request_id,
                "at": now + clock.wall() - clock.monotonic(),
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


def _job_from(record: dict[str, Any], offset: float) -> Job:
    """A job from its ``job`` record; raises ValueError (or KeyError, TypeError) if unusable."""
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
        submitted_at=float(record["submitted"]) - offset,
        start_at=float(record["start"]) - offset,
        finish_at=float(record["finish"]) - offset,
    )
