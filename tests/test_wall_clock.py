"""Runs on a machine whose wall clock jumps, or is simply wrong.

batcher schedules on a monotonic clock, but the ledger's ``ts``, the provider's rate-limit
headers and the gap between two runs are wall-clock times. Here the engine runs on a
:class:`~tests.support.SkewedClock` (the emulator's time, with its wall clock moved), so a
clock stepped back an hour, a VM resumed three days later, or a clock ten minutes slow happen
on real sockets in milliseconds, with no sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.durations import DurationModel
from batcher.emulator import EmulatorConfig, EmulatorState, create_app, run_emulator
from batcher.engine import ExitCode, RunResult
from batcher.fold import fold_ledger
from batcher.guards import WindowGuard
from batcher.status import ledger_status
from batcher.status_text import render_status_text
from batcher.workflows import WorkflowRegistry

from .support import SPEED, SkewedClock, ledger_lines, run, served, settings_for, sketch_rows, write_jsonl

pytestmark = pytest.mark.anyio

DAY = 86400.0
#: Every job takes exactly this long at the emulator (clock seconds).
DURATION = 20.0
#: Ends a run that would otherwise wait for hours (the old behaviour) instead of hanging the test.
BACKSTOP = 300.0


def _stopping_early(tmp: Path, base_url: str) -> Any:
    """Settings for a run that submits the jobs and stops (--max-runtime) long before they finish."""
    return settings_for(base_url, tmp, **{"limits.max_runtime": 6.0})


async def test_jobs_re_attached_after_the_clock_jumped_days_ahead_are_polled_on_this_runs_clock(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A VM resumed three days later (or an earlier run whose clock was slow): its in-flight jobs
    look three days old. They were polled once, then not for a day and a half (half their
    "age"): the run sat idle until --max-runtime. Now they are polled on the run's own clock and
    complete as soon as the provider has them done. Jobs submitted in the past are no news: no
    warning about the clock (that one is for a ledger that reads later than the clock)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = EmulatorConfig(render="placeholder", duration_median=DURATION, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        first = await run(_stopping_early(tmp_path, emu.base_url), [manifest], registry, clock)
        later = SkewedClock(clock, 3 * DAY)
        settings = settings_for(emu.base_url, tmp_path, **{"limits.max_runtime": BACKSTOP})
        with caplog.at_level(logging.WARNING, logger="batcher"):
            second = await run(settings, [manifest], registry, later)
        stats = emu.stats()
    assert [r.getMessage() for r in caplog.records if "clock" in r.getMessage()] == []
    assert first.stats.in_flight == 3
    assert second.stats.attached == 3 and second.stats.stop_reason is None
    assert second.stats.outcomes == {"completed": 3} and second.exit_code is ExitCode.OK
    assert second.seconds < 2 * DURATION  # not BACKSTOP: nobody waited for a day and a half
    assert stats["submissions"] == 3
    # Their three-day "durations" taught batcher nothing: a later --max-runtime run would
    # otherwise keep a margin of days and submit nothing.
    model = DurationModel()
    model.seed_from_ledger(ledger_lines(tmp_path / "ledger.jsonl"))
    assert model.quantile("sketch", 1.0) is None


async def test_jobs_re_attached_after_the_clock_was_set_back_teach_no_duration(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The clock was set back an hour between two runs: the ledger says its jobs were submitted
    in the future. Their age read as 0, so they were polled in a burst and their brackets (done
    13 s after "submission", for 20 s jobs) taught every later run durations shorter than any
    job's. Now they teach nothing, and the run says the clock reads earlier than the ledger."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = EmulatorConfig(render="placeholder", duration_median=DURATION, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        first = await run(_stopping_early(tmp_path, emu.base_url), [manifest], registry, clock)
        earlier = SkewedClock(clock, -3600.0)
        settings = settings_for(emu.base_url, tmp_path, **{"limits.max_runtime": BACKSTOP})
        with caplog.at_level(logging.WARNING, logger="batcher"):
            second = await run(settings, [manifest], registry, earlier)
    assert first.stats.in_flight == 3
    assert second.stats.attached == 3 and second.stats.outcomes == {"completed": 3}
    model = DurationModel()
    model.seed_from_ledger(ledger_lines(tmp_path / "ledger.jsonl"))
    assert model.quantile("sketch", 0.0) is None and model.upper_quantile("sketch", 0.0) is None
    warned = [r.getMessage() for r in caplog.records if "clock" in r.getMessage()]
    assert len(warned) == 1 and "3 jobs" in warned[0] and "set back" in warned[0]


async def test_a_given_up_job_re_attached_a_day_later_is_given_up_again_after_the_cap(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The nightly case: a job the provider never finishes is given up after poll.give_up_after;
    the next night's run re-attaches it, a day old. Its next poll came half a day later, so the
    cap never fired and that run blocked the one after (exit 75). Now the poll that finds it
    past the cap comes at the cap."""
    cap = 30.0
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = EmulatorConfig(render="placeholder", duration_median=1e7, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(
            emu.base_url, tmp_path, **{"poll.give_up_after": cap, "limits.max_runtime": BACKSTOP}
        )
        first = await run(settings, [manifest], registry, clock)
        second = await run(settings, [manifest], registry, SkewedClock(clock, DAY))
        stats = emu.stats()
    assert first.stats.gave_up_polling == 1
    assert second.stats.attached == 1 and second.stats.gave_up_polling == 1
    assert second.stats.stop_reason is None and second.stats.in_flight == 0
    assert cap <= second.seconds < 2 * cap
    assert stats["submissions"] == 1


class SteppingClock(SkewedClock):
    """NTP steps this machine's wall clock by ``offset`` once ``at`` seconds of ``inner`` passed."""

    def __init__(self, inner: ScaledClock, offset: float, at: float) -> None:
        super().__init__(inner, 0.0)
        self.step, self.at = offset, inner.monotonic() + at

    def wall(self) -> float:
        return self.inner.wall() + (self.step if self.inner.monotonic() >= self.at else 0.0)


async def test_a_clock_stepped_two_days_mid_run_does_not_show_as_days_in_status_or_report(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The run's ``ts`` lines jump two days while its 5 s jobs run. ``batcher status`` said the
    run was active for two days, and the report's chart had two-day jobs: both were read off the
    ledger's times. The run's own timing (on its monotonic clock) is recorded and used now."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(4))
    config = EmulatorConfig(render="placeholder", duration_median=5.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        stepping = SteppingClock(clock, 2 * DAY, at=2.0)
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, stepping)
    assert result.exit_code is ExitCode.OK
    ledger = tmp_path / "ledger.jsonl"
    report = ledger_status(ledger, prices={"sketch": 0.1006}, now=stepping.wall())
    (span,) = report.runs
    assert span.seconds is not None and span.seconds < 60.0
    assert "(active 2d" not in render_status_text(report).splitlines()[1]
    fold = fold_ledger(ledger, durations=True)
    assert fold.durations is not None and len(fold.durations) == 4
    # About the jobs' 5 s: timed by the engine from its POST, which the emulator's clock starts
    # a moment earlier (scaled, that moment can be tenths of a second); never two days.
    assert all(4.0 <= seconds < 30.0 for seconds in fold.durations), fold.durations


def _limited(header: str) -> EmulatorConfig:
    """A provider allowing 30 requests a minute (bursts of 3) that names when its limit resets
    in ``header`` (a UTC time, or a ``Retry-After`` date)."""
    return EmulatorConfig(
        render="placeholder",
        duration_median=3.0,
        rate_limit=30,
        rate_period=60,
        rate_burst=3,
        rate_header=header,
    )


def _paused_only_as_meant(result: RunResult, stats: dict[str, Any]) -> None:
    """Rate-limited, yet every job done well inside the backstop: each 429 paused the run for
    the second or so the limit needed, not for minutes."""
    assert stats["rate_limited"] > 0
    assert result.stats.stop_reason is None, result.stats.stop_reason
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 8}
    assert result.seconds < 150.0


@pytest.mark.parametrize("header", ["reset-at-utc", "retry-after-date"])
async def test_a_clock_ten_minutes_slow_waits_what_the_provider_meant_after_a_429(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """Segmind says when a rate limit resets as a UTC time. On a machine ten minutes slow, that
    time read as ten minutes away: every 429 paused the whole run for ten minutes. The answer's
    Date header is the provider's clock: the wait is now counted on it."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(8))
    config = _limited(header)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(
            emu.base_url, tmp_path, **{"rate.initial_per_minute": 600.0, "limits.max_runtime": BACKSTOP}
        )
        result = await run(settings, [manifest], registry, SkewedClock(clock, -600.0))
        stats = emu.stats()
    _paused_only_as_meant(result, stats)


@pytest.mark.parametrize("header", ["reset-at-utc", "retry-after-date"])
async def test_a_429_naming_a_time_without_a_date_header_is_waited_for_on_this_machines_clock(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """A gateway may answer without a ``Date`` header. The time its 429 names (a reset time, a
    ``Retry-After`` date) is then read against this machine's clock, which agrees with the
    provider's here: each pause is the second or so the limit needs, not a day cut to
    ``rate.max_wait`` (15 minutes a 429), and the run finishes well inside its backstop."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(8))
    config = _limited(header)

    async def no_date(request: web.Request, response: web.StreamResponse) -> None:
        del response.headers["Date"]  # aiohttp adds one before this hook, none after it

    state = EmulatorState(config, clock)
    app = create_app(state=state)
    app.on_response_prepare.append(no_date)
    dates: list[str | None] = []
    try:
        async with served(app) as base:
            async with aiohttp.ClientSession() as session, session.get(f"{base}/_emulator/stats") as probe:
                dates.append(probe.headers.get("Date"))
            settings = settings_for(
                base, tmp_path, **{"rate.initial_per_minute": 600.0, "limits.max_runtime": BACKSTOP}
            )
            result = await run(settings, [manifest], registry, clock)
            stats = state.snapshot()
    finally:
        state.close()
    assert dates == [None]
    _paused_only_as_meant(result, stats)


def test_earlier_runs_teach_only_durations_their_own_run_timed() -> None:
    """A ledger's ``generated`` lines seed the duration model. One of a job re-attached by a
    later run (older versions recorded its bracket too) spans the gap between two runs on the
    wall clock: three days after a VM was resumed, or a tight bracket of 13 s for a 20 s job
    after the clock was set back. Numbers that are not durations (``Infinity`` is valid to
    Python's JSON) went in too. Either made the next --max-runtime run submit nothing: its
    margin is the 90th percentile of what was learned."""

    def job(job_id: str) -> list[dict[str, Any]]:
        return [
            {"job_id": job_id, "status": "submitting", "workflow": "sketch"},
            {"job_id": job_id, "status": "submitted", "poll_url": f"https://h/{job_id}"},
        ]

    def generated(job_id: str, after: object, by: object) -> dict[str, Any]:
        return {"job_id": job_id, "status": "generated", "finished_after": after, "finished_by": by}

    records = [
        {"job_id": None, "status": "run"},
        *job("timed"),
        generated("timed", 10.0, 12.0),
        *job("re-attached"),
        *job("endless"),
        *job("negative"),
        *job("flag"),
        {"job_id": None, "status": "run"},
        generated("re-attached", 3 * DAY, 3 * DAY + 5),
        generated("endless", float("inf"), float("inf")),
        generated("negative", -5.0, 3.0),
        generated("flag", True, True),
    ]
    model = DurationModel()
    assert model.seed_from_ledger(records) == 1
    assert model.quantile("sketch", 0.9) == pytest.approx(120**0.5)
    guard = WindowGuard(deadline=600.0, durations=model, poll_interval=7.0, fallback=60.0)
    assert guard.objection(workflow="sketch", price=0.1, now=0.0) is None
