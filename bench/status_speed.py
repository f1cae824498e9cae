"""How fast ``batcher status`` reads a big ledger: builds a 1,000,000-line ledger, times ``ledger_status``.

    .venv/bin/python bench/status_speed.py [--lines 1000000] [--keep DIR]

The ledger looks like a long nightly history: several runs, ~200k jobs of both workflows, each
``submitting`` → ``submitted`` → (``polled``) → ``generated`` → ``completed``, with failures,
unknown outcomes, download failures, jobs still in flight and invalid rows sprinkled in. The
measurement runs in a fresh child process, so its peak RSS is the status pass's alone.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

START = 1_763_700_000.0  # 2025-11-21, a fixed origin: the same ledger every time


def _iso(t: float) -> str:
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def write_ledger(path: Path, lines: int, seed: int = 7) -> int:
    """Write about ``lines`` realistic ledger lines; returns how many were written."""
    rnd = random.Random(seed)
    dump = json.dumps
    written = 0
    t = START
    runs = 5
    per_run = lines // runs
    with path.open("w", encoding="utf-8") as fh:
        job = 0
        for _ in range(runs):
            t += 86400.0
            fh.write(
                dump(
                    {
                        "ts": _iso(t),
                        "job_id": None,
                        "status": "run",
                        "manifests": ["/data/nightly.jsonl"],
                        "workflows": {"sketch": "a1b2c3d4e5f60718", "blog-image": "0f1e2d3c4b5a6978"},
                        "settings": {"concurrency": 16, "poll": {"interval": 7.0}},
                        "version": 1,
                    }
                )
                + "\n"
            )
            written += 1
            end = written + per_run - 1
            while written < end:
                job += 1
                blog = job % 5 == 0
                wf = "blog-image" if blog else "sketch"
                jid = f"{wf}-{job:07d}"
                if job % 997 == 0:
                    fh.write(
                        dump(
                            {
                                "ts": _iso(t),
                                "job_id": None,
                                "status": "invalid",
                                "row_id": jid,
                                "source": "/data/nightly.jsonl",
                                "line": job,
                                "field": "input_image",
                                "error": "local file not found: missing.png",
                                "fix": "give an existing image file or a URL",
                            }
                        )
                        + "\n"
                    )
                    written += 1
                    continue
                inputs = (
                    {"Blog_title_and_description": f"Title: Post {job}\n\nDescription: About {job}.\n"}
                    if blog
                    else {"input_image": f"https://images.example.com/photos/{job}.jpg"}
                )
                t += 0.05
                fh.write(
                    dump(
                        {
                            "ts": _iso(t),
                            "job_id": jid,
                            "status": "submitting",
                            "workflow": wf,
                            "workflow_id": "66cec9a38aeef98f887211f1-v1",
                            "source": "/data/nightly.jsonl",
                            "line": job,
                            "inputs": inputs,
                        }
                    )
                    + "\n"
                )
                written += 1
                if job % 211 == 0:
                    fh.write(
                        dump(
                            {
                                "ts": _iso(t + 30),
                                "job_id": jid,
                                "status": "submit_unknown",
                                "error": "HTTP 502",
                            }
                        )
                        + "\n"
                    )
                    written += 1
                    continue
                rid = f"{rnd.getrandbits(128):032x}"
                fh.write(
                    dump(
                        {
                            "ts": _iso(t + 0.4),
                            "job_id": jid,
                            "status": "submitted",
                            "request_id": rid,
                            "poll_url": f"https://api.segmind.com/workflows/request/{rid}",
                        }
                    )
                    + "\n"
                )
                written += 1
                if job % 509 == 0:
                    continue  # still in flight
                if job % 53 == 0:
                    fh.write(
                        dump(
                            {
                                "ts": _iso(t + 40),
                                "job_id": jid,
                                "status": "failed",
                                "error": f"the provider reported FAILED: request {rid} NSFW content detected",
                                "retryable": False,
                            }
                        )
                        + "\n"
                    )
                    written += 1
                    continue
                if job % 7 == 0:
                    fh.write(
                        dump(
                            {
                                "ts": _iso(t + 20),
                                "job_id": jid,
                                "status": "polled",
                                "remote_status": "STARTING",
                            }
                        )
                        + "\n"
                    )
                    written += 1
                url = f"https://cdn.segmind.com/out/{rid}.png"
                done = t + rnd.uniform(20, 90)
                fh.write(
                    dump(
                        {
                            "ts": _iso(done),
                            "job_id": jid,
                            "status": "generated",
                            "outputs": [{"key": "image", "url": url, "type": "image"}],
                            "polls": 4,
                        }
                    )
                    + "\n"
                )
                written += 1
                fh.write(
                    dump(
                        {
                            "ts": _iso(done + 1.2),
                            "job_id": jid,
                            "status": "completed",
                            "outputs": [
                                {
                                    "key": "image",
                                    "url": url,
                                    "path": f"runs/nightly/outputs/{jid}/image.png",
                                    "sha256": f"{rnd.getrandbits(256):064x}",
                                    "bytes": 183_442,
                                }
                            ],
                        }
                    )
                    + "\n"
                )
                written += 1
    return written


def measure(path: Path) -> None:
    """Child process: time one ``ledger_status`` and print the numbers as JSON."""
    from batcher.status import ledger_status

    prices = {"sketch": 0.1006, "blog-image": 0.4363}
    t0 = time.perf_counter()
    report = ledger_status(path, prices=prices, now=START + 10 * 86400)
    seconds = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_kib / 1024, 1),
                "lines": report.lines,
                "jobs": report.jobs,
                "by_state": dict(report.by_state),
                "spend_usd": round(report.spend_usd, 2),
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="write the ledger here and keep it")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / "ledger.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        n = write_ledger(path, args.lines)
        size = path.stat().st_size
        print(f"wrote {n:,} lines ({size / 1e6:,.0f} MB) in {time.perf_counter() - t0:.1f}s")
        child = subprocess.run(
            [sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout)
        print(f"ledger_status: {result['seconds']:.2f}s, peak RSS {result['peak_rss_mb']:.0f} MB")
        print(f"  {result['lines']:,} lines, {result['jobs']:,} jobs, {result['by_state']}")
        print(f"  spend ${result['spend_usd']:,.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
