"""``poll.give_up_after``: a job the provider never finishes does not keep a run going forever.

Real sockets against the emulator; time is the shared :class:`ScaledClock`. Every run here also
has a generous ``--max-runtime`` as a backstop, so that without the cap a test fails (the job is
still in flight at the deadline) instead of hanging.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.errors import ConfigError
from batcher.settings_load import load_settings
from batcher.status import ledger_status
from batcher.status_text import render_status_text, status_json
from batcher.summary import render_summary
from batcher.workflows import WorkflowRegistry

from .support import SPEED, last_status, ledger_lines, run, settings_for, sketch_rows, write_jsonl

pytestmark = pytest.mark.anyio

#: The cap, in clock seconds (under a second of real time at SPEED).
CAP = 30.0
#: Ends a run that never gives up (the old behaviour) instead of letting it hang.
BACKSTOP = 300.0
NEVER = 1e7  # seconds: a job that will not finish while anyone is watching
PRICES = {"sketch": 0.1006}

STUCK = {
    # The provider answers PROCESSING forever.
    "PROCESSING": {"duration_median": NEVER, "duration_spread": 0.0},
    # The job never leaves the queue.
    "QUEUED": {"queue_delay": NEVER},
    # A status the contract says to treat as "not finished yet", forever.
    "STARTING": {"duration_median": NEVER, "duration_spread": 0.0, "odd_status_rate": 1.0},
}


def _settings(base_url: str, tmp: Path, **changes: Any) -> Any:
    changes.setdefault("poll.give_up_after", CAP)
    return settings_for(base_url, tmp, **{"limits.max_runtime": BACKSTOP, **changes})


def _job_lines(ledger: Path, job_id: str) -> list[dict[str, Any]]:
    return [rec for rec in ledger_lines(ledger) if rec.get("job_id") == job_id]


def _polls(stats: dict[str, Any]) -> int:
    return sum(stats["requests"].get("poll", {}).values())


@pytest.mark.parametrize("stuck", sorted(STUCK))
async def test_a_job_that_never_finishes_is_given_up_after_the_cap_and_the_run_ends(
    stuck: str, tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = EmulatorConfig(render="placeholder", **STUCK[stuck])
    async with run_emulator(config, clock=clock) as emu:
        result = await run(_settings(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    ledger = tmp_path / "ledger.jsonl"
    # Ended by the cap, not by the backstop: nothing stopped it, nothing is left in flight.
    assert result.stats.stop_reason is None and result.stats.in_flight == 0
    assert result.seconds >= CAP
    assert result.exit_code is ExitCode.FAILED
    assert result.stats.gave_up_polling == 1 and stats["submissions"] == 1
    assert result.stats.outcomes == {}  # counted once, as given up: not also as failed
    last = _job_lines(ledger, "sketch-0000")[-1]
    assert last["status"] == "failed" and last["retryable"] is True and last["gave_up_polling"] is True
    assert f"gave up polling: still {stuck} after 30s" in last["error"]
    # A status we do not know gets one `polled` line when it first comes, not one a poll (a
    # ledger that grows by a line a poll for hours); QUEUED and PROCESSING get none.
    polled = [rec["remote_status"] for rec in _job_lines(ledger, "sketch-0000") if rec["status"] == "polled"]
    assert polled == ([stuck] if stuck == "STARTING" else []) and _polls(stats) > 2
    assert "re-attaches it by its poll_url" in last["error"]
    summary = render_summary(result)
    assert "1 given up polling" in summary and "still in flight" not in summary
    assert "Gave up polling: 1 job still not finished after 30s" in summary
    # ``batcher status`` says so too, and that the next run re-attaches it: with or without
    # --retry-failed, it is never submitted again.
    for retry_failed in (False, True):
        report = ledger_status(ledger, prices=PRICES, now=time.time(), retry_failed=retry_failed)
        assert report.gave_up_polling == 1
        assert dict(report.next_run) == {"attach": 1, "download": 0, "unknown": 0, "submit": 0}
    assert "Gave up   1 job still unfinished" in render_status_text(report)
    assert status_json(report)["failures"]["gave_up_polling"] == 1


async def test_the_next_run_re_attaches_a_given_up_job_and_never_posts_it_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    config = EmulatorConfig(render="placeholder", **STUCK["PROCESSING"])
    async with run_emulator(config, clock=clock) as emu:
        first = await run(_settings(emu.base_url, tmp_path), [manifest], registry, clock)
        polls_first = _polls(emu.stats())
        # Still stuck: the next run polls it again for a full cap, counted from when it
        # re-attached it (it was submitted more than a cap ago), then gives up again.
        second = await run(_settings(emu.base_url, tmp_path), [manifest], registry, clock)
        polls_second = _polls(emu.stats()) - polls_first
        assert emu.stats()["submissions"] == 1
        # Now the provider finishes it: the next run (even with --retry-failed) completes it.
        emu.state.reconfigure(duration_median=1.0)
        third = await run(_settings(emu.base_url, tmp_path, retry_failed=True), [manifest], registry, clock)
        stats = emu.stats()
    assert first.stats.gave_up_polling == 1 and first.exit_code is ExitCode.FAILED
    assert second.stats.attached == 1 and second.stats.submitted == 0
    assert second.stats.gave_up_polling == 1 and second.stats.stop_reason is None
    assert second.seconds >= CAP and polls_second > 1
    assert third.stats.attached == 1 and third.stats.submitted == 0
    assert third.stats.outcomes == {"completed": 1} and third.exit_code is ExitCode.OK
    assert stats["submissions"] == 1  # one POST in three runs: never paid twice
    assert sum(1 for rec in _job_lines(ledger, "sketch-0000") if rec["status"] == "submitting") == 1
    assert last_status(ledger) == {"sketch-0000": "completed"}


async def test_the_cap_is_off_when_set_to_none(tmp_path: Path, registry: WorkflowRegistry) -> None:
    """``give_up_after: null``: the job is polled past where the cap would have stopped it, until
    something else ends the run (here the backstop, --max-runtime), and is never given up."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = EmulatorConfig(render="placeholder", **STUCK["PROCESSING"])
    async with run_emulator(config, clock=clock) as emu:
        settings = _settings(
            emu.base_url, tmp_path, **{"poll.give_up_after": None, "limits.max_runtime": 4 * CAP}
        )
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert settings.poll.give_up_after is None
    assert result.stats.gave_up_polling == 0 and result.stats.in_flight == 1
    assert "max runtime" in (result.stats.stop_reason or "")
    assert result.seconds >= 4 * CAP
    assert not any(rec.get("gave_up_polling") for rec in ledger_lines(tmp_path / "ledger.jsonl"))
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "submitted"}
    assert stats["submissions"] == 1 and _polls(stats) > 2


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2h", 7200.0), ("90m", 5400.0), ("600", 600.0), ("null", None), ("off", None)],
)
def test_give_up_after_takes_a_duration_or_off(tmp_path: Path, value: str, seconds: float | None) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"poll:\n  give_up_after: {value}\n")
    assert load_settings(config_path=config).poll.give_up_after == seconds
    assert load_settings().poll.give_up_after == 2 * 3600.0  # on by default


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "c.yaml:2: poll.give_up_after: must be positive, got 0.0"),
        ("-5", "c.yaml:2: poll.give_up_after: must be positive, got -5.0"),
        ("soon", "c.yaml:2: poll.give_up_after: expected a duration, got 'soon'"),
    ],
)
def test_a_give_up_after_that_cannot_work_is_refused(tmp_path: Path, value: str, message: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"poll:\n  give_up_after: {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config_path=config)
    assert message in str(caught.value)
