"""POSTs in a row without a clear answer (a provider that accepts jobs and answers 502): the run
sends one at a time, then stops, instead of paying for every row up to five times."""

from __future__ import annotations

import itertools
import random
from datetime import datetime
from pathlib import Path

import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.outage import OPEN_AFTER, SubmitCircuit
from batcher.summary import render_summary
from batcher.workflows import WorkflowRegistry

from .support import (
    SPEED,
    last_status,
    ledger_lines,
    on_log,
    run,
    served,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}


# --- the pure policy ---------------------------------------------------------------------------


def test_the_circuit_opens_after_answerless_posts_in_a_row_and_a_clear_answer_closes_it() -> None:
    circuit = SubmitCircuit(base=1.0, cap=8.0, probes=4, rng=random.Random(0))
    for _ in range(OPEN_AFTER - 1):
        assert not circuit.no_answer(now=10.0)
        assert circuit.allows(10.0, submitting=5)
    circuit.answered()  # one clear answer between: the count starts again
    assert [circuit.no_answer(now=10.0) for _ in range(OPEN_AFTER)] == [False] * (OPEN_AFTER - 1) + [True]
    assert circuit.open and not circuit.allows(10.0, submitting=0)  # the probe waits its backoff
    assert 10.5 <= circuit.next_probe <= 11.0
    assert circuit.allows(circuit.next_probe, submitting=0)
    assert not circuit.allows(circuit.next_probe, submitting=1)  # one at a time
    circuit.answered()
    assert not circuit.open and circuit.allows(10.0, submitting=7)


def test_probes_are_spaced_by_a_doubling_backoff_up_to_the_cap_and_then_the_run_gives_up() -> None:
    circuit = SubmitCircuit(base=1.0, cap=8.0, probes=5, rng=random.Random(1))
    now = 0.0
    for _ in range(OPEN_AFTER):
        circuit.no_answer(now)
    gaps = []
    while not circuit.given_up:
        gaps.append(circuit.next_probe - now)
        now = circuit.next_probe
        circuit.no_answer(now)
    assert len(gaps) == 5
    ceilings = [1.0, 2.0, 4.0, 8.0, 8.0]
    assert all(c / 2 <= gap <= c for gap, c in zip(gaps, ceilings, strict=True)), gaps


# --- the run -----------------------------------------------------------------------------------


async def test_a_provider_that_bills_and_answers_502_is_paid_a_bounded_number_of_times(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Every POST is accepted (billed) and answered 502. Before, each of the 20 rows was POSTed
    up to five times, 4 at a time: 100 jobs billed for nothing. Now, after 3 answerless POSTs in a
    row, one goes at a time; after 10 more, the run stops submitting (exit 1, the summary says
    why), and the next run, with the provider well again, does the rest."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(20))
    config = EmulatorConfig(**FAST, lost_rate=1.0)  # type: ignore[arg-type]
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=4)
        first = await run(settings, [manifest], registry, clock)
        billed = emu.stats()["submissions"]
        emu.state.reconfigure(lost_rate=0.0)
        second = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    limit = OPEN_AFTER + 2 * settings.retry.max_attempts
    assert (limit, limit + settings.concurrency) == (13, 17)  # the README's numbers, which users read
    assert limit <= billed <= limit + settings.concurrency, billed
    assert first.exit_code is ExitCode.FAILED
    assert first.stats.stop_reason is not None
    assert f"no clear answer to {limit} POSTs in a row" in first.stats.stop_reason
    assert "no more are sent this run" in render_summary(first)
    # Each row is counted once as left for the next run: the retries held back by the open
    # circuit when it gave up too (they were dropped from the count, or counted in flight).
    assert (first.stats.left, first.stats.in_flight, first.stats.resends_waiting) == (20, 0, 0)
    assert second.exit_code is ExitCode.OK and second.stats.outcomes["completed"] == 20
    assert set(last_status(tmp_path / "ledger.jsonl").values()) == {"completed"}
    assert stats["submissions"] == billed + 20  # the rows never sent, and the unknown ones again


async def test_when_the_provider_answers_again_the_run_goes_back_to_full_speed_and_finishes(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The outage ends while the run sends one POST at a time: the first clear answer lets the
    others go again, and every row completes in this run."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(12))
    config = EmulatorConfig(**FAST, lost_rate=1.0)  # type: ignore[arg-type]
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=4)
        with on_log("POSTs in a row", lambda: emu.state.reconfigure(lost_rate=0.0)) as seen:
            result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert seen and "one goes at a time until it answers" in seen[0]
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 12
    assert result.stats.stop_reason is None
    assert stats["submissions"] <= 12 + settings.concurrency  # the few answerless ones, sent again


