"""The scheduler's dispatch order against the emulator on real sockets: which request a token
goes to, a due poll or a new submission, seen in the order of the ledger's lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import SPEED, ledger_lines, run, settings_for, sketch_rows, write_jsonl

pytestmark = pytest.mark.anyio


def _order(path: Path) -> list[tuple[str, str]]:
    """(status, job id) of the ledger's ``submitting`` and ``generated`` lines, in order."""
    lines = ledger_lines(path)
    return [(r["status"], r["job_id"]) for r in lines if r["status"] in ("submitting", "generated")]


async def _run_in_order(
    tmp: Path,
    registry: WorkflowRegistry,
    *,
    rows: int,
    seconds: float,
    concurrency: int,
    requests_per_minute: float,
    first_poll: float,
    interval: float,
) -> list[tuple[str, str]]:
    """Run ``rows`` jobs of exactly ``seconds`` on the emulator under fixed polling, to the end;
    the ledger's order of ``submitting`` and ``generated`` lines."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp / "m.jsonl", sketch_rows(rows))
    config = EmulatorConfig(render="placeholder", duration_median=seconds, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        changes = {
            "rate.requests_per_minute": requests_per_minute,
            "poll.policy": "fixed",
            "poll.interval": interval,
            "poll.first_delay": first_poll,
        }
        settings = settings_for(emu.base_url, tmp, concurrency=concurrency, **changes)
        result = await run(settings, [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == rows
    return _order(tmp / "ledger.jsonl")


async def test_when_slots_are_scarce_a_freed_slot_is_refilled_before_due_polls(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Two slots of 20 s jobs, a request every 2 s, and once a job's first poll is past, a poll
    of the job still running always due: if due polls went first, a slot freed by one job
    stayed empty until the other job was done too, and a run bound by its slots took longer
    than it had to."""
    order = await _run_in_order(
        tmp_path,
        registry,
        rows=8,
        seconds=20.0,
        concurrency=2,
        requests_per_minute=30.0,
        first_poll=6.0,
        interval=0.1,
    )
    in_flight = 0
    for i, (status, _) in enumerate(order):
        if status == "submitting":
            # After the first, each row goes into a slot freed while the other one is busy.
            assert in_flight == (0 if i == 0 else 1), order
            in_flight += 1
        else:
            in_flight -= 1
            if any(s == "submitting" for s, _ in order[i + 1 :]):
                # Rows still queued: the freed slot is refilled before the other job is noticed.
                assert order[i + 1][0] == "submitting", order


async def test_when_requests_are_scarce_due_polls_go_before_new_submissions(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Slots to spare, a request a second: a job done is noticed at its next due poll, not after
    every row has been submitted (the outputs of the first jobs came only when all were sent)."""
    order = await _run_in_order(
        tmp_path,
        registry,
        rows=10,
        seconds=2.0,
        concurrency=20,
        requests_per_minute=60.0,
        first_poll=2.5,
        interval=1.0,
    )
    last_submitting = max(i for i, (status, _) in enumerate(order) if status == "submitting")
    assert order.index(("generated", order[0][1])) < last_submitting, order


async def test_when_the_budget_binds_jobs_are_polled_about_once_each(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A slot for every row, 120 requests a minute, 4 s jobs, adaptive polls: submissions wait
    for the budget, so each poll is a submission made later. The scheduler tells the poll policy
    so (budget pressure), and jobs are polled about once each (1.0-1.1 today). Told nothing,
    the policy polled as if requests were to spare: 2.5 polls a job, and the run took 1.6x as
    long."""
    rows = 40
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(rows))
    config = EmulatorConfig(render="placeholder", duration_median=4.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        changes = {"rate.requests_per_minute": 120.0, "poll.policy": "adaptive", "poll.first_delay": 4.0}
        settings = settings_for(emu.base_url, tmp_path, concurrency=rows, **changes)
        result = await run(settings, [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == rows
    assert result.stats.requests["poll"] <= 1.5 * rows, result.stats.requests
