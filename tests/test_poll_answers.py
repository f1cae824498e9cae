"""What a poll's answer means for its job and the run, end to end over real sockets: the emulator
served behind a front that answers some of its submits or polls in its place (a provider's bad
spell: a replica that has not seen a new request, a key revoked mid-run, a billing refusal)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, EmulatorState
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import (
    SPEED,
    fronted_emulator,
    last_status,
    ledger_lines,
    run,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}
#: What the front says with each status it answers in the emulator's place.
MESSAGES = {
    401: "Invalid API key",
    404: "Request not found",
    406: "Insufficient credits",
    500: "internal error",
}
#: settings_for's retry.max_attempts.
ATTEMPTS = settings_for("http://unused", Path()).retry.max_attempts

#: ``answer(kind, n)``: for the ``n``th (from 1) request of a kind ("submit" or "poll"), the
#: status the front answers in the emulator's place, or None to let the emulator answer.
Answer = Callable[[str, int], int | None]


@contextlib.asynccontextmanager
async def _fronted(
    clock: ScaledClock, answer: Answer, **changes: float | str
) -> AsyncIterator[tuple[str, EmulatorState, Counter[str]]]:
    """The emulator behind ``answer``; yields its base URL, its state, and how many requests of
    each kind the front answered in its place."""
    seen: Counter[str] = Counter()
    replaced: Counter[str] = Counter()

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        if kind is None:
            return await handler(request)
        seen[kind] += 1
        status = answer(kind, seen[kind])
        if status is None:
            return await handler(request)
        await request.read()
        replaced[kind] += 1
        return web.json_response({"error": MESSAGES[status]}, status=status)

    config = EmulatorConfig(**{**FAST, **changes})  # type: ignore[arg-type]
    async with fronted_emulator(clock, config, front) as (base, state):
        yield base, state, replaced


async def test_a_post_that_needed_retries_starts_polling_with_its_full_allowance_of_poll_errors(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A job whose POST got 500s before its 200 must not carry those errors into polling: with
    them still counted, fewer poll 500s than ``retry.max_attempts`` failed the job (paid for,
    nothing saved) in a run that should have completed it. Each phase gets its own allowance:
    the first ``max_attempts - 1`` POSTs and polls are answered 500, and the job completes,
    paid once."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(clock, lambda kind, n: 500 if n < ATTEMPTS else None) as (base, state, replaced):
        result = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        submissions = state.snapshot()["submissions"]
    assert result.stats.outcomes == {"completed": 1} and result.exit_code is ExitCode.OK
    assert replaced == {"submit": ATTEMPTS - 1, "poll": ATTEMPTS - 1} and submissions == 1
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}


@pytest.mark.parametrize(("not_found", "outcome"), [(ATTEMPTS - 1, "completed"), (ATTEMPTS, "expired")])
async def test_a_404_is_expired_only_when_it_persists_through_every_retry(
    tmp_path: Path, registry: WorkflowRegistry, not_found: int, outcome: str
) -> None:
    """A poll answered 404 may be a replica that has not seen a new request yet: expiring the
    job at once loses a paid job that was about to finish (nothing saved, exit 1). Only
    ``retry.max_attempts`` 404s in a row mean its record is gone; one fewer, and it completes."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(clock, lambda kind, n: 404 if kind == "poll" and n <= not_found else None) as (
        base,
        state,
        replaced,
    ):
        result = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        submissions = state.snapshot()["submissions"]
    assert result.stats.outcomes == {outcome: 1}
    assert replaced["poll"] == not_found and submissions == 1
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": outcome}


