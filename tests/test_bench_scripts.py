"""The ``bench/`` scripts still run, and ``make bench`` runs all of them.

Nothing else runs them between measurement sessions, so a change to the engine (a setting
renamed, a result field moved) could break them unnoticed until the next time someone needs a
number. Each runs here at a tiny size, on its own emulator subprocess, and must get to its table
and exit 0 (on target) or 1 (a target missed: at this size the numbers mean nothing), never a
traceback. The numbers themselves are not checked: tests assert behaviour, never timings.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"

#: script, tiny arguments, a line its report must print.
SMALL_RUNS = [
    # Two rounds, so that each round's pair is compared too.
    ("overhead", ["--jobs", "20", "--repeat", "2", "--polls", "0"], "| batcher / bare, run by run"),
    (
        "memory",
        [
            *("--rows", "300", "--in-flight", "30", "--max-runtime", "3", "--poll-interval", "1"),
            *("--done", "300", "--per-run", "100", "300", "--appended", "7"),
        ],
        # The killed run's row, the last of the ledger shapes (a fail exits 1).
        "killed before its run_end (0 MB), 7 rows appended: dry run: finds the done and the new"
        " | yes | yes | pass",
    ),
    ("soak", ["--jobs", "20", "--concurrency", "8", "--every", "0.5"], "| verdict |"),
    ("status_speed", ["--lines", "2000"], "ledger_status:"),
    ("manifest_memory", ["--rows", "2000"], "throughput:"),
    ("throughput", ["--quick", "--only", "rate: narrow", "--no-baseline"], "| rate: narrow lognormal"),
]


def test_make_bench_runs_every_bench_script() -> None:
    """``make bench`` named a script that did not exist; now its list must match the folder."""
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    listed = re.search(r"^BENCHES\s*:=\s*(.+)$", makefile, re.MULTILINE)
    assert listed is not None, "Makefile has no BENCHES list"
    scripts = {p.stem for p in BENCH.glob("*.py")} - {"emuproc"}  # emuproc: their shared helper
    assert set(listed.group(1).split()) == scripts
    assert {name for name, _, _ in SMALL_RUNS} == scripts  # and each is smoke-run below


@pytest.mark.parametrize(("script", "args", "marker"), SMALL_RUNS, ids=[name for name, _, _ in SMALL_RUNS])
def test_bench_script_runs_to_its_report(script: str, args: list[str], marker: str) -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert run.returncode in (0, 1), (run.returncode, run.stderr[-3000:])
    assert marker in run.stdout, run.stdout[-3000:]
