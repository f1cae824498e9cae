"""Helpers for the emulator's tests: a hand-driven clock, and a small HTTP client around aiohttp."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel

from batcher.clock import Clock, ScaledClock
from batcher.emulator import EmulatorConfig, RunningEmulator, run_emulator

REPO = Path(__file__).resolve().parents[2]
DEMO_IMAGES = REPO / "jobs" / "demo-images"
SKETCH = "66cec9a38aeef98f887211f1-v1"
BLOG = "66b518aa31bd2081a8de2a98-v5"
BLOG_TEXT = "Title: Ten lessons from a decade of baking\n\nDescription: Flour, failure and loyal neighbours\n"


class ManualClock:
    """A clock that moves only when told (``advance``) or when something sleeps on it.

    ``sleep`` jumps the time forward at once (like trio's autojump clock), so a server-side
    delay of 30 s passes instantly yet observably.
    """

    def __init__(self, start_wall: float = 1_700_000_000.0) -> None:
        self.now = 0.0
        self._wall0 = start_wall

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self._wall0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)
        await anyio.lowlevel.checkpoint()

    def loop_delay(self, seconds: float) -> float | None:
        return None


def data_uri(path: Path) -> str:
    """A local picture as the data: URI a client would send."""
    return f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"


def sketch_input(name: str = "lighthouse") -> dict[str, str]:
    return {"input_image": data_uri(DEMO_IMAGES / f"{name}.png")}


@dataclass
class Reply:
    """One HTTP answer, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Api:
    """A test's view of one running emulator: the server, a client session and the clock."""

    emu: RunningEmulator
    session: aiohttp.ClientSession
    clock: Clock

    @property
    def base(self) -> str:
        return self.emu.base_url

    async def request(self, method: str, url: str, **kwargs: Any) -> Reply:
        async with self.session.request(method, url, **kwargs) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read())

    async def submit(
        self,
        workflow_id: str,
        body: Any,
        *,
        key: str | None = "k",
        path: str = "/workflows/",
        auth: str = "x-api-key",
    ) -> Reply:
        headers = {}
        if key is not None:
            headers = {"x-api-key": key} if auth == "x-api-key" else {"Authorization": f"Bearer {key}"}
        return await self.request("POST", f"{self.base}{path}{workflow_id}", json=body, headers=headers)

    async def poll(self, poll_url: str, *, key: str = "k") -> Reply:
        return await self.request("GET", poll_url, headers={"x-api-key": key})

    async def queued(self, workflow_id: str, body: Any, *, key: str = "k") -> dict[str, Any]:
        """Submit and insist on a 200; the submit answer."""
        reply = await self.submit(workflow_id, body, key=key)
        assert reply.status == 200, reply.text
        answer: dict[str, Any] = reply.json()
        return answer

    async def finish(self, request_id: str, *, key: str = "k") -> dict[str, Any]:
        """Wait for the job's render, move time past its end, and return its final poll answer."""
        state = self.emu.state
        await state.store.wait_rendered(request_id)
        job = next(j for j in state.store if j.request_id == request_id)
        if isinstance(self.clock, ManualClock):
            self.clock.now = max(self.clock.now, job.finish_at)
        for _ in range(1000):  # bounded: a job that never ends fails the test, not the suite
            reply = await self.poll(f"{self.base}/workflows/request/{request_id}", key=key)
            body: dict[str, Any] = reply.json()
            if body["status"] in ("COMPLETED", "FAILED"):
                return body
            await self.clock.sleep(max(0.001, job.finish_at - self.clock.monotonic()))
        raise AssertionError(f"job {request_id} never finished: {body}")


@contextlib.asynccontextmanager
async def serve(
    config: EmulatorConfig | None = None, clock: Clock | None = None, *, port: int = 0
) -> AsyncIterator[Api]:
    """An emulator on 127.0.0.1 (any free port by default) and a client session for it.

    The clock is a hand-driven :class:`ManualClock` unless one is given.
    """
    clock = clock if clock is not None else ManualClock()
    emulator = run_emulator(config or EmulatorConfig(), clock=clock, port=port)
    async with emulator as emu, aiohttp.ClientSession() as session:
        yield Api(emu, session, clock)


def fast_clock() -> ScaledClock:
    """A clock 1000 times faster than real time, for tests that poll as a client would."""
    return ScaledClock(speed=1000.0)
