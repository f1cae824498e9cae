"""The engine against the emulator on real sockets: the whole path, resume, and every answer class."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import socket
from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, RunningEmulator, run_emulator
from batcher.engine import ExitCode, RunResult
from batcher.inputs import InputSpec
from batcher.summary import render_summary
from batcher.workflows import Workflow, WorkflowRegistry

from .support import (
    API_KEY,
    SPEED,
    blog_rows,
    last_status,
    ledger_lines,
    run,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}


def _emulator(clock: ScaledClock, **changes: object) -> object:
    return run_emulator(EmulatorConfig(**{**FAST, **changes}), clock=clock)  # type: ignore[arg-type]


async def test_a_manifest_runs_to_completion_with_files_hashes_and_a_full_ledger(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(6) + blog_rows(4))
    async with run_emulator(EmulatorConfig(duration_median=3.0, seed=1), clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert result.stats.outcomes["completed"] == 10
    assert stats["submissions"] == 10 and stats["inputs_submitted_more_than_once"] == 0
    lines = ledger_lines(tmp_path / "ledger.jsonl")
    assert lines[0]["status"] == "run" and lines[0]["job_id"] is None
    # The last line says the run ended in order, its files flushed to disk.
    assert lines[-1]["status"] == "run_end" and lines[-1]["job_id"] is None
    by_job: dict[str, list[str]] = {}
    for rec in lines[1:-1]:
        by_job.setdefault(rec["job_id"], []).append(rec["status"])
    assert all(seq == ["submitting", "submitted", "generated", "completed"] for seq in by_job.values())
    completed = [r for r in lines if r["status"] == "completed"]
    for rec in completed:
        assert rec["outputs"], rec
        for out in rec["outputs"]:
            data = Path(out["path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == out["sha256"] and len(data) == out["bytes"]
            assert Path(out["path"]).resolve().is_relative_to((tmp_path / "out").resolve())
            assert data[:8] == b"\x89PNG\r\n\x1a\n"


async def test_a_second_run_does_nothing_and_sends_nothing(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(4))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        before = emu.stats()["api_requests"]
        second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["api_requests"] == before
    assert first.exit_code is ExitCode.OK and second.exit_code is ExitCode.OK
    assert second.stats.skipped == 4 and second.earlier["completed"] == 4
    assert second.stats.finished() == 0


async def test_rows_appended_to_a_manifest_run_alone_next_time(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        write_jsonl(
            manifest, [*sketch_rows(2, start=3), {"input_image": "https://example.com/x.png"}], append=True
        )
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.stats.skipped == 3
    assert result.stats.submitted == 3  # two appended rows with ids, one without (hashed id)
    assert stats["inputs_submitted_more_than_once"] == 0


async def test_bad_rows_are_recorded_and_the_good_ones_still_run(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = tmp_path / "m.jsonl"
    rows = sketch_rows(2)
    manifest.write_text(
        json.dumps(rows[0])
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "bad-scheme", "workflow": "sketch", "input": {"input_image": "ftp://x/y.png"}})
        + "\n"
        + json.dumps({"id": "bad-wf", "workflow": "nope", "input": {"input_image": "https://e/x.png"}})
        + "\n"
        + json.dumps(rows[1])
        + "\n",
        encoding="utf-8",
    )
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.FAILED
    assert result.stats.invalid == 3 and result.stats.outcomes["completed"] == 2
    invalid = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "invalid"]
    assert [r["line"] for r in invalid] == [2, 3, 4]
    assert all(r["job_id"] is None and r["error"] for r in invalid)


@pytest.mark.parametrize("header", ["retry-after-seconds", "retry-after-date", "reset-at-utc", "none"])
async def test_429s_in_every_header_style_slow_the_run_and_pay_nothing_twice(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(8))
    async with _emulator(clock, rate_limit=30, rate_period=60, rate_burst=3, rate_header=header) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, **{"rate.initial_per_minute": 600.0})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert stats["rate_limited"] > 0 and result.stats.throttled == stats["rate_limited"]
    assert stats["submissions"] == 8 and stats["inputs_submitted_more_than_once"] == 0


@pytest.mark.parametrize("header", ["retry-after-seconds", "reset-at-utc"])
async def test_a_submit_429_is_waited_out_for_as_long_as_it_says_not_retried_on_a_guess(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """A 429 naming its wait (a limit of one POST every 90 seconds) pauses the run until then:
    the POST sent after the pause is taken. Retried on our own short, jittered backoff instead,
    each POST was refused again and again through the window (a 429 storm against the account).
    Three jobs: the two held back meet two 429s and three at most."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    limit = {"rate_limit": 1, "rate_period": 90, "rate_burst": 1, "rate_limit_polls": False}
    async with _emulator(clock, rate_header=header, **limit) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 3}
    assert 2 <= stats["rate_limited"] <= 3 and stats["submissions"] == 3


