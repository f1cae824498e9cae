"""How a run stops, at a given phase of a job: what the ledger holds, what the summary, the exit
code and ``batcher status`` say, and what the next run does.

Each job is put in its phase deterministically: a stand-in provider (real sockets, in this
process) holds an answer, and a held disk (every worker thread taken, so the ledger's fsync
waits) holds a ``submitting`` line before its POST. A first signal is the ``interrupt`` event
the CLI's handler sets; a second is the cancel scope it cancels.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.config import Settings
from batcher.engine import ExitCode, RunResult, run_batch
from batcher.status import ledger_status
from batcher.summary import render_summary
from batcher.workflows import WorkflowRegistry

from .support import (
    SPEED,
    ledger_lines,
    png_bytes,
    png_data_uri,
    run,
    served,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

PNG = png_bytes(1)
SECOND = "sketch-0001"


class Provider:
    """A stand-in Segmind: every POST is queued (and counted), every poll answers COMPLETED with one
    output, or what ``poll_answer`` says; ``before_submit`` (once the POST is counted),
    ``before_poll`` and ``before_output`` run before an answer."""

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.poll_answer: Callable[[], web.Response] | None = None
        self.before_submit: Callable[[], Any] | None = None
        self.before_poll: Callable[[], Any] | None = None
        self.before_output: Callable[[], Any] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/workflows/{wf}", self._submit)
        app.router.add_get("/workflows/request/{rid}", self._poll)
        app.router.add_get("/out/{name}", self._output)
        return app

    async def _submit(self, request: web.Request) -> web.Response:
        await request.read()
        self.posts.append(request.path)
        rid = f"{len(self.posts):032x}"
        if self.before_submit is not None:
            await self.before_submit()
        url = f"{request.url.origin()}/workflows/request/{rid}"
        return web.json_response({"request_id": rid, "poll_url": url, "status": "QUEUED"})

    async def _poll(self, request: web.Request) -> web.Response:
        if self.before_poll is not None:
            await self.before_poll()
        if self.poll_answer is not None:
            return self.poll_answer()
        out = [{"keyname": "image", "value": {"data": f"{request.url.origin()}/out/x.png", "type": "image"}}]
        return web.json_response({"status": "COMPLETED", "output": json.dumps(out)})

    async def _output(self, request: web.Request) -> web.Response:
        if self.before_output is not None:
            await self.before_output()
        return web.Response(body=PNG, content_type="image/png")


class HeldDisk:
    """The ledger's disk made to hang: every worker thread of the run's thread pool is taken, so
    an fsync (which runs in one) waits until :meth:`release`. Nothing else of a run uses them."""

    def __init__(self) -> None:
        self._limiter = anyio.to_thread.current_default_thread_limiter()
        self._tokens: list[object] = []

    @property
    def held(self) -> bool:
        return bool(self._tokens)

    async def hold(self) -> None:
        while len(self._tokens) < self._limiter.total_tokens:
            token = object()
            await self._limiter.acquire_on_behalf_of(token)
            self._tokens.append(token)

    def release(self) -> None:
        while self._tokens:
            self._limiter.release_on_behalf_of(self._tokens.pop())


async def until(condition: Callable[[], bool]) -> None:
    """Wait, without a timer of our own, until ``condition`` holds: it is checked each time
    every other task is waiting."""
    with anyio.fail_after(30):
        while not condition():
            await anyio.wait_all_tasks_blocked()


def last_line(ledger: Path, job_id: str) -> dict[str, Any] | None:
    lines = [r for r in ledger_lines(ledger) if r.get("job_id") == job_id]
    return lines[-1] if lines else None


@asynccontextmanager
async def running(
    settings: Settings, manifest: Path, registry: WorkflowRegistry
) -> AsyncIterator[tuple[anyio.Event, anyio.CancelScope, list[RunResult]]]:
    """A run in the background, as the CLI makes it: (its interrupt, which the first signal sets;
    its cancel scope, which the second cancels; its result once it ended in order)."""
    interrupt, results = anyio.Event(), []

    async def go(scope: anyio.CancelScope) -> None:
        with scope:
            results.append(
                await run_batch(
                    settings,
                    [manifest],
                    registry=registry,
                    clock=ScaledClock(SPEED),
                    rng=random.Random(0),
                    interrupt=interrupt,
                )
            )

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        tg.start_soon(go, scope)
        yield interrupt, scope, results


def _next_run_settings(base: str, tmp: Path) -> Settings:
    return settings_for(base, tmp, concurrency=1, **{"ledger.unknown_submit": "fail"})


async def _check_unsent_and_next_run(
    tmp: Path,
    provider: Provider,
    base: str,
    registry: WorkflowRegistry,
    manifest: Path,
    results: list[RunResult],
) -> None:
    """The second job never left: the ledger says so, ``status`` and the summary agree, and the
    next run sends it as a new job (under ``unknown_submit: fail`` an unknown outcome fails it)."""
    ledger = tmp / "ledger.jsonl"
    assert len(provider.posts) == 1
    line = last_line(ledger, SECOND)
    assert line is not None and line["status"] == "deferred", line
    assert line["error"].startswith("not sent: the run stopped before its POST was sent")
    report = ledger_status(ledger, prices={}, now=time.time())
    assert report.next_run["unknown"] == 0 and report.unknown_outcomes == 0
    assert report.next_run["submit"] == 1
    if results:  # the first signal: the run ended in order, exit 130
        (first,) = results
        text = render_summary(first)
        assert first.exit_code is ExitCode.INTERRUPTED
        assert first.stats.unknown_outcomes == 0 and first.stats.cut_submits == 0, text
        assert first.stats.left == 1 and report.not_started == 1, text
        assert "outcome unknown" not in text.lower(), text
    provider.before_poll = provider.before_output = None
    second = await run(_next_run_settings(base, tmp), [manifest], registry, ScaledClock(SPEED))
    assert second.exit_code is ExitCode.OK, render_summary(second)
    assert second.stats.resubmitted_unknown == 0 and second.stats.submitted == 1
    assert len(provider.posts) == 2
    assert (last_line(ledger, SECOND) or {}).get("status") == "completed"


@pytest.mark.parametrize("signal", ["first", "second"])
async def test_a_job_stopped_while_its_submitting_line_awaits_its_fsync_is_not_sent_and_not_unknown(
    tmp_path: Path, registry: WorkflowRegistry, signal: str
) -> None:
    """A signal while a job's ``submitting`` line waits for its fsync: its POST has not left. The
    first signal must not send it once the line is synced (it was sent after the signal), and
    neither signal may leave the line alone in the ledger: the next run took it for a POST of
    unknown outcome (and under ``unknown_submit: fail`` failed for good a job never sent)."""
    provider, disk, polls = Provider(), HeldDisk(), []

    async def hold_disk() -> None:
        polls.append(1)
        if len(polls) == 1:  # the first job's COMPLETED: the second is sent next, onto a held disk
            await disk.hold()

    provider.before_poll = hold_disk
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    try:
        async with served(provider.app()) as base:
            settings = settings_for(base, tmp_path, concurrency=1)
            with anyio.fail_after(60):
                async with running(settings, manifest, registry) as (interrupt, scope, results):
                    await until(lambda: (last_line(ledger, SECOND) or {}).get("status") == "submitting")
                    if signal == "first":
                        interrupt.set()
                        await anyio.wait_all_tasks_blocked()  # the run has stopped submitting
                        disk.release()  # the line reaches the disk now
                    else:
                        scope.cancel()
            disk.release()
            await _check_unsent_and_next_run(tmp_path, provider, base, registry, manifest, results)
    finally:
        disk.release()


@pytest.mark.parametrize("signal", ["first", "second"])
async def test_a_post_stopped_while_it_waits_for_a_connection_is_not_sent_and_not_unknown(
    tmp_path: Path, registry: WorkflowRegistry, signal: str
) -> None:
    """A signal while a POST waits for a free connection (``api.max_connections``, shared with
    downloads, all busy): nothing left this machine, so it is not a POST of unknown outcome (it
    was recorded ``submit_unknown`` and counted as cut off, and the next run resent it as such)."""
    provider, release, fetching = Provider(), anyio.Event(), anyio.Event()

    async def slow_output() -> None:
        fetching.set()
        await release.wait()  # the one connection is busy with this download

    provider.before_output = slow_output
    sending = anyio.Event()

    class Sent(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith(f"{SECOND}: submitting recorded; sending its POST"):
                sending.set()

    logger, handler = logging.getLogger("batcher"), Sent(logging.DEBUG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    try:
        async with served(provider.app()) as base:
            settings = settings_for(base, tmp_path, concurrency=1, **{"api.max_connections": 1})
            with anyio.fail_after(60):
                async with running(settings, manifest, registry) as (interrupt, scope, results):
                    await fetching.wait()
                    await sending.wait()  # its POST went on to wait for the connection
                    if signal == "first":
                        interrupt.set()
                    else:
                        scope.cancel()
            release.set()
            await _check_unsent_and_next_run(tmp_path, provider, base, registry, manifest, results)
    finally:
        release.set()
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.mark.parametrize("budget", [None, 0.15], ids=["no budget", "after the budget stopped submitting"])
async def test_a_key_refused_on_a_poll_exits_3_and_counts_the_job_in_flight(
    tmp_path: Path, registry: WorkflowRegistry, budget: float | None
) -> None:
    """A 401 on a poll stops the run at once: exit 3 and the refusal in the summary, even after a
    guard had stopped submissions (it exited 1 saying only "budget"), and the job it was polling
    (paid for, re-attached next run) counted in flight, as ``status`` counts it (the summary said
    "Nothing to do: the manifest has no jobs")."""
    provider = Provider()
    provider.poll_answer = lambda: web.json_response({"error": "Unauthorized"}, status=401)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with served(provider.app()) as base:
        settings = settings_for(base, tmp_path, concurrency=2, **{"limits.budget_usd": budget})
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
    text = render_summary(result)
    assert result.exit_code is ExitCode.PROVIDER, text
    assert "Stopped submitting: the provider refused the API key (HTTP 401" in text
    posted = len(provider.posts)
    assert f"{posted} still in flight (re-attached next run)" in text, text
    report = ledger_status(tmp_path / "ledger.jsonl", prices={}, now=time.time())
    assert result.stats.in_flight == report.next_run["attach"] == report.in_flight_total == posted
    assert "refused the API key" in (report.stop_reason or "")


async def test_a_signal_is_acted_on_while_a_long_manifest_of_finished_rows_is_read(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Rows that need nothing from a run (done in earlier runs) never made the feeder wait, so it
    held the event loop until the end of the manifest (seconds, for a nightly manifest of a
    million rows): a job re-attached from the ledger was not polled, and a signal (even the second,
    "stop at once") was not acted on, until then. Now the run stops while it reads, says rows were
    left unread (as ``status`` does), and the next run reads them."""
    done, rid = 40_000, "a" * 32
    provider, interrupted = Provider(), anyio.Event()
    manifest = tmp_path / "m.jsonl"
    ledger = tmp_path / "ledger.jsonl"
    async with served(provider.app()) as base:
        rows = [{"id": "attached", "workflow": "sketch", "input": {"input_image": png_data_uri(0)}}]
        rows += [
            {
                "id": f"done-{i:05d}",
                "workflow": "sketch",
                "input": {"input_image": f"https://img.test/{i}.png"},
            }
            for i in range(done)
        ]
        write_jsonl(manifest, rows)
        lines = [
            {"ts": "2026-11-21T00:00:00.000Z", "job_id": r["id"], "status": "completed"} for r in rows[1:]
        ]
        lines.append(
            {
                "ts": "2026-11-21T00:00:00.000Z",
                "job_id": "attached",
                "status": "submitted",
                "workflow": "sketch",
                "request_id": rid,
                "poll_url": f"{base}/workflows/request/{rid}",
            }
        )
        write_jsonl(ledger, lines)

        async def first_poll() -> None:
            interrupted.set()  # the re-attached job is polled: a signal comes now

        provider.before_poll = first_poll
        provider.poll_answer = lambda: web.json_response({"status": "PROCESSING", "output": ""})
        settings = settings_for(base, tmp_path)
        with anyio.fail_after(60):
            async with running(settings, manifest, registry) as (interrupt, _scope, results):
                await interrupted.wait()
                interrupt.set()
        (first,) = results
        assert first.stats.skipped < done, "the manifest was read to its end before the signal"
        text = render_summary(first)
        assert first.exit_code is ExitCode.INTERRUPTED and first.stats.rows_unread, text
        assert (
            "1 still in flight (re-attached next run)" in text and "the rest of the manifest not read" in text
        ), text
        report = ledger_status(ledger, prices={}, now=time.time())
        assert report.rows_unread and report.next_run["attach"] == 1
        provider.before_poll = provider.poll_answer = None
        second = await run(settings, [manifest], registry, ScaledClock(SPEED))
    assert second.exit_code is ExitCode.OK, render_summary(second)
    assert second.stats.skipped == done and not second.stats.rows_unread
    assert provider.posts == [] and (last_line(ledger, "attached") or {}).get("status") == "completed"


