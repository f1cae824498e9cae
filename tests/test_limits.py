"""Operator limits against the emulator: --budget, --max-runtime, --halt-on-failure-rate, --dry-run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.config import Settings
from batcher.dryrun import DryRunReport, dry_run, render_dry_run
from batcher.durations import DurationModel
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.guards import FailureRateGuard, WindowGuard
from batcher.result import RunResult
from batcher.stats import RunStats
from batcher.summary import render_summary
from batcher.workflows import WorkflowRegistry

from .support import (
    SPEED,
    blog_rows,
    last_status,
    ledger_lines,
    on_log,
    png_bytes,
    run,
    served,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

SKETCH = 0.1006
BLOG = 0.4363


async def test_a_budget_is_never_exceeded_counting_in_flight_jobs_at_full_price(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(10) + blog_rows(4))
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=3.0), clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=8, **{"limits.budget_usd": 1.0})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.stats.spend_usd <= 1.0 and result.stats.committed_usd <= 1.0
    assert stats["submissions"] == 9  # 9 sketches = $0.905; a 10th would be $1.006
    assert result.stats.outcomes["completed"] == 9 and result.stats.left == 5
    assert "budget" in (result.stats.stop_reason or "")
    assert result.exit_code is ExitCode.FAILED


async def test_a_budget_counts_unknown_outcomes_as_spent(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(10))
    config = EmulatorConfig(render="placeholder", duration_median=1.0, lost_rate=0.5, seed=4)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"limits.budget_usd": 0.5})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    # Every POST the provider may have billed (lost responses included) counts against the budget.
    assert stats["submissions"] * SKETCH <= 0.5 + 1e-9
    assert result.stats.committed_usd <= 0.5 + 1e-9


#: Every POST accepted (and billed) but answered 502: its outcome unknown, so a retry may bill it twice.
EVERY_POST_LOST = EmulatorConfig(render="placeholder", duration_median=1.0, lost_rate=1.0)


async def _run_where_every_post_is_lost(
    tmp_path: Path, registry: WorkflowRegistry, rows: int, changes: dict[str, object]
) -> tuple[int, RunResult]:
    """Run ``rows`` sketch rows, with settings ``changes``, on :data:`EVERY_POST_LOST`: the POSTs
    the provider received, and the run's result."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(rows))
    async with run_emulator(EVERY_POST_LOST, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path, **changes), [manifest], registry, clock)
        return emu.stats()["submissions"], result


