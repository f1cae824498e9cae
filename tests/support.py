"""Helpers shared by the engine tests: manifests, settings pointed at an emulator, a fast clock."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import io
import json
import logging
import random
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image

from batcher.clock import Clock
from batcher.config import (
    ApiSettings,
    LedgerSettings,
    OutputSettings,
    PollSettings,
    RateSettings,
    RetrySettings,
    Settings,
)
from batcher.emulator import EmulatorConfig, EmulatorState, create_app
from batcher.engine import RunResult, run_batch
from batcher.ledger import read_records
from batcher.workflows import WorkflowRegistry

API_KEY = "sk-test-7f3a9c1e5b2d4f60"
#: Emulator and engine share one clock running this many times faster than real time, so the
#: provider's 7-second polls and multi-second jobs pass in a fraction of a second, consistently.
SPEED = 40.0


class LoopClock:
    """The running event loop's clock (what the transport's deadlines and asyncio's timers read),
    moved on by :meth:`advance` instead of waited for."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        loop = asyncio.get_running_loop()
        real = loop.time
        self.offset = 0.0
        monkeypatch.setattr(loop, "time", lambda: real() + self.offset)

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """``app`` (a stand-in server: a hostile provider, a slow CDN) on a real socket on a free
    port of 127.0.0.1 until the block ends; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


#: ``front(kind, request, handler)``: a provider's answer to ``request``, where ``kind`` is
#: "submit" (a POST), "poll" (a request's status) or None (anything else); ``await
#: handler(request)`` is the emulator's own answer.
Front = Callable[[str | None, web.Request, Handler], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def fronted_emulator(
    clock: Clock, config: EmulatorConfig, front: Front
) -> AsyncIterator[tuple[str, EmulatorState]]:
    """The emulator served behind ``front``, which may answer a request in its place or change
    its answer (a provider's bad spell, a loosely spelled answer); yields its base URL and its
    state."""
    state = EmulatorState(config, clock)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        kind = "submit" if request.method == "POST" else "poll" if "/request/" in request.path else None
        return await front(kind, request, handler)

    app = create_app(state=state)
    app.middlewares.insert(0, middleware)
    try:
        async with served(app) as base:
            yield base, state
    finally:
        state.close()


T = TypeVar("T")


def traced_peak(call: Callable[[], T]) -> tuple[T, int]:
    """What ``call()`` returns, and the peak of Python memory it allocated (tracemalloc), bytes."""
    tracemalloc.start()
    try:
        result = call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def png_bytes(seed: int = 0, size: tuple[int, int] = (48, 32)) -> bytes:
    """A small, distinct PNG (the bytes of a local image input)."""
    rnd = random.Random(seed)
    img = Image.new("RGB", size, (rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    for _ in range(6):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        img.paste(
            (rnd.randrange(256), 0, rnd.randrange(256)), (x, y, min(size[0], x + 9), min(size[1], y + 7))
        )
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def png_data_uri(seed: int = 0, size: tuple[int, int] = (48, 32)) -> str:
    """A small, distinct PNG as a data: URI (sketch inputs that need no network)."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(seed, size)).decode()


def sketch_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"id": f"sketch-{i:04d}", "workflow": "sketch", "input": {"input_image": png_data_uri(i)}}
        for i in range(start, start + n)
    ]


def blog_rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "id": f"blog-{i:04d}",
            "workflow": "blog-image",
            "input": {"title": f"Post number {i}", "description": "A short description."},
        }
        for i in range(start, start + n)
    ]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], *, append: bool = False) -> Path:
    with path.open("a" if append else "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def settings_for(base_url: str, tmp: Path, **changes: Any) -> Settings:
    """Settings for a test run against ``base_url`` (in clock-seconds; the clock is scaled)."""
    s = Settings(
        api=ApiSettings(base_url=base_url, api_key=API_KEY, read_timeout=20.0),
        rate=RateSettings(initial_per_minute=3000.0),
        poll=PollSettings(interval=2.0, first_delay=1.0),
        retry=RetrySettings(max_attempts=5, base_delay=0.5, max_delay=4.0),
        output=OutputSettings(out_dir=tmp / "out", timeout=30.0),
        ledger=LedgerSettings(path=tmp / "ledger.jsonl"),
        concurrency=8,
    )
    nested = {k: v for k, v in changes.items() if "." in k}
    flat = {k: v for k, v in changes.items() if "." not in k}
    for dotted, value in nested.items():
        section, key = dotted.split(".")
        flat[section] = dataclasses.replace(flat.get(section, getattr(s, section)), **{key: value})
    return dataclasses.replace(s, **flat)


async def run(
    settings: Settings,
    manifests: Sequence[Path],
    registry: WorkflowRegistry,
    clock: Clock,
    seed: int = 0,
) -> RunResult:
    return await run_batch(settings, manifests, registry=registry, clock=clock, rng=random.Random(seed))


class SkewedClock:
    """A machine whose wall clock is off: ``inner``'s time, with ``offset`` seconds added to its
    wall time only (an NTP step, a VM resumed with a stale clock, a clock set wrong). Monotonic time
    and sleeps are ``inner``'s, so an engine on this clock and an emulator on ``inner`` still agree
    on how time passes, and disagree only on what time it is. ``offset`` may be changed mid-run."""

    def __init__(self, inner: Clock, offset: float) -> None:
        self.inner = inner
        self.offset = offset

    def monotonic(self) -> float:
        return self.inner.monotonic()

    def wall(self) -> float:
        return self.inner.wall() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)

    def loop_delay(self, seconds: float) -> float | None:
        return self.inner.loop_delay(seconds)