async def test_a_post_on_the_wire_at_a_stop_is_let_land_and_its_job_re_attached_not_paid_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A first signal while a POST waits for its answer: nothing more is sent, but that POST is
    given a moment (``SUBMIT_GRACE``) to land, so its poll_url reaches the ledger. The job is in
    flight, and the next run re-attaches it: paid once. Cut off at once instead, its outcome was
    unknown, and the next run POSTed it again (paying twice if the first had started it)."""
    provider, answered = Provider(), anyio.Event()
    provider.before_submit = answered.wait
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with served(provider.app()) as base:
        settings = settings_for(base, tmp_path, concurrency=1)
        async with running(settings, manifest, registry) as (interrupt, _, results):
            await until(lambda: len(provider.posts) == 1)  # on the wire, its answer held
            interrupt.set()
            await anyio.wait_all_tasks_blocked()  # the run has stopped sending and waits for it
            answered.set()
        (first,) = results
        assert (last_line(ledger, "sketch-0000") or {}).get("status") == "submitted"
        assert first.exit_code is ExitCode.INTERRUPTED
        assert first.stats.cut_submits == 0 and first.stats.unknown_outcomes == 0
        assert first.stats.in_flight == 1
        provider.before_submit = None
        second = await run(settings, [manifest], registry, ScaledClock(SPEED))
    assert second.stats.outcomes == {"completed": 1} and second.stats.submitted == 0
    assert len(provider.posts) == 1
