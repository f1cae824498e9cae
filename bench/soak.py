"""Soak: 10,000 jobs on the emulator with faults on; resident memory and open fds must stay flat.

An emulator subprocess with every fault on (2% 5xx, 1% lost responses, 1% dropped connections,
2% FAILED jobs, 200 requests/s then 429, 0.5 s jobs, placeholder outputs) and ``batcher run`` on
``--jobs`` rows (concurrency 256, 0.2 s polls, ``--quiet``, the limit learned from 429s) as a
subprocess. Every second this script samples the run's RSS (``VmRSS`` in /proc/<pid>/status), its
open file descriptors (/proc/<pid>/fd) and how many jobs it has finished (its ledger).

Printed: the sample count; RSS min/median/max over the middle 80% of the run; fds min/max there
and over the second half; the slope of RSS against finished jobs over the second half (from 50%
to 90% of the run, so the start-up and the drain are left out), in MB per 1,000 jobs; exit code;
jobs completed/failed; every fd sample.

Verdict **flat**: RSS growth over the second half (of the fitted line) under 10%, and every fd
sample of the second half within ±16 of their median. The fd check skips the first half because
the connection pool fills once, when slow start overshoots the limit, and idle connections close
only after aiohttp's 15 s keep-alive: a warm-up burst of up to 32 sockets that is not a leak
(the middle-80% row shows it, and says whether it too is within ±16).

    .venv/bin/python bench/soak.py [--jobs 10000] [--concurrency 256] [--timeout 420]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from emuproc import batcher_env, emulator_stats, start_emulator, stop

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-soak-0000"
FAULTS = (
    "--error-rate", "0.02", "--lost-rate", "0.01", "--drop-rate", "0.01", "--fail-rate", "0.02",
    "--rate-limit", "200/s", "--duration-median", "0.5", "--render", "placeholder",
)  # fmt: skip
GROWTH_LIMIT = 0.10
FD_BAND = 16
#: Ledger statuses after which a job is finished for this run.
FINAL = (b'"status":"completed"', b'"status":"failed"', b'"status":"expired"', b'"status":"download_failed"')


def write_manifest(path: Path, jobs: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(jobs):
            row = {
                "id": f"soak-{i:06d}",
                "workflow": "sketch",
                "input": {"input_image": f"https://img.example.com/{i}.png"},
            }
            fh.write(json.dumps(row) + "\n")


@dataclass
class Sample:
    t: float
    rss_mb: float
    fds: int
    finished: int


class LedgerTail:
    """Counts finished-job lines of a growing ledger, reading only what was appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.rest = b""
        self.finished = 0

    def poll(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return self.finished
        self.offset += len(data)
        lines = (self.rest + data).split(b"\n")
        self.rest = lines.pop()
        self.finished += sum(1 for line in lines if any(mark in line for mark in FINAL))
        return self.finished


def sample(pid: int) -> tuple[float, int] | None:
    """(RSS in MB, open fds) of ``pid``, or None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024, fds
    return None


def fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope and intercept (slope 0 when x does not move)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, my
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return slope, my - slope * mx


def final_states(ledger: Path) -> Counter[str]:
    """Jobs by the status of their last ledger line."""
    last: dict[str, str] = {}
    with ledger.open("rb") as fh:
        for raw in fh:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if record.get("job_id"):
                last[record["job_id"]] = record["status"]
    return Counter(last.values())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="rows in the manifest (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=256, help="(default %(default)s)")
    parser.add_argument("--poll-interval", type=float, default=0.2, help="seconds (default %(default)s)")
    parser.add_argument("--csv", type=Path, help="also write every sample here (t, rss_mb, fds, finished)")
    parser.add_argument(
        "--rate-limit", type=float, help="batcher's --rate-limit per minute (default: learn it from 429s)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=420.0,
        help="SIGINT the run after this many seconds (default %(default)s)",
    )
    parser.add_argument(
        "--every", type=float, default=1.0, help="seconds between samples (default %(default)s)"
    )
    args = parser.parse_args()

    emulator, base = start_emulator(*FAULTS)
    try:
        with tempfile.TemporaryDirectory() as top:
            tmp = Path(top)
            manifest = tmp / "soak.jsonl"
            write_manifest(manifest, args.jobs)
            ledger = tmp / "run" / "ledger.jsonl"
            cmd = [sys.executable, "-m", "batcher", "run", str(manifest), "--ledger", str(ledger)]
            cmd += ["--out", str(tmp / "run" / "out"), "--concurrency", str(args.concurrency)]
            cmd += ["--poll-interval", str(args.poll_interval), "--quiet"]
            if args.rate_limit:
                cmd += ["--rate-limit", str(args.rate_limit)]
            env = batcher_env(API_KEY, base)
            log = tmp / "run.log"
            tail = LedgerTail(ledger)
            samples: list[Sample] = []
            interrupted = False
            start = time.perf_counter()
            with log.open("w") as out:
                run = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
                try:
                    while run.poll() is None:
                        now = time.perf_counter() - start
                        if now > args.timeout and not interrupted:
                            interrupted = True
                            run.send_signal(signal.SIGINT)  # batcher saves state and exits 130
                        got = sample(run.pid)
                        if got is not None and run.poll() is None:
                            samples.append(Sample(now, got[0], got[1], tail.poll()))
                        time.sleep(max(0.0, args.every - (time.perf_counter() - start - now)))
                finally:
                    stop(run, signal.SIGINT, grace=30)
            seconds = time.perf_counter() - start
            states = final_states(ledger)
            output = log.read_text()
        stats = emulator_stats(base)
    finally:
        stop(emulator)

    if args.csv:
        with args.csv.open("w") as fh:
            fh.write("t,rss_mb,fds,finished\n")
            fh.writelines(f"{s.t:.2f},{s.rss_mb:.1f},{s.fds},{s.finished}\n" for s in samples)
    n = len(samples)
    if n < 10:
        print(output)
        raise SystemExit(f"only {n} samples: the run ended too soon to judge (exit code {run.returncode})")
    middle = samples[n // 10 : n - n // 10]
    half = samples[n // 2 : n - n // 10]
    rss = [s.rss_mb for s in middle]
    fds = [s.fds for s in middle]
    slope, intercept = fit([float(s.finished) for s in half], [s.rss_mb for s in half])
    at_start = intercept + slope * half[0].finished
    at_end = intercept + slope * half[-1].finished
    growth = (at_end - at_start) / at_start
    fd_median = statistics.median(fds)
    late_fds = [s.fds for s in half]
    late_median = statistics.median(late_fds)
    fd_ok = all(abs(f - late_median) <= FD_BAND for f in late_fds)
    flat = growth < GROWTH_LIMIT and fd_ok

    print(
        f"{args.jobs:,} jobs, concurrency {args.concurrency}, polls {args.poll_interval:g} s, "
        f"rate {'learned from 429s' if not args.rate_limit else f'{args.rate_limit:g}/min'}; "
        f"emulator: {' '.join(FAULTS)}; {os.cpu_count()} cores"
    )
    print()
    print("| measurement | value | target | result |")
    print("|---|---:|---:|---|")

    def row(name: str, value: str, target: str = "", passed: bool | None = None) -> None:
        result = "" if passed is None else "pass" if passed else "FAIL"
        print(f"| {name} | {value} | {target} | {result} |")

    row("run time", f"{seconds:.0f} s" + (" (interrupted at --timeout)" if interrupted else ""))
    row(f"samples (every {args.every:g} s)", f"{n}")
    row(
        "RSS min / median / max, middle 80%",
        f"{min(rss):.0f} / {statistics.median(rss):.0f} / {max(rss):.0f} MB",
    )
    row(
        "RSS slope, second half",
        f"{slope * 1000:+.2f} MB per 1,000 jobs (jobs finished {half[0].finished:,} → {half[-1].finished:,})",
    )
    row(
        "RSS growth over the second half (fitted)",
        f"{growth:+.1%}",
        f"< {GROWTH_LIMIT:.0%}",
        growth < GROWTH_LIMIT,
    )
    in_band = all(abs(f - fd_median) <= FD_BAND for f in fds)
    row(
        "open fds min / max, middle 80%",
        f"{min(fds)} / {max(fds)} (median {fd_median:g}; within ±{FD_BAND}: {'yes' if in_band else 'no'})",
    )
    row(
        "open fds min / max, second half",
        f"{min(late_fds)} / {max(late_fds)} (median {late_median:g})",
        f"median ± {FD_BAND}",
        fd_ok,
    )
    row("exit code", str(run.returncode), "1: some jobs FAILED by design")
    other = sum(states.values()) - states["completed"] - states["failed"]
    row("jobs completed / failed / other", f"{states['completed']:,} / {states['failed']:,} / {other:,}")
    row(
        "emulator: API requests / 429s / submissions",
        f"{stats['api_requests']:,} / {stats['rate_limited']:,} / {stats['submissions']:,}",
    )
    row(
        "emulator: 5xx / lost / dropped",
        f"{stats['server_errors']:,} / {stats['lost_responses']:,} / {stats['dropped_connections']:,}",
    )
    row("emulator: inputs submitted more than once", f"{stats['inputs_submitted_more_than_once']:,}")
    row("verdict", "flat" if flat else "NOT flat", "flat", flat)
    if other:
        print(f"\nfinal states: {dict(states)}")
    print("\nsamples (t s, RSS MB, fds, jobs finished), every tenth:")
    print(
        ", ".join(f"({s.t:.0f}, {s.rss_mb:.0f}, {s.fds}, {s.finished})" for s in samples[:: max(1, n // 10)])
    )
    print("\nopen fds, every sample:")
    print(" ".join(str(s.fds) for s in samples))
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