async def test_a_post_to_send_again_is_not_sent_when_the_budget_cannot_cover_it_being_billed_twice(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A POST answered 502 may have been billed: sending it again may bill it twice. With a
    budget for one job, the one row is POSTed once, and its retry is not sent (the job is left
    for the next run, as one of unknown outcome). Sent unchecked, it was POSTed at every try:
    five POSTs, possibly billed on a $0.15 budget."""
    posts, result = await _run_where_every_post_is_lost(tmp_path, registry, 1, {"limits.budget_usd": 0.15})
    assert posts == 1 and result.stats.committed_usd <= 0.15
    assert "budget" in (result.stats.stop_reason or "") and result.exit_code is ExitCode.FAILED


async def test_retries_held_back_by_an_open_circuit_are_checked_against_the_budget_when_they_go(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Four POSTs answered 502 (each may be billed) open the circuit: their retries wait and go
    one at a time, each POST's last try. Each is checked against the budget when it goes, not
    only when it came due (when all four fitted): with room for five jobs, the first probe takes
    the last of it and the other three are not sent. Checked only when they came due, they went
    until the circuit gave up: seven POSTs, $0.70 possibly billed on a $0.55 budget.

    The backoffs (4 s base) are long next to the spread of the four answers, so the seeded
    draws decide: every retry comes due after the circuit opened and before its first probe."""
    changes = {
        "limits.budget_usd": 0.55,
        "retry.max_attempts": 2,
        "retry.base_delay": 4.0,
        "retry.max_delay": 64.0,
    }
    posts, result = await _run_where_every_post_is_lost(tmp_path, registry, 4, changes)
    assert posts == 5 and result.stats.committed_usd <= 0.55
    assert "budget" in (result.stats.stop_reason or "") and result.exit_code is ExitCode.FAILED


async def test_max_runtime_stops_submitting_in_time_for_in_flight_jobs_to_finish(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(40))
    config = EmulatorConfig(render="placeholder", duration_median=10.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=4, **{"limits.max_runtime": 60.0})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    # Every job that was started also finished inside the window; the rest wait for next time.
    assert result.stats.outcomes["completed"] == stats["submissions"] > 0
    assert result.stats.in_flight == 0 and result.stats.left == 40 - stats["submissions"]
    assert "max runtime" in (result.stats.stop_reason or "")
    assert result.seconds <= 60.0 + 5.0
    assert result.exit_code is ExitCode.FAILED


async def test_max_runtime_ends_the_run_at_the_deadline_and_saves_in_flight_jobs(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"limits.max_runtime": 30.0})
        result = await run(settings, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 3
    assert result.stats.in_flight == 3 and result.exit_code is ExitCode.FAILED


async def test_the_first_reason_to_stop_submitting_is_the_one_reported(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The budget stops submissions; later the deadline ends the run with jobs in flight. The
    summary's "Stopped submitting" must still name the budget, which is what left the last row
    unsent: naming the deadline sent the user to raise --max-runtime, which sends nothing more."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        changes = {"limits.max_runtime": 30.0, "limits.budget_usd": 0.25}
        result = await run(settings_for(emu.base_url, tmp_path, **changes), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2  # a third sketch would cost $0.3018
    assert result.stats.in_flight == 2 and result.stats.left == 1
    reason = result.stats.stop_reason or ""
    assert "budget" in reason and "max runtime" not in reason, reason


async def test_max_runtime_cutting_a_download_short_is_not_a_success(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A job the provider finished whose output was still downloading at the deadline: the run
    must not exit 0 or say there was nothing to do; the next run saves it without a new POST."""
    release, fetching, posts = anyio.Event(), anyio.Event(), []

    async def submit(request: web.Request) -> web.Response:
        posts.append(1)
        url = f"{request.url.origin()}/workflows/request/{'a' * 32}"
        return web.json_response({"request_id": "a" * 32, "poll_url": url, "status": "QUEUED"})

    async def poll(request: web.Request) -> web.Response:
        out = [{"keyname": "image", "value": {"data": f"{request.url.origin()}/out/a.png", "type": "image"}}]
        return web.json_response({"status": "COMPLETED", "output": json.dumps(out)})

    async def output(request: web.Request) -> web.Response:
        fetching.set()
        await release.wait()  # the CDN is slow: the deadline comes first
        return web.Response(body=b"\x89PNG fake", content_type="image/png")

    app = web.Application()
    app.router.add_post("/workflows/{wf}", submit)
    app.router.add_get("/workflows/request/{rid}", poll)
    app.router.add_get("/out/{name}", output)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with served(app) as base:
        try:
            settings = settings_for(base, tmp_path, **{"limits.max_runtime": 30.0})
            first = await run(settings, [manifest], registry, ScaledClock(SPEED))
            assert fetching.is_set() and last_status(tmp_path / "ledger.jsonl") == {
                "sketch-0000": "generated"
            }
            release.set()
            second = await run(settings_for(base, tmp_path), [manifest], registry, ScaledClock(SPEED))
        finally:
            release.set()  # before the server closes: it waits for the held answer to end
    assert first.exit_code is ExitCode.FAILED
    assert "1 not yet downloaded" in render_summary(first)
    assert "Nothing to do" not in render_summary(first)
    assert second.exit_code is ExitCode.OK and second.stats.outcomes == {"completed": 1}
    assert len(posts) == 1


async def test_a_post_cut_off_by_the_deadline_is_an_unknown_outcome_not_a_job_in_flight(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A POST still unanswered when the run stops has no poll_url: the next run cannot re-attach
    it, it sends it again. The summary and the ledger must say so, not "still in flight"."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = EmulatorConfig(render="placeholder", duration_median=1.0, slow_rate=1.0, slow_seconds=3600.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"limits.max_runtime": 30.0})
        first = await run(settings, [manifest], registry, clock)
        emu.state.reconfigure(slow_rate=0.0)
        second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    text = render_summary(first)
    assert first.exit_code is ExitCode.FAILED and first.stats.in_flight == 0
    assert "1 POST cut off by the stop (outcome unknown)" in text and "in flight" not in text
    assert first.stats.unknown_outcomes == 1
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert second.stats.resubmitted_unknown == 1 and second.exit_code is ExitCode.OK


async def test_a_high_failure_rate_halts_submissions(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(40))
    async with run_emulator(EmulatorConfig(render="placeholder", fail_rate=1.0), clock=clock) as emu:
        settings = settings_for(
            emu.base_url,
            tmp_path,
            concurrency=2,
            **{"limits.halt_on_failure_rate": 0.5, "limits.halt_min_finished": 4},
        )
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert "failure rate" in (result.stats.stop_reason or "")
    assert stats["submissions"] < 10 and result.stats.left >= 30
    assert result.exit_code is ExitCode.FAILED


def test_dry_run_counts_jobs_and_cost_and_sends_nothing(tmp_path: Path, registry: WorkflowRegistry) -> None:
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            *sketch_rows(3),
            *blog_rows(2),
            {"id": "x", "workflow": "sketch", "input": {"input_image": "ftp://x"}},
        ],
    )
    settings = Settings()
    report = dry_run(settings_for("http://127.0.0.1:9", tmp_path), [manifest], registry)
    assert report.rows == 6 and report.invalid == 1
    assert dict(report.to_submit) == {"sketch": 3, "blog-image": 2}
    assert report.cost_usd == pytest.approx(3 * SKETCH + 2 * BLOG)
    text = render_dry_run(report)
    assert "Would submit 5 jobs, estimated cost $1.17" in text and "Nothing was sent" in text
    assert not (tmp_path / "ledger.jsonl").exists() and settings.ledger.path is None
    report.known.update({"nothing": 2, "attach": 1})  # read as "2 nothing", "1 attach"
    assert "): 1 to re-attach, 2 done" in render_dry_run(report)


def test_a_big_ledgers_dry_run_counts_have_thousands_separators(tmp_path: Path) -> None:
    """It read "Already in the ledger (...): 50000 done" under "Would submit 1,000 jobs"."""
    report = DryRunReport(ledger=tmp_path / "l.jsonl")
    report.known.update({"nothing": 50_000, "attach": 1_200})
    assert f"Already in the ledger ({tmp_path / 'l.jsonl'}): 1,200 to re-attach, 50,000 done" in (
        render_dry_run(report).splitlines()
    )


async def test_dry_run_refuses_a_ledger_the_run_would_refuse(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A dry run previews the run: a ledger written for another manifest, or for other workflow
    settings, is refused by both (it said "would submit" while the run exited 2), unless forced."""
    from batcher.errors import LedgerMismatchError
    from batcher.workflows import Workflow

    clock = ScaledClock(SPEED)
    nightly = write_jsonl(tmp_path / "nightly.jsonl", sketch_rows(2))
    other = write_jsonl(tmp_path / "other.jsonl", sketch_rows(2, start=2))
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path)
        assert (await run(settings, [nightly], registry, clock)).exit_code is ExitCode.OK
    write_jsonl(nightly, sketch_rows(1, start=4), append=True)
    assert dict(dry_run(settings, [nightly], registry).to_submit) == {"sketch": 1}
    with pytest.raises(LedgerMismatchError, match=r"written for manifest\(s\) .*nightly\.jsonl.*--force"):
        dry_run(settings, [other], registry)
    sketch = registry.get("sketch")
    assert sketch is not None
    bumped = Workflow(name="sketch", workflow_id="66cec9a38aeef98f887211f1-v2", inputs=sketch.inputs)
    changed = WorkflowRegistry([bumped, *(wf for wf in registry if wf.name != "sketch")])
    with pytest.raises(LedgerMismatchError, match=r"different settings for workflow.*sketch"):
        dry_run(settings, [nightly], changed)
    forced = settings_for(emu.base_url, tmp_path, **{"ledger.force": True})
    assert dict(dry_run(forced, [other], registry).to_submit) == {"sketch": 2}


@pytest.mark.parametrize(("n", "jobs", "rows"), [(1, "1 job", "1 row"), (2, "2 jobs", "2 rows")])
def test_dry_run_counts_are_singular_for_one(
    tmp_path: Path, registry: WorkflowRegistry, n: int, jobs: str, rows: str
) -> None:
    settings = settings_for("http://127.0.0.1:9", tmp_path)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(n))
    lines = render_dry_run(dry_run(settings, [manifest], registry)).splitlines()
    assert lines[0] == f"Dry run: {rows}, {n} valid {jobs.split()[1]}, 0 invalid."
    assert lines[1] == f"  sketch: {jobs}, {n} to submit"
    assert lines[-1].startswith(f"Would submit {jobs}, estimated cost $")
    raw = [{"id": f"raw-{i}", "workflow": "66cec9a38aeef98f887211f1-v2", "input": {"x": i}} for i in range(n)]
    manifest = write_jsonl(tmp_path / "raw.jsonl", raw)
    text = render_dry_run(dry_run(settings, [manifest], registry))
    assert f"estimated cost $0.00 at list prices, plus {jobs} of workflows with no known price." in text


async def test_a_job_waiting_to_resend_its_post_is_not_called_in_flight(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A job backing off after a 5xx on its POST when the run stops has no poll_url: the next run
    sends it again, it does not re-attach it. The summary must not call it "in flight"."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = EmulatorConfig(render="placeholder", duration_median=1.0, error_rate=1.0)
    async with run_emulator(config, clock=clock) as emu:
        overrides = {"limits.max_runtime": 30.0, "retry.base_delay": 600.0, "retry.max_delay": 600.0}
        first = await run(settings_for(emu.base_url, tmp_path, **overrides), [manifest], registry, clock)
        posts = emu.stats()["api_requests"]
    text = render_summary(first)
    assert posts >= 1 and first.stats.unknown_outcomes >= 1
    assert first.stats.in_flight == 0 and first.stats.resends_waiting == 1
    assert "1 job waiting to send the POST again (sent next run)" in text and "in flight" not in text
    assert first.exit_code is ExitCode.FAILED


async def test_only_jobs_of_unknown_outcome_that_are_sent_again_are_counted_as_sent_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Two rows a killed run left mid-POST (``submitting``, no answer); the budget lets one of
    them go out again. The summary said both "had to be sent again" (counted when queued)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    write_jsonl(
        tmp_path / "ledger.jsonl",
        [
            {"ts": "2026-11-21T00:00:00Z", "job_id": job, "status": "submitting"}
            for job in ("sketch-0000", "sketch-0001")
        ],
    )
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"limits.budget_usd": 1.5 * SKETCH})
        result = await run(settings, [manifest], registry, clock)
        submissions = emu.stats()["submissions"]
    text = render_summary(result)
    assert submissions == 1 and result.stats.outcomes == {"completed": 1} and result.stats.left == 1
    assert result.stats.resubmitted_unknown == 1
    assert "1 job with an earlier POST of unknown outcome had to be sent again" in text


@pytest.mark.parametrize(("policy", "to_submit"), [("resubmit", 2), ("fail", 1)])
def test_dry_run_counts_a_job_that_gave_up_on_unknown_posts_per_unknown_submit(
    tmp_path: Path, registry: WorkflowRegistry, policy: str, to_submit: int
) -> None:
    """A job whose POSTs all got 502s until the run gave up (``failed``, retryable) is a POST of
    unknown outcome: ``fail`` will not send it, so it is not in the estimate."""
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    lines = [("submitting", {}), ("submit_unknown", {"retryable": True}), ("failed", {"retryable": True})]
    write_jsonl(
        tmp_path / "ledger.jsonl",
        [{"ts": "2026-11-21T00:00:00Z", "job_id": "sketch-0000", "status": s, **f} for s, f in lines],
    )
    settings = settings_for("http://127.0.0.1:9", tmp_path, **{"ledger.unknown_submit": policy})
    report = dry_run(settings, [manifest], registry)
    assert dict(report.known) == {"unknown": 1} and dict(report.to_submit) == {"sketch": to_submit}
    assert report.cost_usd == pytest.approx(to_submit * SKETCH)
    assert "1 with a POST of unknown outcome" in render_dry_run(report)


async def test_a_row_whose_local_file_vanishes_before_its_post_fails_alone_and_frees_its_budget(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A local image moved away between the row's check and its POST (an archive job mid-run):
    that job fails (not retried: nothing was sent or paid), and its price no longer counts
    against --budget. The budget fits the three other rows exactly; still holding the failed
    job's price, the run stopped on the budget one job short."""
    clock = ScaledClock(SPEED)
    rows = []
    for i in range(4):
        (tmp_path / f"r{i}.png").write_bytes(png_bytes(i))
        rows.append({"id": f"r{i}", "workflow": "sketch", "input": {"input_image": f"r{i}.png"}})
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, concurrency=1, **{"limits.budget_usd": 3 * SKETCH})
        with on_log("r0: submitted as request", (tmp_path / "r2.png").unlink, debug=True) as seen:
            result = await run(settings, [manifest], registry, clock)
        submissions = emu.stats()["submissions"]
    assert seen
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r.get("status") == "failed"]
    assert [(r["job_id"], r["retryable"]) for r in failed] == [("r2", False)]
    assert "cannot read local input file" in failed[0]["error"]
    assert submissions == 3 and result.stats.outcomes == {"completed": 3, "failed": 1}
    assert result.stats.stop_reason is None and result.stats.committed_usd == pytest.approx(3 * SKETCH)
    assert last_status(tmp_path / "ledger.jsonl") == {
        "r0": "completed",
        "r1": "completed",
        "r2": "failed",
        "r3": "completed",
    }


