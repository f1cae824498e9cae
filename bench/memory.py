"""Memory of whole ``batcher run`` processes: a million-row dry run, and 10,000 jobs in flight.

Targets (peak RSS of the batcher process, from ``wait4``'s ``ru_maxrss`` once it exits):

- ``batcher run <1,000,000-row .jsonl> --dry-run``: under 200 MB. Rows are sketch jobs with https
  URLs and no ids, so every id is hashed and kept for duplicate detection (the expensive path).
- **10,000 jobs in flight**: under 300 MB. An emulator subprocess with long jobs (placeholder
  outputs, no rate limit) and ``batcher run`` on 10,000 rows with ``--concurrency 10000`` and a
  high ``--rate-limit``, ended by ``--max-runtime`` while every job is still running. The
  emulator's stats must show all 10,000 submitted, each once, and all still unfinished.

``--max-runtime`` also stops *submitting* early, once less than (10% of the max runtime + two
poll intervals) is left, before any duration is known (``WindowGuard``): 45 s with 20 s polls
leaves half a second to submit, about 1,500 jobs on this machine. Hence 60 s by default (14 s to
submit; 10,000 take about 4 s here), and jobs of 120 s, so none can finish inside the run.

- **A nightly ledger**: a manifest that grew night after night to 1,000,000 rows, every one done
  (a ledger of 100 runs of 10,000 jobs, each ended in order: 4,000,200 lines, 1.1 GB), with 1,000
  rows appended since: ``batcher run --dry-run`` under the same 200 MB, and it must find the
  1,000,000 done and the 1,000 to submit. The ledger is made from the lines of one real run on
  the emulator, repeated with each job's own id, inputs, inputs_hash and request.
- **One big run**: the same million done jobs in a single run that ended in order (its
  ``run_end`` the last line), and the same 1,000 appended: the same target and checks. Each
  ``--per-run`` size is a ledger of its own (default both: 10,000 and 1,000,000).
- **A killed run**: the ledger of the largest ``--per-run`` size without its last ``run_end``
  (the run was killed after its last job completed; ``--skip-killed`` leaves it out): the same
  target and checks. Its completed jobs are held by the offsets of their lines, to be checked by
  the next run.

    .venv/bin/python bench/memory.py [--rows 1000000] [--in-flight 10000] [--max-runtime 60]
                                     [--done 1000000] [--per-run 10000 1000000] [--appended 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emuproc import batcher_env, emulator_stats, start_emulator, stop

from batcher.manifest_rows import inputs_hash
from batcher.workflows import load_workflows

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench-memory-0000"
DRY_RUN_TARGET_MB = 200
IN_FLIGHT_TARGET_MB = 300


def write_manifest(path: Path, rows: int) -> None:
    """``rows`` distinct sketch rows with https URLs and no ids."""
    with path.open("w", encoding="utf-8") as fh:
        for i in range(rows):
            row = {
                "workflow": "sketch",
                "input": {"input_image": f"https://images.example.com/photos/{i}.jpg"},
            }
            fh.write(json.dumps(row) + "\n")


@dataclass
class Finished:
    exit_code: int
    seconds: float
    peak_rss_mb: float
    output: str


def run_child(args: list[str], env: dict[str, str], log: Path, timeout: float, watch: Any = None) -> Finished:
    """Run ``python -m batcher ARGS`` to its end (killed past ``timeout``): exit code, wall time,
    and its own peak RSS (``wait4``'s rusage, the same number RUSAGE_CHILDREN gives for it).
    ``watch()`` is called every half second while it runs."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "batcher", *args], env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT
        )
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            if watch is not None:
                watch()
            time.sleep(0.5)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Finished(proc.returncode, time.perf_counter() - start, usage.ru_maxrss / 1024, log.read_text())


def dry_run(tmp: Path, rows: int) -> tuple[Finished, float]:
    manifest = tmp / "million.jsonl"
    write_manifest(manifest, rows)
    size_mb = manifest.stat().st_size / 1e6
    return _dry_run(manifest, tmp / "dry" / "ledger.jsonl", tmp / "dry-run.log", timeout=600), size_mb


def _dry_run(manifest: Path, ledger: Path, log: Path, *, timeout: float) -> Finished:
    """``batcher run MANIFEST --dry-run`` on ``ledger``; its output printed if it failed."""
    done = run_child(
        ["run", str(manifest), "--dry-run", "--ledger", str(ledger)],
        batcher_env(API_KEY),
        log,
        timeout=timeout,
    )
    if done.exit_code != 0:
        print(done.output, file=sys.stderr)
    return done


def _photo_row(i: int) -> dict[str, Any]:
    return {"id": f"photo-{i:07d}", "workflow": "sketch", "input": {"input_image": _photo(i)}}


def _photo(i: int) -> str:
    return f"https://images.example.com/photos/{i}.jpg"


