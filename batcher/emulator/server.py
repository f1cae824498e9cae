"""Serving the emulator on a real socket: in-process for tests and the engine, or standalone."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..clock import Clock, SystemClock
from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState


@dataclass(frozen=True)
class RunningEmulator:
    """A serving emulator: where it listens and what it remembers."""

    #: e.g. ``http://127.0.0.1:54321`` (no trailing slash).
    base_url: str
    #: The in-process store and counters, for tests to look inside.
    state: EmulatorState

    def stats(self) -> dict[str, Any]:
        """The same numbers as ``GET /_emulator/stats``."""
        return self.state.snapshot()


def _url_host(host: str) -> str:
    """The host as it goes in a URL: a wildcard bind is reached on loopback; IPv6 in brackets."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


@contextlib.asynccontextmanager
async def run_emulator(
    config: EmulatorConfig | None = None,
    *,
    clock: Clock | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    shutdown_timeout: float = 0.5,
) -> AsyncIterator[RunningEmulator]:
    """Serve an emulator on ``host:port`` (port 0 picks a free one) until the block exits.

    Use under anyio on the asyncio backend (aiohttp needs asyncio). ``shutdown_timeout`` is how
    long, in real seconds, answers still being written (say, a slow one) may take at exit.
    """
    state = EmulatorState(config or EmulatorConfig(), clock or SystemClock())
    app = create_app(state=state)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        yield RunningEmulator(base_url=f"http://{_url_host(host)}:{bound_port}", state=state)
    finally:
        await runner.cleanup()