async def test_server_errors_and_dropped_connections_are_retried_until_done(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(12))
    async with _emulator(clock, error_rate=0.2, drop_rate=0.1, drop_accept_share=0.0, seed=5) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, **{"retry.max_attempts": 12})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK, result.stats
    assert stats["server_errors"] + stats["dropped_connections"] > 0
    # Dropped-before-accept POSTs and 5xx before acceptance start nothing: no double payment.
    dupes = stats["inputs_submitted_more_than_once"]
    assert dupes <= stats["lost_responses"] + stats["dropped_after_accept"]


async def test_lost_responses_are_resubmitted_and_counted(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(10))
    async with _emulator(clock, lost_rate=0.3, seed=2) as emu:  # type: ignore[attr-defined]
        result = await run(
            settings_for(emu.base_url, tmp_path, **{"retry.max_attempts": 10}), [manifest], registry, clock
        )
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert stats["lost_responses"] > 0
    assert result.stats.unknown_outcomes >= stats["lost_responses"]
    assert stats["submissions"] == 10 + stats["lost_responses"]


async def test_provider_failed_jobs_fail_without_retry(
    tmp_path: Path,
    registry: WorkflowRegistry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The CLI's logging setup (run in-process by other tests) stops "batcher" logs propagating.
    monkeypatch.setattr(logging.getLogger("batcher"), "propagate", True)
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with _emulator(clock, fail_rate=1.0, error_shape="list", failed_http_status=422) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == stats["submissions"] == 3
    assert result.exit_code is ExitCode.FAILED and result.stats.outcomes["failed"] == 3
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert all(r["retryable"] is False and "FAILED" in r["error"] for r in failed)
    # Each is a log line too: the summary's "see the lines above" pointed at nothing.
    assert caplog.text.count("the provider reported FAILED") == 3
    assert again.exit_code is ExitCode.FAILED and again.earlier["failed"] == 3


async def test_retry_failed_runs_failed_jobs_again(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with _emulator(clock, fail_rate=1.0) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(
            settings_for(emu.base_url, tmp_path, retry_failed=True), [manifest], registry, clock
        )
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 2


@pytest.mark.parametrize("shape", ["list", "flat", "parsed"])
async def test_every_output_shape_is_downloaded(
    tmp_path: Path, registry: WorkflowRegistry, shape: str
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with _emulator(clock, output_shape=shape) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK
    completed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "completed"]
    assert len(completed) == 2 and all(len(r["outputs"]) >= 1 for r in completed)


@pytest.mark.parametrize(
    ("config", "status"),
    [({"api_key": "the-right-key"}, "401"), ({"forbidden_keys": (API_KEY,)}, "403")],
    ids=["401 wrong key", "403 key not allowed"],
)
async def test_a_refused_key_stops_the_run_after_one_request(
    tmp_path: Path, registry: WorkflowRegistry, config: dict[str, object], status: str
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(5))
    async with _emulator(clock, **config) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, concurrency=1)
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER
    assert stats["requests"]["submit"] == {status: 1}
    assert "refused the API key" in (result.stats.stop_reason or "")
    assert API_KEY not in (tmp_path / "ledger.jsonl").read_text()


async def test_an_unknown_workflow_stops_submissions(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    rows = [
        {"id": f"raw-{i}", "workflow": "0123456789abcdef01234567-v1", "input": {"prompt": "x"}}
        for i in range(4)
    ]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path, concurrency=1), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER
    assert stats["requests"]["submit"] == {"404": 1}
    assert "not found" in (result.stats.stop_reason or "")
    assert result.stats.left == 3


async def test_an_unknown_workflow_stops_only_its_own_jobs_and_the_other_workflows_run(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 404 on submit means the provider does not know that workflow (the contract: stop for
    that workflow). It stopped every submission: a manifest mixing a retired workflow with
    sketch and blog rows sent none of those, exit 3. Now only the unknown workflow's jobs are
    held back (one 404, not one a row); the others all run, and the exit code (3) and summary
    still say what the provider refused."""
    clock = ScaledClock(SPEED)
    raw = "0123456789abcdef01234567-v1"
    unknown = [{"id": f"raw-{i}", "workflow": raw, "input": {"prompt": "x"}} for i in range(3)]
    manifest = write_jsonl(tmp_path / "m.jsonl", unknown[:2] + sketch_rows(3) + blog_rows(2) + unknown[2:])
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path, concurrency=1), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER
    assert stats["requests"]["submit"] == {"404": 1, "200": 5} and stats["submissions"] == 5
    assert result.stats.outcomes == {"deferred": 1, "completed": 5} and result.stats.left == 2
    assert last_status(tmp_path / "ledger.jsonl") == {
        "raw-0": "deferred",
        **{f"sketch-{i:04d}": "completed" for i in range(3)},
        **{f"blog-{i:04d}": "completed" for i in range(2)},
    }
    reason = result.stats.stop_reason or ""
    assert f"workflow {raw} ({raw}) not found at the provider" in reason and "other workflows'" in reason
    assert f"Stopped submitting: workflow {raw}" in render_summary(result)
    [end] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "run_end"]
    assert end["stop_reason"] == reason and end["not_started"] == 2


async def test_a_workflow_the_provider_does_not_know_stays_in_the_stop_reason_when_the_run_stops_later(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A workflow held back by a 404, then the whole run stopped by a 406: the summary and
    run_end named only the 406, and the exit code (3) no longer said why that workflow's rows
    never ran. Both reasons are given."""
    clock = ScaledClock(SPEED)
    raw = "0123456789abcdef01234567-v1"
    rows = [{"id": "raw-0", "workflow": raw, "input": {"prompt": "x"}}, *sketch_rows(6)]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    config = {"credits": 0.15, "duration_median": 4.0, "duration_spread": 0.5, "seed": 3}
    async with _emulator(clock, **config) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path, concurrency=2), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER and stats["requests"]["submit"]["406"] >= 1
    reason = result.stats.stop_reason or ""
    assert reason.startswith("insufficient credits (HTTP 406 on submit")
    assert f"; workflow {raw} ({raw}) not found at the provider" in reason
    [end] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "run_end"]
    assert end["stop_reason"] == reason


