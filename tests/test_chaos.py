"""Chaos: hundreds of jobs under every fault, the runner SIGKILLed at seeded moments, restarted
until done. Nothing is lost, nothing final is wrong, nothing with a known poll_url is POSTed twice."""

from __future__ import annotations

import hashlib
import json
import random
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from batcher.emulator import EmulatorConfig, run_emulator
from batcher.ledger import Ledger, read_records

from .support import StderrLines, blog_rows, cli_env, run_command, sketch_rows, write_jsonl

SEED = 20261121
JOBS = 240
KILLS = 6

CHAOS = EmulatorConfig(
    seed=SEED,
    render="placeholder",
    duration_median=0.4,
    duration_spread=0.6,
    error_rate=0.04,
    lost_rate=0.03,
    drop_rate=0.03,
    fail_rate=0.05,
    rate_limit=120.0,
    rate_period=1.0,
    rate_burst=20,
    rate_header="retry-after-seconds",
)
ARGS = ["--poll-interval", "0.15", "--rate-limit", "12000", "--concurrency", "48", "--config"]


def _command(tmp: Path) -> list[str]:
    return run_command(*ARGS, str(tmp / "c.yaml"))


def _in_doubt(ledger: Path) -> set[str]:
    """Jobs whose last line says a POST was under way with no answer yet."""
    last: dict[str, str] = {}
    for rec in read_records(ledger):
        if rec.get("job_id"):
            last[rec["job_id"]] = rec["status"]
    return {job for job, status in last.items() if status in ("submitting",)}


@pytest.mark.anyio
async def test_chaos_with_repeated_sigkills_ends_exactly_once_and_pays_twice_only_when_unavoidable(
    tmp_path: Path,
) -> None:
    rng = random.Random(SEED)
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(JOBS - 40) + blog_rows(40))
    # Retries generous enough that the faults, not the retry cap, decide each job's fate.
    (tmp_path / "c.yaml").write_text("retry:\n  max_attempts: 12\n  base_delay: 0.02\n  max_delay: 0.3\n")
    kills_in_doubt = 0
    kills = 0
    async with run_emulator(CHAOS) as emu:
        env = cli_env(emu.base_url)
        while kills < KILLS:
            target = rng.randint(5, 60)  # kill after this many ledger steps are logged
            process = await anyio.open_process([*_command(tmp_path), "-v"], cwd=tmp_path, env=env)
            async with process:
                seen = 0
                finished = True
                with anyio.fail_after(120):
                    async for line in StderrLines(process):
                        if "submitting recorded" in line or "submitted as request" in line:
                            seen += 1
                            if seen >= target:
                                finished = False
                                process.send_signal(signal.SIGKILL)
                                break
                    await process.wait()
            if finished:
                break  # the run ended before the kill point: nothing left to kill
            kills += 1
            kills_in_doubt += len(_in_doubt(tmp_path / "l.jsonl"))
        for _ in range(5):  # then run to the end (a retryable failure may need another pass)
            with anyio.fail_after(180):
                done = await anyio.run_process(_command(tmp_path), cwd=tmp_path, env=env, check=False)
            if done.returncode == 0 or b"Nothing to do" in done.stdout:
                break
            assert done.returncode == 1, done.stderr.decode()[-2000:]
        stats = emu.stats()
        fails_of = {job.request_id: job.fate.fails for job in emu.state.store}

    assert kills >= 5, "the run must have been killed at least five times"
    # The chaos really happened (a quiet run would prove nothing).
    for fault in ("rate_limited", "server_errors", "lost_responses", "dropped_connections"):
        assert stats[fault] > 0, fault
    assert any(fails_of.values())

    # Every ledger line parses after repair.
    ledger = tmp_path / "l.jsonl"
    with Ledger.open(ledger):
        pass
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]

    last: dict[str, dict[str, Any]] = {}
    first_submitted: dict[str, int] = {}
    for index, rec in enumerate(lines):
        job = rec.get("job_id")
        if not job:
            continue
        last[job] = rec
        if rec["status"] == "submitted":
            first_submitted.setdefault(job, index)
        if rec["status"] == "submitting":
            # No job whose poll_url reached the ledger is ever POSTed again.
            assert job not in first_submitted, f"{job} was POSTed again after its poll_url was recorded"

    # Every job ends in exactly one final state, and the right one.
    assert len(last) == JOBS
    outcome = Counter(rec["status"] for rec in last.values())
    assert set(outcome) <= {"completed", "failed"}, outcome
    request_of = {}
    for rec in lines:
        if rec["status"] == "submitted":
            request_of[rec["job_id"]] = rec["request_id"]
    for job, rec in last.items():
        fails = fails_of[request_of[job]]
        assert (rec["status"] == "failed") == fails, (job, rec, fails)

    # Duplicate submissions only where unavoidable: lost answers and kills mid-POST.
    extra = sum(n - 1 for n in stats["submissions_per_input"].values())
    assert extra <= stats["lost_responses"] + stats["dropped_after_accept"] + kills_in_doubt

    # Every completed job's files match their sha256.
    for rec in last.values():
        if rec["status"] == "completed":
            for out in rec["outputs"]:
                data = (tmp_path / out["path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == out["sha256"]
