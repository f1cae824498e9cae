"""The engine against ways the real API may behave that the contract leaves open or that only show
after days, end to end over real sockets: which header it reads the key from, outputs gone
from its storage (kept about 7 days), and a storage host with its own rate limit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import (
    API_KEY,
    SPEED,
    SkewedClock,
    fronted_emulator,
    last_status,
    ledger_lines,
    run,
    settings_for,
    sketch_rows,
    write_jsonl,
)

DAY = 86400.0

pytestmark = pytest.mark.anyio

FAST = EmulatorConfig(render="placeholder", duration_median=3.0, duration_spread=0.4)


def _as_if_killed_before_saving(tmp_path: Path) -> None:
    """Make the ledger and the output folder what a kill after the provider's COMPLETED, before
    the files were saved, leaves: ``generated`` lines with the URLs, no files."""
    ledger = tmp_path / "ledger.jsonl"
    kept = [r for r in ledger_lines(ledger) if r["status"] not in ("completed", "run_end")]
    ledger.write_text("".join(json.dumps(r) + "\n" for r in kept))
    for saved in (tmp_path / "out").iterdir():
        saved.unlink()


@pytest.mark.parametrize("header", ["x-api-key", "bearer"])
async def test_a_run_completes_whichever_header_the_provider_reads_the_key_from(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """The seeds send ``Authorization: Bearer``, the SDK ``x-api-key``; which the API reads is not
    known, so batcher sends both. An emulator that read either could not tell a client that sent
    one only: against one that reads a single header, every submit and poll still carries the key."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = dataclasses.replace(FAST, auth_header=header, api_key=API_KEY)
    async with run_emulator(config, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        requests = emu.stats()["requests"]
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 3}
    assert set(requests["submit"]) == {"200"} and set(requests["poll"]) == {"200"}


