"""Coming back after a crash: a SIGKILLed emulator loses nothing it acknowledged, on the same port."""

from __future__ import annotations

import json
import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from batcher.emulator import EmulatorConfig, remembered_port, run_emulator
from batcher.emulator.persist import remember_port
from batcher.emulator.render import placeholder_png

from .helpers import REPO, SKETCH, ManualClock, serve, sketch_input

pytestmark = pytest.mark.anyio


@pytest.mark.timeout(60)
async def test_a_sigkilled_emulator_loses_no_acknowledged_request(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    command = [sys.executable, "-m", "batcher.emulator", "--port", "0", "--state-dir", str(state_dir)]
    command += ["--render", "placeholder", "--duration-median", "1000", "--duration-spread", "0"]
    proc = subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        answers = []
        async with aiohttp.ClientSession() as session:
            for name in ("cat", "house", "flowers", "lighthouse"):
                url = f"{base}/workflows/{SKETCH}"
                async with session.post(url, json=sketch_input(name), headers={"x-api-key": "k"}) as resp:
                    assert resp.status == 200, await resp.text()
                    answers.append(await resp.json())
        proc.send_signal(signal.SIGKILL)  # at once after the last 200: no shutdown of any kind
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    restarted = EmulatorConfig(
        state_dir=str(state_dir), render="placeholder", duration_median=1000.0, duration_spread=0.0
    )
    async with serve(restarted, ManualClock(start_wall=time.time()), port=remembered_port(state_dir)) as api:
        assert api.base == base
        assert api.emu.stats()["submissions"] == len(answers)
        for answer in answers:
            assert (await api.poll(answer["poll_url"])).json()["status"] == "PROCESSING"
        for answer in answers:
            body = await api.finish(answer["request_id"])
            assert body["status"] == "COMPLETED"
            url = json.loads(body["output"])[0]["value"]["data"]
            assert (await api.request("GET", url)).body == placeholder_png()


def _first_base_url(command: list[str]) -> str:
    """Start the emulator process, read the base URL it prints, then SIGKILL it."""
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        return proc.stdout.readline().rsplit(" ", 1)[1].strip()
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.timeout(60)
def test_a_standalone_emulator_on_port_0_comes_back_on_the_port_of_its_state_dir(tmp_path: Path) -> None:
    """``batcher emulator --port 0 --state-dir DIR`` took a new port at every start, so the
    poll_urls an earlier one handed out (they name its port) no longer reached the jobs DIR
    remembers; the README says it binds the port it had last time."""
    command = [sys.executable, "-m", "batcher", "emulator", "--port", "0", "--state-dir", str(tmp_path)]
    command += ["--render", "placeholder"]
    first = _first_base_url(command)
    assert _first_base_url(command) == first
    assert remembered_port(tmp_path) == int(first.rsplit(":", 1)[1])


async def test_the_bound_port_is_remembered(tmp_path: Path) -> None:
    config = EmulatorConfig(state_dir=str(tmp_path), render="placeholder")
    assert remembered_port(tmp_path) == 0
    async with run_emulator(config) as emu:
        port = int(emu.base_url.rsplit(":", 1)[1])
    assert remembered_port(tmp_path) == port
    async with run_emulator(config, port=port, port_fallback=True) as again:
        assert again.base_url == emu.base_url


@pytest.mark.parametrize("text", ["", "http", "-1", "70000", "12.5"])
def test_a_port_file_that_makes_no_sense_means_any_port(tmp_path: Path, text: str) -> None:
    (tmp_path / "port").write_text(text)
    assert remembered_port(tmp_path) == 0


async def test_a_taken_port_falls_back_to_a_free_one_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CLI's logging setup (run in-process by other tests) stops "batcher" logs propagating.
    monkeypatch.setattr(logging.getLogger("batcher"), "propagate", True)
    config = EmulatorConfig(state_dir=str(tmp_path), render="placeholder")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        remember_port(tmp_path, taken)
        with pytest.raises(OSError):
            async with run_emulator(config, port=taken):
                pass
        with caplog.at_level(logging.WARNING, logger="batcher.emulator"):
            async with run_emulator(config, port=remembered_port(tmp_path), port_fallback=True) as emu:
                assert not emu.base_url.endswith(f":{taken}")
    assert f"port {taken} is taken" in caplog.text
    assert remembered_port(tmp_path) == int(emu.base_url.rsplit(":", 1)[1])
