"""Serving the emulator on a real socket: in-process for tests and the engine, or standalone."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web

from ..clock import Clock, SystemClock
from .app import RenderPool, create_app
from .config import EmulatorConfig
from .persist import remember_port
from .state import EmulatorState

log = logging.getLogger("batcher.emulator")


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
    port_fallback: bool = False,
    shutdown_timeout: float = 0.5,
) -> AsyncIterator[RunningEmulator]:
    """Serve an emulator on ``host:port`` (port 0 picks a free one) until the block exits.

    Use under anyio on the asyncio backend (aiohttp needs asyncio). ``shutdown_timeout`` is how
    long, in real seconds, answers still being written (say, a slow one) may take at exit.

    With ``config.state_dir`` set, the emulator knows every job accepted by earlier emulators on
    that folder, and notes the port it got there: pass ``port=remembered_port(state_dir)`` and
    ``port_fallback=True`` to come back on the same origin, so old ``poll_url``s still work
    (or, if that port is taken, on any free one, with a warning).
    """
    state = EmulatorState(config or EmulatorConfig(), clock or SystemClock())
    renders = RenderPool(state.config.render_threads)
    try:
        # The render tasks' group is opened here, around serving, not in the app's cleanup_ctx:
        # there it was left by aiohttp's cleanup in whatever cancel scope was current, and a
        # second Ctrl-C (a cancelled cleanup) ended in RuntimeError tracebacks and exit 1.
        async with renders.running():
            renders.resume(state)
            app = create_app(state=state, renders=renders)
            runner = web.AppRunner(
                app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
            )
            await runner.setup()
            try:
                bound_port = await _listen(runner, host, port, port_fallback)
                if state.config.state_dir is not None:
                    remember_port(state.config.state_dir, bound_port)
                yield RunningEmulator(base_url=f"http://{_url_host(host)}:{bound_port}", state=state)
            finally:
                # Shielded, so that a cancelled run still stops the server in order (aiohttp
                # bounds the wait by ``shutdown_timeout``); the renders are cancelled after.
                with anyio.CancelScope(shield=True):
                    await runner.cleanup()
    finally:
        state.close()


async def _listen(runner: web.AppRunner, host: str, port: int, fallback: bool) -> int:
    """Start listening on ``port`` (or any free port, if it is taken and ``fallback``); the port."""
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await site.stop()
        if not fallback or port == 0:
            raise
        log.warning(
            "emulator: port %d is taken (%s); listening on another port, so jobs submitted to"
            " the old one cannot be resumed",
            port,
            exc.strerror or exc,
        )
        site = web.TCPSite(runner, host, 0)
        await site.start()
    bound: int = runner.addresses[0][1]
    return bound
