"""The emulator as a separate process, for benchmarks that must not count its CPU or memory.

Shared by bench/overhead.py, bench/memory.py and bench/soak.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator(*flags: str) -> tuple[subprocess.Popen[str], str]:
    """An emulator subprocess on a free loopback port, and its base URL once it serves."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "batcher.emulator", "--port", str(port), *flags],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()  # "Segmind emulator serving at ..." (or EOF if it died)
    if "serving at" not in line:
        proc.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 10) -> None:
    """Signal a process, give it ``grace`` seconds, then kill it."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def emulator_stats(base: str) -> dict[str, Any]:
    with _NO_PROXY.open(f"{base}/_emulator/stats", timeout=30) as resp:
        data: dict[str, Any] = json.load(resp)
    return data


def batcher_env(api_key: str, base: str | None = None) -> dict[str, str]:
    """The environment for a batcher subprocess: this key and API base, no other SEGMIND_ values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGMIND_")}
    env["SEGMIND_API_KEY"] = api_key
    if base:
        env["SEGMIND_API_BASE"] = base
    return env
