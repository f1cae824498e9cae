"""Serving: in-process on port 0, the app factory, and the standalone command."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

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


def _start(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """``python -m batcher.emulator FLAGS`` and its base URL, once it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher.emulator", *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    if not first.startswith("Segmind emulator serving at "):
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"the emulator did not start: {first!r} {err!r}")
    return proc, first.rsplit(" ", 1)[1].strip()


def _stop(proc: subprocess.Popen[str], signum: int = signal.SIGINT) -> tuple[int, str]:
    """Send ``signum``; the exit code and stderr."""
    try:
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, err


@pytest.mark.timeout(30)
def test_sigterm_stops_the_command_in_order_like_ctrl_c(tmp_path: Path) -> None:
    """``docker stop``, systemd and kill send SIGTERM: it stops serving in order and exits 0, as
    Ctrl-C does, and notes in its state folder when it stopped. It used to die by the signal
    (exit 143), its state folder closed by nobody."""
    proc, _ = _start("--port", "0", "--state-dir", str(tmp_path))
    code, err = _stop(proc, signal.SIGTERM)
    assert (code, err) == (0, "")
    last = json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])
    assert last["kind"] == "stopped"


@pytest.mark.timeout(30)
def test_with_a_state_dir_port_0_comes_back_on_the_port_it_had(tmp_path: Path) -> None:
    """The poll_urls of its jobs name its port: a restart on another one left them unanswered.
    ``--port 0`` with ``--state-dir`` now takes the remembered port if it is free."""
    proc, base = _start("--port", "0", "--state-dir", str(tmp_path))
    assert _stop(proc)[0] == 0
    again, base_again = _start("--port", "0", "--state-dir", str(tmp_path))
    assert _stop(again)[0] == 0
    assert base_again == base


@pytest.mark.timeout(30)
def test_a_port_in_use_is_one_line_that_says_what_to_do() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "batcher.emulator", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"batcher emulator: cannot listen on 127.0.0.1:{port}: the port is in use (another"
        " emulator?); give another --port, or --port 0 for any free one"
    ]