async def test_after_the_outage_several_posts_are_on_the_wire_at_once_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The first accepted POST closes the circuit: the POSTs after it go up to the concurrency
    limit at once, not one at a time for the rest of the run. Each POST takes 2 s once the
    outage is over, so in the ledger the ones sent together overlap (``submitting`` to
    ``submitted``); one at a time, none would."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(12))
    config = EmulatorConfig(**FAST, lost_rate=1.0)  # type: ignore[arg-type]
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=4)
        recover = lambda: emu.state.reconfigure(lost_rate=0.0, slow_rate=1.0, slow_seconds=2.0)  # noqa: E731
        with on_log("POSTs in a row", recover) as seen:
            result = await run(settings, [manifest], registry, clock)
    assert seen and result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 12
    sent: dict[str, datetime] = {}
    accepted: list[tuple[datetime, datetime]] = []
    for line in ledger_lines(tmp_path / "ledger.jsonl"):
        ts = datetime.fromisoformat(line["ts"])
        if line["status"] == "submitting":
            sent[line["job_id"]] = ts
        elif line["status"] == "submitted":
            accepted.append((sent.pop(line["job_id"]), ts))
    overlapping = [(a, b) for a, b in itertools.combinations(accepted, 2) if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, accepted


async def test_refusals_between_answerless_posts_keep_the_circuit_closed(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A refusal is a clear answer: the provider is up and said no. POSTs answered 502 and 400
    in turn are never 3 answerless in a row, so the run sends every row at full pace and never
    stops for an outage. Had refusals not counted as answers, the 502s would add up across them:
    the run would go one POST at a time and stop submitting after 13, leaving rows unsent."""
    posts = itertools.count(1)

    async def submit(request: web.Request) -> web.Response:
        if next(posts) % 2:
            return web.Response(status=502, text="<html>502 Bad Gateway</html>", content_type="text/html")
        return web.json_response({"error": "invalid input_image"}, status=400)

    app = web.Application()
    app.router.add_post("/workflows/{wf}", submit)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(30))
    async with served(app) as base:
        settings = settings_for(
            base, tmp_path, concurrency=1, **{"retry.base_delay": 0.01, "retry.max_delay": 0.05}
        )
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
    answerless = result.stats.unknown_outcomes
    assert answerless >= OPEN_AFTER + 10, answerless  # enough to give up, had they added up
    assert result.stats.stop_reason is None
    assert set(last_status(tmp_path / "ledger.jsonl").values()) == {"failed"}
    assert len(last_status(tmp_path / "ledger.jsonl")) == 30


async def test_once_posts_go_unanswered_only_one_is_on_the_wire_at_a_time(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Every POST is billed and answered 502 after 2 s. Once three in a row went unanswered,
    a POST goes only when none is on the wire (and its backoff is past): in the ledger, no
    ``submitting`` line comes while another POST still waits for its answer. Sent as slots
    freed instead, four were on the wire at once (16 jobs billed for nothing, not 13)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(20))
    config = EmulatorConfig(**FAST, lost_rate=1.0, slow_rate=1.0, slow_seconds=2.0)  # type: ignore[arg-type]
    async with run_emulator(config, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path, concurrency=4), [manifest], registry, clock)
    unanswered, on_the_wire, most = 0, 0, 0
    for line in ledger_lines(tmp_path / "ledger.jsonl"):
        if line["status"] == "submitting":
            on_the_wire += 1
            if unanswered >= OPEN_AFTER:
                most = max(most, on_the_wire)
        elif line["status"] == "submit_unknown":
            on_the_wire -= 1
            unanswered += 1
    assert result.exit_code is ExitCode.FAILED and unanswered == result.stats.unknown_outcomes > 0
    assert most == 1


@pytest.mark.parametrize("concurrency", [2, 4])
async def test_retries_held_back_by_an_outage_still_keep_to_the_budget(
    tmp_path: Path, registry: WorkflowRegistry, concurrency: int
) -> None:
    """Every POST is billed and answered 502, under ``--budget`` $1.00 (nine sketches at
    $0.1006). Once three went unanswered, retries are held back while one POST at a time goes.
    Each is checked against the budget again when its turn comes: it was allowed when it was
    held back, but the POSTs sent meanwhile may have been billed too. The provider bills nine
    POSTs, not one more."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(10))
    config = EmulatorConfig(**FAST, lost_rate=1.0)  # type: ignore[arg-type]
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=concurrency, **{"limits.budget_usd": 1.0})
        result = await run(settings, [manifest], registry, clock)
        billed = emu.stats()["submissions"]
    assert billed == 9, billed
    assert "budget" in (result.stats.stop_reason or ""), result.stats.stop_reason
