"""The duration model's own contract (batcher/durations.py, pure): which poll brackets teach it
a duration, what it keeps, and what it learns from earlier runs' ledger lines.

The poll policy times every first poll and follow-up from these answers, so a wrong one costs
requests (polls too early) or finishes a run late (polls too late). The simulated-clock policy
tests judge whole runs with the slack those need; these pin the model's answers exactly. The
last two run the engine against the emulator: what a run's own polls feed the model."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest

from batcher.clock import ScaledClock
from batcher.durations import CORE, TIGHT, WINDOW, DurationModel, recorded_seconds
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import SPEED, ledger_lines, run, settings_for, sketch_rows, write_jsonl

WF = "sketch"


def test_a_bracket_up_to_tight_times_its_lower_bound_is_a_duration_wider_ones_only_an_upper_bound() -> None:
    """A job polled unfinished at 1 s and found done at 2.6 s lasted about 1.6 s (the bracket's
    geometric midpoint). One found done at 2.7 s may have lasted anything in between: it says
    only "done by 2.7 s". Counting wide brackets as durations drags the quantiles toward the
    poll spacing, and every later first poll with them."""
    assert TIGHT == 2.6  # polls spaced 2x a job's age while learning, plus 30% for queueing
    model = DurationModel()
    model.observe(WF, 1.0, 2.6)
    model.observe(WF, 1.0, 2.7)
    model.observe(WF, 1.0, 10.0)
    assert model.tight(WF) == 1
    assert model.quantile(WF, 0.5) == pytest.approx(math.sqrt(2.6))
    assert model.upper_quantile(WF, 0.0) == 2.6 and model.upper_quantile(WF, 0.99) == 10.0
    assert model.upper_median(WF) == 2.7
    # Learning goes on after a question: answers follow what was observed since.
    model.observe(WF, 2.0, 2.0)
    model.observe(WF, 2.0, 2.0)
    assert model.quantile(WF, 0.5) == 2.0 and model.tight(WF) == 3
    assert model.upper_median(WF) == 2.6


def test_a_job_found_done_at_its_first_poll_teaches_only_done_by_never_a_duration_of_zero() -> None:
    """No poll found it unfinished (its lower bound is 0): even a bracket of (0, 0), as a ledger
    rounds a job done within half a millisecond, is no duration. Learned as 0 s, it would set the
    first poll at once, for every job of the workflow."""
    model = DurationModel()
    model.observe(WF, 0.0, 0.0)
    model.observe(WF, 0.0, 3.0)
    assert model.tight(WF) == 0
    assert model.quantile(WF, 0.5) is None and model.cdf(WF, 1.0) is None
    assert model.upper_quantile(WF, 0.0) == 0.0 and model.upper_quantile(WF, 1.0) == 3.0


def test_bounds_out_of_order_are_clamped_never_a_duration_past_done_by() -> None:
    """A lower bound past the upper one (impossible on one clock; a hand-edited line) is cut to
    it, and a negative "done by" to 0: a duration is never later than the poll that found the
    job done, never negative."""
    model = DurationModel()
    model.observe(WF, 3.0, 2.0)
    assert model.quantile(WF, 0.5) == 2.0
    other = DurationModel()
    other.observe(WF, 0.5, -1.0)
    assert other.upper_median(WF) == 0.0 and other.tight(WF) == 0


def test_the_first_durations_are_kept_for_good_beside_a_window_of_recent_ones() -> None:
    """Sparse polling makes tight brackets mostly of the slow tail. The first ``CORE`` of a
    workflow stay, beside the last ``WINDOW``: after 32 one-second jobs and 480 ten-second ones,
    the model still knows that some jobs take a second, and the median follows the recent ones.
    Every tight bracket counts toward "known"."""
    model = DurationModel()
    for _ in range(CORE):
        model.observe(WF, 1.0, 1.0)
    for _ in range(WINDOW + 100):
        model.observe(WF, 10.0, 10.0)
    assert model.tight(WF) == CORE + WINDOW
    assert model.quantile(WF, 0.0) == 1.0
    assert model.quantile(WF, 0.05) == 1.0  # 32 of 512 points: 6%
    assert model.quantile(WF, 0.5) == 10.0
    assert model.cdf(WF, 5.0) == pytest.approx(CORE / (CORE + WINDOW))


def test_cdf_is_the_share_of_learned_durations_at_or_below_an_age() -> None:
    """ "Done by t" includes a job that took exactly t. The follow-up poll of a job still running
    at t aims at where the jobs of its age finish, computed from this share."""
    model = DurationModel()
    for seconds in (1.0, 2.0, 3.0, 4.0):
        model.observe(WF, seconds, seconds)
    assert model.cdf(WF, 0.5) == 0.0
    assert model.cdf(WF, 1.0) == 0.25
    assert model.cdf(WF, 2.5) == 0.5
    assert model.cdf(WF, 4.0) == 1.0
    assert model.cdf("another workflow", 4.0) is None


def _ledger(*jobs: tuple[str, Any, Any], runs: int = 1) -> list[dict[str, Any]]:
    """``runs`` run lines, then for each (id, finished_after, finished_by) a submitting and a
    generated line."""
    records: list[dict[str, Any]] = [{"job_id": None, "status": "run"} for _ in range(runs)]
    for job_id, after, by in jobs:
        records.append({"job_id": job_id, "status": "submitting", "workflow": WF})
        records.append({"job_id": job_id, "status": "generated", "finished_after": after, "finished_by": by})
    return records


def test_earlier_runs_teach_only_brackets_that_are_finite_ordered_numbers() -> None:
    """A hand-edited ledger may say ``Infinity`` (valid to Python's JSON), ``true``, a negative
    number or bounds out of order. Each is skipped. Learned, ``Infinity`` would put a job's
    polls off for ever, ``true`` would be a one-second job."""
    model = DurationModel()
    learned = model.seed_from_ledger(
        _ledger(
            ("good", 2.0, 3.0),
            ("infinite", 2.0, math.inf),
            ("not a number", math.nan, 3.0),
            ("a boolean", True, True),
            ("negative", -1.0, 3.0),
            ("out of order", 5.0, 2.0),
            ("text", "2", "3"),
        )
    )
    assert learned == 1
    assert model.tight(WF) == 1
    assert model.quantile(WF, 0.5) == pytest.approx(math.sqrt(6.0))
    assert model.upper_quantile(WF, 1.0) == 3.0


def test_a_job_is_learned_from_once_even_with_two_generated_lines() -> None:
    """A job's outputs fetched again in the same run (a download that failed, polled afresh)
    leaves a second ``generated`` line. It is one job, counted once: twice, the job polled most
    would weigh most."""
    records = _ledger(("twice", 2.0, 3.0))
    records.append({"job_id": "twice", "status": "generated", "finished_after": 2.0, "finished_by": 3.0})
    model = DurationModel()
    assert model.seed_from_ledger(records) == 1
    assert model.tight(WF) == 1


def test_recorded_seconds_accepts_finite_non_negative_numbers_only() -> None:
    assert recorded_seconds(0) == 0.0
    assert recorded_seconds(2.5) == 2.5
    for bad in (True, False, -0.1, math.inf, -math.inf, math.nan, "3", None, [1.0]):
        assert recorded_seconds(bad) is None, bad


# --- what a run learns from its own polls, against the emulator -------------------------------


async def _generated(
    tmp: Path, registry: WorkflowRegistry, **changes: Any
) -> tuple[list[dict[str, Any]], int]:
    """Forty 5 s jobs in four slots, 600 requests a minute (requests to spare), the poll
    settings ``changes``: the ``generated`` lines in ledger order, and the polls the run sent."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp / "m.jsonl", sketch_rows(40))
    config = EmulatorConfig(render="placeholder", duration_median=5.0, duration_spread=0.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(
            emu.base_url, tmp, concurrency=4, **{"rate.requests_per_minute": 600.0, **changes}
        )
        result = await run(settings, [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 40
    generated = [r for r in ledger_lines(tmp / "ledger.jsonl") if r["status"] == "generated"]
    return generated, result.stats.requests["poll"]


@pytest.mark.anyio
async def test_the_ledger_brackets_each_duration_between_the_last_running_poll_and_the_done_one(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Polls every second from 1 s: each job was last seen running at 4-5 s and found done by
    the next poll. The bracket is what the next run learns durations from (``seed_from_ledger``):
    recorded as "after 0 s" (the last running poll forgotten) it teaches nothing, and recorded
    as "after" the poll that found it done it teaches every job as longer than it was."""
    generated, _ = await _generated(
        tmp_path, registry, **{"poll.policy": "fixed", "poll.interval": 1.0, "poll.first_delay": 1.0}
    )
    for line in generated:
        assert 0.0 < line["finished_after"] < line["finished_by"], line
        assert line["finished_by"] >= 5.0 and line["finished_by"] / line["finished_after"] < TIGHT, line


@pytest.mark.anyio
async def test_a_run_with_requests_to_spare_learns_its_durations_and_notices_jobs_soon_after_they_finish(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Adaptive polls from a guess of 4 s: once the first jobs taught the 5 s duration, the later
    ones are noticed within a tenth of it (2-3% late today), at about four polls a job. Learning
    from "after 0 s" (no tight bracket, ever) left the run guessing at 1.5x each job's age:
    20-35% late, a slot idle that long each job. The first-poll tracker fed by every poll, not
    only a job's first, pushed the first poll late and paid 7 polls a job."""
    generated, polls = await _generated(
        tmp_path, registry, **{"poll.policy": "adaptive", "poll.first_delay": 4.0}
    )
    late = [line["finished_by"] / 5.0 - 1.0 for line in generated[20:]]
    assert statistics.median(late) <= 0.10, late
    assert polls <= 5.5 * 40, polls
