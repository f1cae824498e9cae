"""Serving: in-process on port 0, the app factory, and the standalone command."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request

import pytest
from aiohttp import web

from batcher.emulator import EmulatorConfig, create_app, run_emulator

from .helpers import REPO, ManualClock

pytestmark = pytest.mark.anyio


async def test_port_0_picks_a_free_port_and_two_emulators_do_not_share_state() -> None:
    async with run_emulator(EmulatorConfig(seed=1)) as one, run_emulator(EmulatorConfig(seed=2)) as two:
        assert one.base_url.startswith("http://127.0.0.1:") and one.base_url != two.base_url
        assert one.state is not two.state and one.state.config.seed == 1
        assert one.stats()["submissions"] == 0


async def test_create_app_builds_a_standalone_application() -> None:
    app = create_app(EmulatorConfig(), clock=ManualClock())
    assert isinstance(app, web.Application)
    assert {r.name for r in app.router.routes() if r.name} >= {
        "submit",
        "submit_v2",
        "poll",
        "output",
        "stats",
    }


@pytest.mark.timeout(30)
def test_the_command_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher.emulator", "--port", "0", "--seed", "3"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # The test runner may ignore SIGINT for its children; the command must see Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("Segmind emulator serving at http://127.0.0.1:")
        base = first.rsplit(" ", 1)[1].strip()
        with urllib.request.urlopen(f"{base}/_emulator/stats", timeout=10) as resp:
            assert json.load(resp)["submissions"] == 0
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