async def test_a_submit_answered_405_stops_submitting_instead_of_failing_every_job_for_good(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 405 (the gateway's HTML page for a wrong method: here ``api.submit_path`` names the
    poll route) was an "unexpected status": each job failed for good, the run POSTed the whole
    manifest to get the same answer for every row, and after the fix only ``--retry-failed``
    (which also pays again for jobs the provider really failed) would send them. Now the first
    405 stops submissions, exit 3, the reason names the URL and the settings to check, and the
    jobs are left for the next run, which sends them all once the path is right."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(4))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        wrong = settings_for(
            emu.base_url, tmp_path, concurrency=1, **{"api.submit_path": "/workflows/request/{workflow_id}"}
        )
        result = await run(wrong, [manifest], registry, clock)
        refused = emu.stats()["requests"]
        fixed = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER and refused["other"] == {"405": 1}
    assert result.stats.outcomes == {"deferred": 1} and result.stats.left == 3
    reason = result.stats.stop_reason or ""
    assert reason.startswith(
        f"POST {emu.base_url}/workflows/request/66cec9a38aeef98f887211f1-v1 is not taken there"
    )
    assert "HTTP 405 on submit: an HTML error page" in reason and "api.submit_path" in reason
    assert fixed.exit_code is ExitCode.OK and fixed.stats.outcomes == {"completed": 4}
    assert stats["submissions"] == 4


async def test_a_rejected_input_fails_that_job_only(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """A definition that drifted from the provider: our check passes, the provider answers 400."""
    clock = ScaledClock(SPEED)
    sketch = registry.get("sketch")
    assert sketch is not None
    drifted = Workflow(
        name="drifted", workflow_id=sketch.workflow_id, inputs=(InputSpec("image", "text", True),)
    )
    registry = WorkflowRegistry([*registry, drifted])
    rows = [{"id": "drift", "workflow": "drifted", "input": {"image": "x"}}]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows + sketch_rows(2))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.FAILED
    assert result.stats.outcomes == {"failed": 1, "completed": 2}
    assert last_status(tmp_path / "ledger.jsonl")["drift"] == "failed"
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert failed[0]["retryable"] is False and "HTTP 400 on submit" in failed[0]["error"]