async def test_an_output_gone_from_the_provider_expires_its_job_a_week_on_and_only_retry_failed_runs_it_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """An output URL answering 404 was ``download_failed`` and fetched again on every later run,
    for ever, exit 1 each night; ``--retry-failed`` fetched it again too, so nothing but a new job
    id could ever get the picture. Now a fresh one is tried again like a poll's 404 (a replica may
    lag), and the next runs fetch it again, free, while the job is younger than the 6 days the
    provider is taken to keep outputs (a host's bad day must not cost a new POST); past that it is
    ``expired``, later runs leave it, and ``--retry-failed`` sends it again (paid again)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with run_emulator(dataclasses.replace(FAST, output_ttl=0.001), clock=clock) as emu:
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        tried = emu.stats()["requests"]["output"]
        young = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        week_on = SkewedClock(clock, 7 * DAY)
        old = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, week_on)
        fetched = emu.stats()["requests"]
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, week_on)
        untouched = emu.stats()["requests"]
        emu.state.reconfigure(output_ttl=None)
        settings = settings_for(emu.base_url, tmp_path, retry_failed=True)
        retried = await run(settings, [manifest], registry, week_on)
        final = emu.stats()
    assert first.exit_code is ExitCode.FAILED and first.stats.outcomes == {"download_failed": 1}
    assert tried == {"404": 5}  # retry.max_attempts tries
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert failed[0]["retryable"] is True and "the next run fetches it again" in failed[0]["error"]
    assert young.stats.outcomes == {"download_failed": 1} and young.stats.submitted == 0
    assert young.stats.polled_for_urls == 1  # the record may hand out a new URL: it does not

    assert old.exit_code is ExitCode.FAILED and old.stats.outcomes == {"expired": 1}
    # One try each for the two resumed downloads, and one of the new URL the young run polled for.
    assert fetched["output"] == {"404": 8}
    [expired] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "expired"]
    assert "HTTP 404 fetching output: the provider no longer has it" in expired["error"]
    assert "--retry-failed" in expired["error"]

    assert again.exit_code is ExitCode.FAILED and again.earlier == {"expired": 1}
    assert untouched == fetched  # not fetched again, nor POSTed

    assert retried.exit_code is ExitCode.OK and retried.stats.outcomes == {"completed": 1}
    assert final["submissions"] == 2 and final["requests"]["output"]["200"] == 1
    assert (tmp_path / "out" / "sketch-0000.png").is_file()


async def test_a_download_left_by_an_earlier_run_is_tried_once_and_expires_only_when_old(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A week on, every output a ledger left to download may be gone: each is tried once, not
    with backoff (which would hold the few download workers for hours on a big ledger), and a job
    that old is ``expired``, and not polled for new URLs (a poll a job would spend the request
    budget on records the provider no longer keeps). One submitted yesterday is polled once for
    new URLs, their file is tried once, and it stays to be fetched again, free."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        _as_if_killed_before_saving(tmp_path)
        emu.state.reconfigure(output_ttl=0.001)  # ... and resumed after the files expired
        before = emu.stats()["requests"]["output"]
        next_day = await run(
            settings_for(emu.base_url, tmp_path), [manifest], registry, SkewedClock(clock, DAY)
        )
        middle = emu.stats()["requests"]["output"]
        week_on = await run(
            settings_for(emu.base_url, tmp_path), [manifest], registry, SkewedClock(clock, 7 * DAY)
        )
        after = emu.stats()
    assert next_day.stats.downloads_resumed == 2 and next_day.stats.outcomes == {"download_failed": 2}
    assert next_day.stats.polled_for_urls == 2
    assert middle == {**before, "404": 4}
    assert week_on.stats.downloads_resumed == 2 and week_on.stats.outcomes == {"expired": 2}
    assert week_on.stats.polled_for_urls == 0
    assert after["requests"]["output"] == {**before, "404": 6}
    assert after["submissions"] == 2 and week_on.exit_code is ExitCode.FAILED


async def test_a_gone_output_of_a_job_of_unknown_age_with_no_poll_url_is_expired_not_fetched_for_ever(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A ledger (hand-edited, or from elsewhere) whose ``submitted`` line has no time that reads
    as one and no poll_url: its job's age is not known, and no poll can ask the provider for new
    URLs. An output gone (404) from it is ``expired``, as an old job's. Taken for young, it was
    left ``download_failed``, to be fetched again and fail on every later run, for ever."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(dataclasses.replace(FAST, output_ttl=0.001), clock=clock) as emu:
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        lines = ledger_lines(ledger)
        for line in lines:
            if line["status"] == "submitted":
                line["ts"] = "the day before the migration"
                del line["poll_url"]
        ledger.write_text("".join(json.dumps(line) + "\n" for line in lines))
        second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert first.stats.outcomes == {"download_failed": 1}
    assert second.stats.outcomes == {"expired": 1} and second.stats.polled_for_urls == 0
    assert stats["submissions"] == 1 and second.exit_code is ExitCode.FAILED
    assert last_status(ledger) == {"sketch-0000": "expired"}


async def test_lapsed_output_urls_of_an_earlier_run_are_asked_for_again_by_a_poll_not_paid_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Output URLs may lapse long before the files do (an S3 presigned URL lasts hours; the
    provider keeps files about a week). A run killed after COMPLETED and resumed the next day
    fetched the stale URLs, got 403, and left the jobs ``download_failed``, for every later run to
    meet the same 403 until they expired and only a new POST could bring them back. Now such a
    job is polled once more (a request, never a POST), and its outputs are saved from the new URLs."""
    clock = ScaledClock(SPEED)
    provider = SkewedClock(clock, 0.0)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with run_emulator(dataclasses.replace(FAST, output_url_ttl=3600.0), clock=provider) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        _as_if_killed_before_saving(tmp_path)
        before = emu.stats()
        provider.offset = DAY  # resumed the next day: the URLs in the ledger have lapsed
        result = await run(
            settings_for(emu.base_url, tmp_path), [manifest], registry, SkewedClock(clock, DAY)
        )
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert (result.stats.downloads_resumed, result.stats.polled_for_urls, result.stats.submitted) == (2, 2, 0)
    assert after["output_urls_refused"] - before["output_urls_refused"] == 2
    assert after["requests"]["poll"]["200"] - before["requests"]["poll"]["200"] == 2
    assert after["submissions"] == 2 and after["requests"]["output"]["200"] == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sketch-0000.png", "sketch-0001.png"]
    lines = ledger_lines(tmp_path / "ledger.jsonl")
    regenerated = [r for r in lines if r["status"] == "generated"][2:]
    assert len(regenerated) == 2 and all("Expires=" in r["outputs"][0]["url"] for r in regenerated)
    assert [r for r in lines if r["status"] == "download_failed"] == []