async def test_a_key_refused_on_a_poll_stops_the_run_at_once_and_leaves_the_job_to_re_attach(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A key revoked mid-run (a poll answered 401): every further request would be refused too,
    so nothing more is sent (no POST of the rows not yet sent, no retries of the poll) and the
    run exits 3 naming the key. The job stays in flight with its poll_url for the next run;
    retrying the poll as a 5xx instead ended it ``failed`` and went on POSTing the other rows."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with _fronted(clock, lambda kind, n: 401 if kind == "poll" else None) as (base, state, replaced):
        result = await run(settings_for(base, tmp_path, concurrency=1), [manifest], registry, clock)
        submissions = state.snapshot()["submissions"]
    assert result.exit_code is ExitCode.PROVIDER
    assert "refused the API key" in (result.stats.stop_reason or "")
    assert submissions == 1 and replaced["poll"] == 1
    assert result.stats.outcomes == {} and result.stats.in_flight == 1
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "submitted"}


async def test_a_poll_refused_for_credits_stops_submitting_and_the_job_is_still_polled_to_the_end(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A poll answered 406 "insufficient credits": more POSTs would only be refused, so none is
    sent (the other rows are left for the next run, exit 3 saying so), but the job already paid
    for is polled on and saved, not abandoned in flight."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    async with _fronted(clock, lambda kind, n: 406 if kind == "poll" and n == 1 else None) as (
        base,
        state,
        replaced,
    ):
        result = await run(settings_for(base, tmp_path, concurrency=1), [manifest], registry, clock)
        submissions = state.snapshot()["submissions"]
    assert result.exit_code is ExitCode.PROVIDER
    assert "insufficient credits" in (result.stats.stop_reason or "")
    assert replaced["poll"] == 1 and submissions == 1
    assert result.stats.outcomes == {"completed": 1} and result.stats.left == 2


async def test_poll_errors_between_good_answers_never_add_up_to_failing_a_long_job(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``retry.max_attempts`` bounds poll errors in a row, not in a job's life: a provider that
    answers every other poll with a 500 must not fail a long job (paid for, nothing saved)
    after a few minutes of otherwise good answers."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(
        clock,
        lambda kind, n: 500 if kind == "poll" and n % 2 else None,
        duration_median=60.0,
        duration_spread=0.0,
    ) as (base, _, replaced):
        settings = settings_for(base, tmp_path, **{"poll.policy": "fixed"})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes == {"completed": 1}
    assert replaced["poll"] > ATTEMPTS  # more errors in all than one spell may have