def nightly(
    tmp: Path, args: argparse.Namespace, per_run: int, *, killed: bool = False
) -> tuple[Finished, float]:
    """A dry run of a grown manifest over a ledger of ``args.done`` done jobs, ``per_run`` a run
    (see the module's docstring), the last run ``killed`` before its ``run_end`` if asked: (the
    run, the ledger's size in MB)."""
    manifest, ledger, out = tmp / "nightly.jsonl", tmp / "nightly" / "ledger.jsonl", tmp / "nightly" / "out"
    if ledger.parent.exists():
        shutil.rmtree(ledger.parent)  # the last shape's
    manifest.write_text(json.dumps(_photo_row(0)) + "\n", encoding="utf-8")
    emulator, base = start_emulator(
        "--render", "placeholder", "--duration-median", "0.05", "--duration-spread", "0"
    )
    try:
        first = run_child(
            [*("run", str(manifest), "--ledger", str(ledger), "--out", str(out)), "--poll-interval", "0.1"],
            batcher_env(API_KEY, base),
            tmp / "nightly-first.log",
            timeout=120,
        )
    finally:
        stop(emulator)
    lines = ledger.read_text(encoding="utf-8").splitlines()
    statuses = [json.loads(line)["status"] for line in lines]
    model = ["run", "submitting", "submitted", "generated", "completed", "run_end"]
    if first.exit_code != 0 or statuses != model:
        raise SystemExit(f"the nightly ledger's model run went wrong ({statuses}):\n{first.output}")
    run_line, job_lines, end_line = lines[0] + "\n", lines[1:-1], lines[-1] + "\n"
    request_id = json.loads(lines[2])["request_id"]
    # Each job's lines: the model job's, with its id, row, inputs and request replaced.
    template = "\n".join(job_lines).replace('"line":1,', '"line":@LINE@,') + "\n"
    for value, token in (("photo-0000000", "@ID@"), (_photo(0), "@URL@"), (request_id, "@REQ@")):
        template = template.replace(value, token)
    old_hash = json.loads(lines[1])["inputs_hash"]
    template = template.replace(old_hash, "@HASH@")
    sketch = load_workflows().get("sketch")
    assert sketch is not None
    with ledger.open("w", encoding="utf-8") as fh:
        for i in range(args.done):
            if i % per_run == 0:
                if i:
                    fh.write(end_line)
                fh.write(run_line)
            fh.write(
                template.replace("@ID@", f"photo-{i:07d}")
                .replace("@LINE@", str(i + 1))
                .replace("@URL@", _photo(i))
                .replace("@REQ@", f"{i:032x}")
                .replace("@HASH@", inputs_hash(sketch, {"input_image": _photo(i)}))
            )
        if not killed:
            fh.write(end_line)
    with manifest.open("w", encoding="utf-8") as fh:
        for i in range(args.done + args.appended):
            fh.write(json.dumps(_photo_row(i)) + "\n")
    return _dry_run(manifest, ledger, tmp / "nightly.log", timeout=900), ledger.stat().st_size / 1e6


@dataclass
class InFlight:
    run: Finished
    submitted: int
    unfinished: int
    twice: int
    polls: int
    all_submitted_after: float | None