async def test_a_lapsed_output_whose_record_is_gone_too_is_expired_after_one_more_poll(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The poll for new URLs is the provider's word on the job: a record it no longer keeps
    (404 through the retries) makes the job ``expired`` at once, instead of ``download_failed``
    for every run to fetch the same dead URL again until it is six days old."""
    clock = ScaledClock(SPEED)
    provider = SkewedClock(clock, 0.0)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    config = dataclasses.replace(FAST, output_url_ttl=3600.0)
    async with run_emulator(config, clock=provider) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        _as_if_killed_before_saving(tmp_path)
        emu.state.reconfigure(record_ttl=0.001)  # the provider no longer keeps the record
        provider.offset = 2 * DAY
        result = await run(
            settings_for(emu.base_url, tmp_path), [manifest], registry, SkewedClock(clock, 2 * DAY)
        )
        stats = emu.stats()
    assert result.exit_code is ExitCode.FAILED and result.stats.outcomes == {"expired": 1}
    assert result.stats.polled_for_urls == 1 and stats["submissions"] == 1
    [expired] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "expired"]
    assert "no longer knows this request" in expired["error"]


@pytest.mark.parametrize("header", ["retry-after-seconds", "retry-after-date", "reset-at-utc"])
async def test_an_output_host_that_answers_429_is_waited_for_as_long_as_it_says(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """Where outputs are hosted is not known, nor its limits. A 429 from the file host was
    tried again on our own backoff (seconds, growing from ``retry.base_delay``), which a host
    asking for a minute refused every time: the paid-for outputs ended ``download_failed``,
    exit 1, for the next run to meet the same host. Now the wait the 429 names (in any of the
    styles the API's 429s use; at most ``rate.max_wait``) is kept, and every output is saved."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = dataclasses.replace(FAST, output_rate_limit=1.0, output_rate_period=60.0, rate_header=header)
    async with run_emulator(config, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 3}
    assert stats["output_rate_limited"] >= 2 and stats["requests"]["output"]["200"] == 3
    assert stats["submissions"] == 3
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"sketch-000{i}.png" for i in range(3)]


async def test_a_429_asking_for_minutes_is_waited_for_once_not_asked_again_every_minute(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """An account allowed one POST every two minutes: the second POST's 429 says to come back in
    120 s, and the run waits that long (within ``rate.max_wait``), once. A told wait cut short
    sent the POST back into the same limit: another 429 each time, each one a request spent."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    config = dataclasses.replace(
        FAST,
        rate_limit=1.0,
        rate_period=120.0,
        rate_burst=1,
        rate_header="retry-after-seconds",
        rate_limit_polls=False,
    )
    async with run_emulator(config, clock=clock) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert stats["rate_limited"] == 1 and stats["submissions"] == 2


async def test_an_output_host_answering_503_with_a_retry_after_is_waited_for_as_long_as_it_says(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A file host down for maintenance answers 503 with ``Retry-After``, as a 429 does: the
    wait it names is kept (at most ``rate.max_wait``). Tried again on our own backoff (seconds),
    a host down for a minute refused every try, and the paid-for outputs were left
    ``download_failed`` for the next run."""
    clock = ScaledClock(SPEED)
    down_until: dict[str, float] = {}
    refused: list[str] = []

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        if kind is not None or not request.path.startswith("/outputs/"):
            return await handler(request)
        until = down_until.setdefault(request.path, clock.monotonic() + 60.0)
        if clock.monotonic() < until:
            refused.append(request.path)
            return web.Response(status=503, text="down for maintenance", headers={"Retry-After": "60"})
        return await handler(request)

    async with fronted_emulator(clock, FAST, front) as (base, state):
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
        result = await run(settings_for(base, tmp_path), [manifest], registry, clock)
        stats = state.snapshot()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert len(refused) == 2 and stats["submissions"] == 2  # one 503 an output, then the file
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sketch-0000.png", "sketch-0001.png"]


async def test_an_output_host_asking_for_a_day_is_waited_for_at_most_rate_max_wait(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A file host's 429 that names a wait of a day (a daily quota) is waited for only
    ``rate.max_wait`` a try: kept to the letter, a download worker would sleep a day and the
    run would never end. The outputs it refuses are left ``download_failed``, retryable: the
    next run fetches them, never paying again."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = dataclasses.replace(FAST, output_rate_limit=1.0, output_rate_period=86400.0)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"rate.max_wait": 5.0})
        with anyio.fail_after(60):  # a wait of a day is 36 minutes at this scale
            result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.FAILED
    assert result.stats.outcomes == {"completed": 1, "download_failed": 2}
    assert stats["output_rate_limited"] >= 2 and stats["submissions"] == 3
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert len(failed) == 2 and all(r["retryable"] is True for r in failed)