def ledger_lines(path: Path) -> list[dict[str, Any]]:
    return list(read_records(path))


def last_status(path: Path) -> dict[str, str]:
    """job_id → status of its last line."""
    out: dict[str, str] = {}
    for rec in ledger_lines(path):
        if rec.get("job_id"):
            out[rec["job_id"]] = rec["status"]
    return out


REPO = Path(__file__).resolve().parent.parent


def run_command(*extra: str) -> list[str]:
    """``python -m batcher run m.jsonl --ledger l.jsonl --out out ...``: the tests' standard run."""
    return [sys.executable, "-m", "batcher", "run", "m.jsonl", "--ledger", "l.jsonl", "--out", "out", *extra]


def cli_env(base_url: str | None = None) -> dict[str, str]:
    """The environment for a batcher subprocess: our key, this checkout on the path."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMIND_")}
    env["SEGMIND_API_KEY"] = API_KEY
    if base_url:
        env["SEGMIND_API_BASE"] = base_url
    env["PYTHONPATH"] = str(REPO)
    return env


def run_cli(*args: str, cwd: Path, base_url: str | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m batcher ARGS`` in ``cwd``, to the end (60 s at most): its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "batcher", *args],
        cwd=cwd,
        env=cli_env(base_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class StderrLines:
    """A process's stderr, line by line, as it comes (event-driven: no polling, no sleeps).

    One reader a process, kept for the whole test: a test that stops reading at a line and reads
    on later gets the lines that came in the same chunk as that one. (A generator a call lost
    them with its buffer: "stopped at once" arriving with "second signal" was never seen.)"""

    def __init__(self, process: Any) -> None:
        assert process.stderr is not None
        self._stream = process.stderr
        self._buffer = b""

    def __aiter__(self) -> StderrLines:
        return self

    async def __anext__(self) -> str:
        while b"\n" not in self._buffer:
            try:
                self._buffer += await self._stream.receive()
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()

    async def wait_for(self, needle: str, count: int = 1) -> None:
        """Read until ``needle`` has appeared on ``count`` lines."""
        seen = 0
        async for line in self:
            if needle in line:
                seen += 1
                if seen >= count:
                    return
        raise AssertionError(f"process ended before printing {needle!r} x{count}")

    async def rest(self) -> list[str]:
        """Every line still to come, until the process closes its stderr."""
        return [line async for line in self]


class Bucket:
    """A provider's request budget on a simulated clock: ``limit`` per second, ``burst`` at most.
    ``allow(now)`` says whether a request at ``now`` gets through, and if not, when it would."""

    def __init__(self, limit: float, burst: int) -> None:
        self.limit, self.burst = limit, float(burst)
        self.tokens, self.stamp = float(burst), 0.0

    def allow(self, now: float) -> tuple[bool, float]:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.limit)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True, 0.0
        return False, (1.0 - self.tokens) / self.limit


@contextlib.contextmanager
def on_log(needle: str, action: Callable[[], None], *, debug: bool = False) -> Iterator[list[str]]:
    """Call ``action()`` the first time batcher logs a line containing ``needle`` (a hook for a
    test to change the world at a known step of a run); yields the list that line is put in.
    ``debug``: debug lines count too (batcher's logger is set to DEBUG while the block runs)."""
    seen: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if needle in message and not seen:
                seen.append(message)
                action()

    handler = Watch(logging.DEBUG)
    logger = logging.getLogger("batcher")
    level = logger.level
    logger.addHandler(handler)
    if debug:
        logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