def in_flight(tmp: Path, args: argparse.Namespace) -> InFlight:
    emulator, base = start_emulator(
        "--render", "placeholder", "--duration-median", str(args.job_seconds), "--duration-spread", "0"
    )
    try:
        manifest = tmp / "in-flight.jsonl"
        write_manifest(manifest, args.in_flight)
        started = time.perf_counter()
        all_in: list[float] = []

        def watch() -> None:
            if not all_in and emulator_stats(base)["submissions"] >= args.in_flight:
                all_in.append(time.perf_counter() - started)

        done = run_child(
            [
                "run",
                str(manifest),
                "--concurrency",
                str(args.in_flight),
                "--rate-limit",
                "600000",
                "--poll-interval",
                str(args.poll_interval),
                "--max-runtime",
                f"{args.max_runtime:g}s",
                "--ledger",
                str(tmp / "run" / "ledger.jsonl"),
                "--out",
                str(tmp / "run" / "out"),
                "--quiet",
            ],
            batcher_env(API_KEY, base),
            tmp / "in-flight.log",
            timeout=args.max_runtime + 120,
            watch=watch,
        )
        stats = emulator_stats(base)
    finally:
        stop(emulator)
    jobs = stats["jobs"]
    return InFlight(
        done,
        stats["submissions"],
        jobs.get("QUEUED", 0) + jobs.get("PROCESSING", 0),
        stats["inputs_submitted_more_than_once"],
        stats["requests"].get("poll", {}).get("200", 0),
        all_in[0] if all_in else None,
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="dry-run rows (default %(default)s)")
    parser.add_argument("--in-flight", type=int, default=10_000, help="jobs in flight (default %(default)s)")
    parser.add_argument(
        "--max-runtime", type=float, default=60.0, help="seconds of the in-flight run (default %(default)s)"
    )
    parser.add_argument("--poll-interval", type=float, default=20.0, help="(default %(default)s)")
    parser.add_argument(
        "--job-seconds", type=float, default=120.0, help="emulated job duration (default %(default)s)"
    )
    parser.add_argument(
        "--done", type=int, default=1_000_000, help="done jobs in the nightly ledger (default %(default)s)"
    )
    parser.add_argument(
        "--per-run",
        type=int,
        nargs="+",
        default=[10_000, 1_000_000],
        help="jobs a run in that ledger; one ledger for each size given (default %(default)s)",
    )
    parser.add_argument(
        "--appended", type=int, default=1_000, help="rows appended since (default %(default)s)"
    )
    parser.add_argument("--skip-dry-run", action="store_true")
    parser.add_argument("--skip-in-flight", action="store_true")
    parser.add_argument("--skip-nightly", action="store_true")
    parser.add_argument("--skip-killed", action="store_true", help="leave out the killed run's ledger")
    args = parser.parse_args()

    rows: list[tuple[str, str, str, str]] = []
    ok = True

    def check(name: str, value: str, target: str, passed: bool | None) -> None:
        nonlocal ok
        ok = ok and passed is not False
        rows.append((name, value, target, "" if passed is None else "pass" if passed else "FAIL"))

    with tempfile.TemporaryDirectory() as top:
        tmp = Path(top)
        if not args.skip_dry_run:
            done, size_mb = dry_run(tmp, args.rows)
            label = f"dry run, {args.rows:,} rows ({size_mb:.0f} MB .jsonl)"
            check(
                f"{label}: peak RSS",
                f"{done.peak_rss_mb:.0f} MB",
                f"< {DRY_RUN_TARGET_MB} MB",
                done.peak_rss_mb < DRY_RUN_TARGET_MB,
            )
            check(
                f"{label}: wall time",
                f"{done.seconds:.1f} s ({args.rows / done.seconds:,.0f} rows/s)",
                "",
                None,
            )
            check(f"{label}: exit code", str(done.exit_code), "0", done.exit_code == 0)
        shapes = [(per_run, False) for per_run in args.per_run]
        shapes += [] if args.skip_killed else [(max(args.per_run), True)]
        for per_run, killed in [] if args.skip_nightly else shapes:
            done, size_mb = nightly(tmp, args, per_run, killed=killed)
            runs = -(-args.done // per_run)
            label = (
                f"{'nightly ledger' if runs > 1 else 'ledger'}, {args.done:,} jobs done in {runs:,}"
                f" run{'s' if runs > 1 else ''}{', the last killed before its run_end' if killed else ''}"
                f" ({size_mb:,.0f} MB), {args.appended:,} rows appended: dry run"
            )
            check(
                f"{label}: peak RSS",
                f"{done.peak_rss_mb:.0f} MB",
                f"< {DRY_RUN_TARGET_MB} MB",
                done.peak_rss_mb < DRY_RUN_TARGET_MB,
            )
            found = f"Already in the ledger ({tmp / 'nightly' / 'ledger.jsonl'}): {args.done:,} done"
            would = f"Would submit {args.appended:,} jobs"
            check(
                f"{label}: finds the done and the new",
                "yes" if found in done.output and would in done.output else "no",
                "yes",
                found in done.output and would in done.output and "edited" not in done.output,
            )
            check(f"{label}: wall time, exit code", f"{done.seconds:.1f} s, {done.exit_code}", "", None)
        if not args.skip_in_flight:
            r = in_flight(tmp, args)
            n = args.in_flight
            label = f"{n:,} in flight"
            check(
                f"{label}: peak RSS",
                f"{r.run.peak_rss_mb:.0f} MB",
                f"< {IN_FLIGHT_TARGET_MB} MB",
                r.run.peak_rss_mb < IN_FLIGHT_TARGET_MB,
            )
            check(f"{label}: submitted (emulator)", f"{r.submitted:,}", f"{n:,}", r.submitted == n)
            check(
                f"{label}: still running at the end (emulator)",
                f"{r.unfinished:,}",
                f"{n:,}",
                r.unfinished == n,
            )
            check(f"{label}: inputs submitted more than once", str(r.twice), "0", r.twice == 0)
            after = f"{r.all_submitted_after:.1f} s" if r.all_submitted_after is not None else "never"
            check(f"{label}: all submitted after", after, "", None)
            check(f"{label}: polls answered", f"{r.polls:,}", "", None)
            check(f"{label}: wall time, exit code", f"{r.run.seconds:.1f} s, {r.run.exit_code}", "", None)
            if r.submitted != n or r.run.exit_code not in (0, 1):
                print(r.run.output, file=sys.stderr)

    print(
        f"batcher run as a subprocess; {os.cpu_count()} cores; in flight: {args.job_seconds:g} s jobs, "
        f"--poll-interval {args.poll_interval:g} --max-runtime {args.max_runtime:g}s"
    )
    print()
    print("| measurement | value | target | result |")
    print("|---|---:|---:|---|")
    for name, value, target, result in rows:
        print(f"| {name} | {value} | {target} | {result} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