async def test_the_balance_a_run_ends_with_is_the_one_its_last_poll_answer_gave(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The provider bills a job when it completes, so the POST's answer gives the balance before
    the charge and the poll that finds the job done gives it after. The balance the run shows
    (progress, summary) must be the latest, not the one from before anything was billed."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(clock, lambda kind, n: None, credits=1.0) as (base, state, _):
        result = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        stats = state.snapshot()
    assert result.stats.outcomes == {"completed": 1} and stats["charged_usd"] > 0
    assert result.stats.credits == pytest.approx(stats["credits_remaining"], abs=1e-4)


@pytest.mark.parametrize("ending", ["completed", "failed", "failed-422", "unknown-status"])
async def test_the_balance_a_run_ends_with_is_the_last_one_an_answer_gave_however_its_job_ended(
    tmp_path: Path, registry: WorkflowRegistry, ending: str
) -> None:
    """Each answer's ``x-remaining-credits`` is the latest word on the balance, whatever the
    answer says of the job: COMPLETED, FAILED (as a 200, or as a 422), or a status the contract
    does not name, polled until ``poll.give_up_after``. The run shows the last one it read, not
    one from an earlier answer. (Here every answer gives a lower balance than the one before.)"""
    clock = ScaledClock(SPEED)
    told: list[float] = []

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        answer = await handler(request)
        if kind is None:
            return answer
        if kind == "poll" and ending == "unknown-status":
            answer = web.json_response({"status": "WAITING_FOR_GPU"})
        told.append(100.0 - len(told))
        answer.headers["x-remaining-credits"] = f"{told[-1]}"
        return answer

    changes = {"fail_rate": 1.0} if ending.startswith("failed") else {}
    if ending == "failed-422":
        changes["failed_http_status"] = 422
    config = EmulatorConfig(**{**FAST, **changes})  # type: ignore[arg-type]
    async with fronted_emulator(clock, config, front) as (base, _):
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        settings = settings_for(base, tmp_path, **{"poll.give_up_after": 20.0})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes.total() + result.stats.gave_up_polling == 1
    assert len(told) >= 3 and result.stats.credits == told[-1]


async def test_a_run_whose_polls_all_fail_shows_the_balance_its_posts_were_told(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A poll endpoint that answers only errors leaves the POSTs' answers as the run's latest
    word on the balance: the summary shows it, not nothing."""
    clock = ScaledClock(SPEED)

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        if kind == "poll":
            return web.json_response({"error": MESSAGES[500]}, status=500)
        answer = await handler(request)
        if kind == "submit":
            answer.headers["x-remaining-credits"] = "42.0"
        return answer

    config = EmulatorConfig(**FAST)  # type: ignore[arg-type]
    async with fronted_emulator(clock, config, front) as (base, _):
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
        result = await run(settings_for(base, tmp_path, concurrency=1), [manifest], registry, clock)
    assert result.stats.outcomes == {"failed": 2} and result.stats.submitted == 2
    assert result.stats.credits == 42.0


async def test_polls_that_keep_failing_end_the_job_retryable_and_the_next_run_re_attaches_it(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Polls answered 500 in a row: after ``retry.max_attempts`` of them (not one more, not
    forever: the run must end) the job is ``failed``, retryable, because it is paid for. The
    next run polls it by its poll_url and saves it without a new POST; a re-attached job's
    age spans the gap between the runs, so its ``generated`` line gives no duration bracket."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    down = True
    async with _fronted(clock, lambda kind, n: 500 if kind == "poll" and down else None) as (
        base,
        state,
        replaced,
    ):
        first = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        polled = replaced["poll"]
        down = False
        second = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        submissions = state.snapshot()["submissions"]
    assert first.stats.outcomes == {"failed": 1} and polled == ATTEMPTS
    [failed] = [r for r in ledger_lines(ledger) if r["status"] == "failed"]
    assert failed["retryable"] is True
    assert second.stats.outcomes == {"completed": 1} and submissions == 1
    [generated] = [r for r in ledger_lines(ledger) if r["status"] == "generated"]
    assert "finished_after" not in generated and "finished_by" not in generated


async def test_a_generated_line_brackets_the_duration_between_the_last_unfinished_poll_and_the_done_one(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``finished_after``/``finished_by`` are what later runs learn poll timing from (and what
    the report charts): the age at the last poll that found the job unfinished, then at the one
    that found it done. A 6 s job polled every 2 s from 1 s was unfinished at some age above 0
    and below 6 s, and was done later than that."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(clock, lambda kind, n: None, duration_median=6.0, duration_spread=0.0) as (
        base,
        _,
        _,
    ):
        settings = settings_for(base, tmp_path, **{"poll.policy": "fixed"})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes == {"completed": 1}
    [generated] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "generated"]
    assert 0.0 < generated["finished_after"] < 6.0
    assert generated["finished_after"] < generated["finished_by"]


async def test_the_fixed_policy_polls_first_at_first_delay_then_every_interval(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``poll.policy: fixed`` with ``first_delay`` 1 s and ``interval`` 6 s, and a 4 s job: one
    poll at 1 s finds it running, the next at 7 s finds it done. Two polls, recorded on its
    ``generated`` line; polling every 1 s spends requests the user set out to save, and a
    first poll at 6 s notices short jobs late."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _fronted(clock, lambda kind, n: None, duration_median=4.0, duration_spread=0.0) as (
        base,
        state,
        _,
    ):
        changes = {"poll.policy": "fixed", "poll.first_delay": 1.0, "poll.interval": 6.0}
        result = await run(settings_for(base, tmp_path, **changes), [manifest], registry, clock)
        polls = state.snapshot()["requests"]["poll"]
    assert result.stats.outcomes == {"completed": 1}
    [generated] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "generated"]
    assert generated["polls"] == 2 and polls == {"200": 2}
