"""`batcher run --emulator`, SIGKILLed with jobs in flight, then run again: nothing is paid twice.

The embedded emulator keeps its memory beside the ledger and comes back on its old port, so the
second run re-attaches the first run's jobs by their recorded poll_urls and they complete.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batcher.emulator import EmulatorConfig, EmulatorState

from .helpers import DEMO_IMAGES, REPO, ManualClock

PICTURES = ("cat", "house", "lighthouse")

# Jobs of 2 s at real speed: long enough to be in flight when the first run is killed right after
# its last submission (tenths of a second after its first), short enough for a quick test.
# Durations are drawn at submit and remembered, so the second run cannot make them shorter.
CONFIG = """\
concurrency: 4
rate:
  requests_per_minute: 600
poll:
  first_delay: 0.2
emulator:
  seed: 3
  duration_median: 2.0
  duration_spread: 0.0
"""


def _command(tmp_path: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "batcher",
        "run",
        str(tmp_path / "sketches.jsonl"),
        "--emulator",
        "--config",
        str(tmp_path / "config.yaml"),
        "--ledger",
        str(tmp_path / "run" / "ledger.jsonl"),
        "--out",
        str(tmp_path / "run" / "outputs"),
        "-v",
        "--poll-interval",
        "0.2",
    ]


@pytest.mark.timeout(90)
def test_a_killed_embedded_run_resumes_its_jobs_without_submitting_them_again(tmp_path: Path) -> None:
    rows = [
        {
            "id": f"sketch-{name}",
            "workflow": "sketch",
            "input": {"input_image": str(DEMO_IMAGES / f"{name}.png")},
        }
        for name in PICTURES
    ]
    (tmp_path / "sketches.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (tmp_path / "config.yaml").write_text(CONFIG)

    first = subprocess.Popen(
        _command(tmp_path), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        assert first.stderr is not None
        submitted = 0
        seen = []
        while submitted < len(rows):
            line = first.stderr.readline()
            assert line, f"the first run ended before submitting everything: {''.join(seen)}"
            seen.append(line)
            submitted += "submitted as request" in line
        first.send_signal(signal.SIGKILL)  # in flight: accepted, not finished
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stderr is not None:
            first.stderr.close()

    second = subprocess.run(_command(tmp_path), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    resumed = re.search(r"Resumed: (\d+) jobs? re-attached", second.stdout)
    assert resumed is not None and int(resumed.group(1)) >= 1, second.stdout
    assert "0 submit and" in second.stdout, second.stdout  # nothing was sent again
    outputs = tmp_path / "run" / "outputs"
    for row in rows:
        assert (outputs / f"{row['id']}.png").is_file(), f"no output for {row['id']}"

    # The emulator's own memory: every input was accepted exactly once, and all completed.
    remembered = EmulatorState(EmulatorConfig(state_dir=str(tmp_path / "run" / "emulator")), ManualClock())
    try:
        per_input = remembered.store.submissions_per_input
        assert sorted(per_input.values()) == [1] * len(rows)
    finally:
        remembered.close()