def test_the_failure_rate_counts_only_failures_and_halts_past_the_rate_once_enough_jobs_finished() -> None:
    """--halt-on-failure-rate 0.2 with --halt-min-jobs 20: a completed or deferred (not sent) job
    is no failure, so a healthy or throttled run never halts; the rate is counted from the 20th
    finished job on, and only more than 20% failed (expired and download_failed count) halts."""
    stats = RunStats()
    guard = FailureRateGuard(0.2, 20, stats)

    def halts(**outcomes: int) -> bool:
        stats.outcomes = Counter(outcomes)
        return guard.objection(workflow="sketch", price=SKETCH, now=0.0) is not None

    assert not halts(failed=19)  # 19 finished: too few to count yet
    assert halts(failed=20)  # the 20th finished job is counted
    assert not halts(completed=40)
    assert not halts(deferred=30, completed=10)
    assert not halts(failed=1, completed=19)  # 5%
    assert not halts(failed=4, completed=16)  # 20% exactly: not more than the rate
    assert halts(failed=5, completed=15)
    assert halts(expired=3, download_failed=2, completed=15)


def test_max_runtime_keeps_the_expected_duration_plus_two_poll_intervals_before_the_deadline() -> None:
    """The window guard's margin, as the README gives it: the 90th percentile of the durations
    learned (before any, the fallback) plus two poll.intervals; a job is still sent when it would
    finish exactly at the deadline, not a moment later."""
    durations = DurationModel()
    guard = WindowGuard(deadline=100.0, durations=durations, poll_interval=5.0, fallback=30.0)
    assert guard.margin("sketch") == 40.0
    assert guard.objection(workflow="sketch", price=SKETCH, now=60.0) is None
    assert guard.objection(workflow="sketch", price=SKETCH, now=60.5) is not None
    for _ in range(10):
        durations.observe("sketch", 20.0, 20.0)
    assert guard.margin("sketch") == 30.0
    assert guard.objection(workflow="sketch", price=SKETCH, now=70.0) is None