async def test_insufficient_credits_stop_submitting_but_in_flight_jobs_finish(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(6))
    # The emulator bills on completion: two jobs fit $0.15 at submit time; when the first
    # finishes, the balance is $0.049 and the third submit gets 406 while the second still runs.
    config = {"credits": 0.15, "duration_median": 4.0, "duration_spread": 0.5, "seed": 3}
    async with _emulator(clock, **config) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, concurrency=2)
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.PROVIDER
    assert "insufficient credits" in (result.stats.stop_reason or "").lower()
    assert result.stats.outcomes["completed"] == stats["submissions"] == 2
    assert stats["requests"]["submit"]["406"] == 1
    assert result.stats.credits is not None and result.stats.left == 3


async def test_an_expired_record_marks_the_job_expired(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with _emulator(clock, duration_median=1.0, duration_spread=0.0, record_ttl=0.5) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, **{"poll.first_delay": 5.0, "poll.policy": "fixed"})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes["expired"] == 2 and result.exit_code is ExitCode.FAILED


async def test_the_key_is_never_sent_to_the_output_host(tmp_path: Path, registry: WorkflowRegistry) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with _emulator(clock, output_host="localhost") as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert stats["output_downloads"] == 3 and stats["output_downloads_with_credentials"] == 0


async def test_a_foreign_poll_url_in_the_ledger_is_never_sent_the_key(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    row_id = "sketch-0000"
    ledger.write_text(
        json.dumps(
            {"ts": "2026-11-21T00:00:00Z", "job_id": row_id, "status": "submitting", "workflow": "sketch"}
        )
        + "\n"
        + json.dumps(
            {
                "ts": "2026-11-21T00:00:01Z",
                "job_id": row_id,
                "status": "submitted",
                "request_id": "a" * 32,
                "poll_url": "https://evil.example/workflows/request/" + "a" * 32,
            }
        )
        + "\n"
    )
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert stats["submissions"] == 0  # a known poll_url is never POSTed again
    failed = [r for r in ledger_lines(ledger) if r["status"] == "failed"]
    assert len(failed) == 1 and "refusing to send the API key to evil.example" in failed[0]["error"]
    assert result.exit_code is ExitCode.FAILED
    # Counted as failed, as its ledger line says, not left "in flight" in the summary.
    assert result.stats.outcomes == {"failed": 1} and result.stats.in_flight == 0


async def test_a_job_whose_poll_host_was_refused_is_re_attached_once_the_host_is_allowed(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A poll_url on a host that may not receive the key failed its job for good, though the
    job was paid for and the error said to allow the host (api.credential_hosts): after that,
    a run left it failed, and only --retry-failed ran it, by POSTing it again (paid twice). The
    failure is now retryable: the next run polls the same poll_url and never POSTs it again."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        other = "http://localhost:" + emu.base_url.rsplit(":", 1)[1]
        emu.state.reconfigure(poll_origin=other)  # poll_urls name another host
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        # The user allows that host (here: by giving it as the API's address).
        second = await run(settings_for(other, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert "refusing to send the API key to localhost" in failed["error"] and failed["retryable"] is True
    assert first.exit_code is ExitCode.FAILED
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert second.exit_code is ExitCode.OK
    assert stats["submissions"] == 1
    # Its age spans two runs: its "generated" line gives no duration bracket, which the next
    # runs' poll timing and the report's chart would read as how long such a job takes.
    [generated] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "generated"]
    assert "finished_by" not in generated and "finished_after" not in generated, generated


@pytest.mark.parametrize("unreachable", ["closed-port", "name-not-looked-up"])
async def test_a_post_that_never_connected_is_not_an_unknown_outcome(
    tmp_path: Path, registry: WorkflowRegistry, unreachable: str
) -> None:
    """Nothing listens on the port: no POST left the machine, so none may have been billed. The
    jobs were failed for good under unknown_submit: fail, and took the budget, as if they had.
    Likewise for an API host name that cannot be looked up at all (a label over 63 characters:
    getaddrinfo raises UnicodeError, not a DNS error)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    if unreachable == "name-not-looked-up":
        base = f"https://{'a' * 64}.example.com"
    changes = {"ledger.unknown_submit": "fail", "retry.max_attempts": 2, "limits.budget_usd": 0.25}
    first = await run(settings_for(base, tmp_path, **changes), [manifest], registry, clock)
    statuses = [r["status"] for r in ledger_lines(tmp_path / "ledger.jsonl") if r["job_id"]]
    assert first.stats.outcomes == {"deferred": 2} and first.stats.unknown_outcomes == 0
    assert "submit_unknown" not in statuses and "failed" not in statuses
    assert statuses.count("deferred") == 4  # retry.max_attempts tries a job, each recorded
    assert first.stats.committed_usd == pytest.approx(0.0, abs=1e-9)
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        second = await run(settings_for(emu.base_url, tmp_path, **changes), [manifest], registry, clock)
    assert second.exit_code is ExitCode.OK and second.stats.outcomes == {"completed": 2}


async def test_a_failed_download_is_retried_next_run_without_resubmitting(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    from batcher.errors import ConfigError
    from batcher.manifest import read_manifest

    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    file = tmp_path / "file"
    file.write_text("a file where the output folder should be")
    # A folder where each job's output file should go: the write fails after the job was paid for.
    blocked = tmp_path / "blocked"
    for job in read_manifest(manifest, registry):
        (blocked / f"{job.job_id}.png").mkdir(parents=True)
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        # An output folder that cannot be made is found before anything is paid for.
        with pytest.raises(ConfigError, match=r"cannot write outputs under .*file is not a folder"):
            await run(
                settings_for(emu.base_url, tmp_path, **{"output.out_dir": file / "out"}),
                [manifest],
                registry,
                clock,
            )
        assert emu.stats()["submissions"] == 0
        settings = settings_for(emu.base_url, tmp_path, **{"output.out_dir": blocked})
        first = await run(settings, [manifest], registry, clock)
        assert first.stats.outcomes == {"download_failed": 2} and first.exit_code is ExitCode.FAILED
        second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert second.exit_code is ExitCode.OK and second.stats.downloads_resumed == 2
    assert stats["submissions"] == 2 and second.stats.requests["submit"] == 0


async def test_a_ledger_for_another_manifest_is_refused_unless_forced(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    from batcher.errors import LedgerMismatchError

    clock = ScaledClock(SPEED)
    first = write_jsonl(tmp_path / "a.jsonl", sketch_rows(1))
    other = write_jsonl(tmp_path / "b.jsonl", sketch_rows(1, start=1))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [first], registry, clock)
        size = (tmp_path / "ledger.jsonl").stat().st_size
        with pytest.raises(LedgerMismatchError, match=r"written for manifest\(s\) .*a\.jsonl.*--force"):
            await run(settings_for(emu.base_url, tmp_path), [other], registry, clock)
        assert (tmp_path / "ledger.jsonl").stat().st_size == size  # refused before writing
        forced = await run(
            settings_for(emu.base_url, tmp_path, **{"ledger.force": True}), [other], registry, clock
        )
        # One forced run does not take the ledger from its nightly manifest: the ledger was
        # written for it before (the last run's manifests alone were compared, and the
        # unforced nightly command failed from then on).
        again = await run(settings_for(emu.base_url, tmp_path), [first], registry, clock)
    assert forced.exit_code is ExitCode.OK and again.exit_code is ExitCode.OK


async def test_a_manifest_refused_as_a_whole_leaves_no_run_in_the_ledger(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A manifest with no rows (here a CSV with only its header) is a usage error: nothing is
    sent, and the ledger must not record a run of it, or the right manifest is refused next."""
    from batcher.errors import ManifestError

    clock = ScaledClock(SPEED)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,workflow,input_image\n", encoding="utf-8")
    right = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        with pytest.raises(ManifestError, match="has no rows"):
            await run(settings_for(emu.base_url, tmp_path), [wrong], registry, clock)
        assert ledger_lines(tmp_path / "ledger.jsonl") == []
        result = await run(settings_for(emu.base_url, tmp_path), [right], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 1}


async def test_changed_workflow_settings_are_detected(tmp_path: Path, registry: WorkflowRegistry) -> None:
    from batcher.errors import LedgerMismatchError

    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        sketch = registry.get("sketch")
        assert sketch is not None
        bumped = Workflow(name="sketch", workflow_id="66cec9a38aeef98f887211f1-v2", inputs=sketch.inputs)
        changed = WorkflowRegistry([bumped, *(wf for wf in registry if wf.name != "sketch")])
        with pytest.raises(LedgerMismatchError, match=r"different settings for workflow.*sketch"):
            await run(settings_for(emu.base_url, tmp_path), [manifest], changed, clock)


def _with_template(registry: WorkflowRegistry, name: str, template: str) -> WorkflowRegistry:
    """``registry`` with the ``compose`` template of workflow ``name`` replaced."""
    from dataclasses import replace

    wf = registry.get(name)
    assert wf is not None
    inputs = tuple(
        replace(spec, compose=replace(spec.compose, template=template)) if spec.compose else spec
        for spec in wf.inputs
    )
    return WorkflowRegistry([replace(wf, inputs=inputs), *(w for w in registry if w.name != name)])


async def test_a_changed_compose_template_is_refused_rather_than_every_row_paid_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Rows without an id are named after what they send, and a composed input is the template
    filled in: a new template gave every such row a new id, and the run paid for all of them
    again without a word. Now it is refused, unless --force."""
    from batcher.errors import LedgerMismatchError

    clock = ScaledClock(SPEED)
    rows = [{"workflow": "blog-image", "input": row["input"]} for row in blog_rows(2)]  # no ids
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    reworded = _with_template(registry, "blog-image", "Headline: {title}\n\n{description}\n")
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        submitted = emu.stats()["submissions"]
        with pytest.raises(
            LedgerMismatchError, match=r"compose template of workflow\(s\) blog-image.*--force"
        ):
            await run(settings_for(emu.base_url, tmp_path), [manifest], reworded, clock)
        assert emu.stats()["submissions"] == submitted
        forced = await run(
            settings_for(emu.base_url, tmp_path, **{"ledger.force": True}), [manifest], reworded, clock
        )
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], reworded, clock)
    assert forced.stats.submitted == 2  # asked for: new ids, new jobs
    assert (
        again.exit_code is ExitCode.OK and again.stats.submitted == 0
    )  # the new template is the ledger's now


async def test_editing_a_workflow_the_ledger_never_ran_does_not_refuse_it(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A sketch-only nightly was refused as "different settings" because blog-image.yaml had
    been edited: no job in the ledger can mean another job because of it."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    blog = registry.get("blog-image")
    assert blog is not None
    bumped = Workflow(name="blog-image", workflow_id="66b518aa31bd2081a8de2a98-v9", inputs=blog.inputs)
    edited = _with_template(
        WorkflowRegistry([bumped, *(w for w in registry if w.name != "blog-image")]), "blog-image", "{title}"
    )
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        write_jsonl(manifest, sketch_rows(1, start=1), append=True)
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], edited, clock)
    assert result.exit_code is ExitCode.OK
    assert result.stats.skipped == 1 and result.stats.submitted == 1


async def test_a_ledger_from_before_templates_were_recorded_is_not_refused_for_them(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Its ``run`` lines have no ``templates``: there is nothing to compare, so it is used as before."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", blog_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        records = ledger_lines(ledger)
        for record in records:
            record.pop("templates", None)
        ledger.write_text("".join(json.dumps(r) + "\n" for r in records))
        reworded = _with_template(registry, "blog-image", "Headline: {title}\n\n{description}\n")
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], reworded, clock)
    assert result.exit_code is ExitCode.OK and result.stats.skipped == 1  # an explicit id: same job


async def test_a_manifest_without_a_final_line_break_gets_a_warning_before_rows_are_appended(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """``echo row >> m.jsonl`` on such a file joins the new row to the last one; say so while
    the file is still whole, and not for a file that ends as it should."""
    clock = ScaledClock(SPEED)
    whole = write_jsonl(tmp_path / "whole.jsonl", sketch_rows(1))
    cut = tmp_path / "cut.jsonl"
    cut.write_text(json.dumps(sketch_rows(1, start=1)[0]))  # no line break at the end
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        with caplog.at_level(logging.WARNING, logger="batcher"):
            result = await run(settings_for(emu.base_url, tmp_path), [whole, cut], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.submitted == 2
    warned = [r.getMessage() for r in caplog.records if "line break" in r.getMessage()]
    assert len(warned) == 1 and str(cut) in warned[0] and "whole.jsonl" not in warned[0]


async def _left_then_retried(
    emu: RunningEmulator, tmp: Path, manifest: Path, registry: WorkflowRegistry, clock: ScaledClock
) -> tuple[tuple[RunResult, int], tuple[RunResult, int]]:
    """After a run under ``unknown_submit: fail``: a later run under the default policy, then one
    with ``--retry-failed``; each result, with the submissions the provider has had after it."""
    later = await run(settings_for(emu.base_url, tmp), [manifest], registry, clock)
    after_later = emu.stats()["submissions"]
    retried = await run(settings_for(emu.base_url, tmp, retry_failed=True), [manifest], registry, clock)
    return (later, after_later), (retried, emu.stats()["submissions"])


async def test_an_unknown_outcome_fails_instead_when_configured(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Under ``unknown_submit: fail`` a job whose POST's outcome is unknown is failed for good, not
    sent: a later run under the default policy leaves it too (it may have been billed already);
    only ``--retry-failed`` sends it, counted as sent again. (Recording that failure as retryable
    passed every test, and the next run under the default policy POSTed it unasked.)"""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        # Make it look as if the run died between "submitting" and "submitted" for a new row.
        write_jsonl(manifest, sketch_rows(1, start=2), append=True)
        with ledger.open("a") as fh:
            fh.write(
                json.dumps({"ts": "2026-11-21T00:00:00Z", "job_id": "sketch-0002", "status": "submitting"})
                + "\n"
            )
        settings = settings_for(emu.base_url, tmp_path, **{"ledger.unknown_submit": "fail"})
        result = await run(settings, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2
        (later, after_later), (retried, after_retried) = await _left_then_retried(
            emu, tmp_path, manifest, registry, clock
        )
    assert (after_later, after_retried) == (2, 3)  # left alone, then sent again
    assert result.exit_code is ExitCode.FAILED and result.stats.outcomes == {"failed": 1}
    assert later.stats.submitted == 0 and later.stats.skipped == 3
    assert retried.stats.resubmitted_unknown == 1 and retried.stats.outcomes == {"completed": 1}
    assert last_status(ledger)["sketch-0002"] == "completed"


async def test_a_torn_ledger_tail_is_repaired_and_the_run_resumes(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        *kept, last_completed, run_end = ledger.read_bytes().splitlines(keepends=True)
        assert b'"completed"' in last_completed and b'"run_end"' in run_end
        ledger.write_bytes(b"".join(kept) + last_completed[:-7])  # died writing "completed"
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.repaired_bytes > 0 and result.exit_code is ExitCode.OK
    assert result.stats.downloads_resumed == 1 and stats["submissions"] == 3
    assert all(json.loads(line) for line in ledger.read_text().splitlines())


async def test_slow_answers_time_out_and_are_retried_until_done(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(6))
    # 60 emulator-seconds of silence is 1.5 s of real time; the client gives up after 0.3 s.
    async with _emulator(clock, slow_rate=0.25, slow_seconds=60.0, seed=8) as emu:  # type: ignore[attr-defined]
        settings = settings_for(emu.base_url, tmp_path, **{"api.read_timeout": 0.3, "retry.max_attempts": 12})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert stats["slow_responses"] > 0
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 6
    timeouts = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if "in time" in str(r.get("error", ""))]
    assert timeouts, "some request must have timed out"


async def test_a_job_that_gave_up_on_unknown_posts_is_counted_or_failed_when_the_next_run_meets_it(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Every POST of the job is accepted (and billed) but answered 502, until the run gives up on
    it: ``failed``, retryable, no poll_url. Its POST's outcome is as unknown as after a kill: the
    next run must count it as sent again (it may be billed twice), or under ``unknown_submit: fail``
    not send it at all. It was sent again as a plain retry: uncounted, whatever the setting."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    refusing = tmp_path / "refusing"
    refusing.mkdir()
    async with _emulator(clock, lost_rate=1.0) as emu:  # type: ignore[attr-defined]
        first = await run(
            settings_for(emu.base_url, tmp_path, **{"retry.max_attempts": 2}), [manifest], registry, clock
        )
        assert emu.stats()["submissions"] == 2  # both POSTs accepted: billed twice already
        shutil.copy(tmp_path / "ledger.jsonl", refusing / "ledger.jsonl")
        emu.state.reconfigure(lost_rate=0.0)
        failing = settings_for(emu.base_url, refusing, **{"ledger.unknown_submit": "fail"})
        refused = await run(failing, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2  # not sent again
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        submissions = emu.stats()["submissions"]
    assert first.stats.outcomes == {"failed": 1} and first.stats.unknown_outcomes == 2
    assert last_status(tmp_path / "refusing" / "ledger.jsonl")["sketch-0000"] == "failed"
    assert refused.stats.outcomes == {"failed": 1} and refused.stats.requests["submit"] == 0
    assert refused.exit_code is ExitCode.FAILED
    assert submissions == 3 and again.exit_code is ExitCode.OK
    assert again.stats.outcomes == {"completed": 1} and again.stats.resubmitted_unknown == 1
    assert "1 job with an earlier POST of unknown outcome had to be sent again" in render_summary(again)


async def test_under_unknown_submit_fail_a_post_answered_502_is_sent_once_and_failed_for_good(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``ledger.unknown_submit: fail`` is for accounts that would rather lose a job than pay for
    it twice. A POST accepted (and billed) but answered 502 is failed at once, not retryable:
    the run does not send it again after a backoff, and a later run under the default policy
    leaves it too. Only ``--retry-failed`` sends it, counted as sent again."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock, lost_rate=1.0) as emu:  # type: ignore[attr-defined]
        failing = settings_for(emu.base_url, tmp_path, **{"ledger.unknown_submit": "fail"})
        first = await run(failing, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2  # one POST a job: each billed once
        emu.state.reconfigure(lost_rate=0.0)
        (later, after_later), (retried, after_retried) = await _left_then_retried(
            emu, tmp_path, manifest, registry, clock
        )
    assert (after_later, after_retried) == (2, 4)  # left alone, then both sent again
    assert first.exit_code is ExitCode.FAILED and first.stats.outcomes == {"failed": 2}
    assert first.stats.unknown_outcomes == 2 and first.stats.requests["submit"] == 2
    failed = [r for r in ledger_lines(ledger) if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["retryable"] is False for r in failed)
    assert all(r["error"].startswith("outcome of the POST unknown") for r in failed)
    assert later.stats.requests["submit"] == 0 and later.earlier["failed"] == 2
    assert retried.stats.outcomes == {"completed": 2} and retried.stats.resubmitted_unknown == 2


async def test_a_post_of_unknown_outcome_stays_unknown_after_a_resend_that_never_connected(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A kill left a POST unanswered; the next run's resend never connected (``deferred``, left for
    the next run). The killed POST may still have been billed: the run after must count the job as
    sent again, or under ``unknown_submit: fail`` not send it. It took it for a fresh submission."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    killed = {"ts": "2026-11-21T00:00:00Z", "job_id": "sketch-0000", "status": "submitting"}
    write_jsonl(tmp_path / "ledger.jsonl", [killed])
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unsent = await run(
        settings_for(closed, tmp_path, **{"retry.max_attempts": 2}), [manifest], registry, clock
    )
    assert unsent.stats.outcomes == {"deferred": 1} and unsent.stats.resubmitted_unknown == 1
    refusing = tmp_path / "refusing"
    refusing.mkdir()
    shutil.copy(tmp_path / "ledger.jsonl", refusing / "ledger.jsonl")
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        failing = settings_for(emu.base_url, refusing, **{"ledger.unknown_submit": "fail"})
        refused = await run(failing, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 0
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        submissions = emu.stats()["submissions"]
    assert refused.stats.outcomes == {"failed": 1} and refused.stats.requests["submit"] == 0
    assert submissions == 1 and again.stats.outcomes == {"completed": 1}
    assert again.stats.resubmitted_unknown == 1
    assert "1 job with an earlier POST of unknown outcome had to be sent again" in render_summary(again)


async def test_a_one_line_text_input_longer_than_a_file_name_is_sent(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A blog row giving its title and description on one line (the field allows 8,000
    characters) was looked for as a file beside the manifest when its ledger preview was made:
    over 255 bytes, the name's "File name too long" ended the whole run in a traceback, the row
    never sent. It is text: the job is sent and completes, its text in the ledger's preview."""
    text = "My trip to the coast. " + "A long description of the lighthouse at dusk. " * 6
    rows = [{"id": "b1", "workflow": "blog-image", "input": {"Blog_title_and_description": text}}]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    clock = ScaledClock(SPEED)
    async with _emulator(clock) as emu:  # type: ignore[attr-defined]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK
    assert last_status(tmp_path / "ledger.jsonl") == {"b1": "completed"}
    (submitting,) = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "submitting"]
    assert submitting["inputs"] == {"Blog_title_and_description": text[:300]}
