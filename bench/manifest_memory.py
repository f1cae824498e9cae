"""Stream a generated 1,000,000-row manifest through read_manifest; print peak RSS and rows/s.

The target: a million-row dry run under 200 MB RSS for the whole process. Not part of the test
suite (it takes a while); run it by hand::

    .venv/bin/python bench/manifest_memory.py [--rows N] [--format jsonl|csv|yaml|txt]

Rows alternate between the two shipped workflows, without ids (so every row's id is hashed and
checked for duplicates, the expensive path), plus one row in 1000 with an explicit id.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from batcher.errors import RowError
from batcher.manifest import read_manifest
from batcher.workflows import load_workflows


def _row(i: int) -> dict[str, object]:
    if i % 2:
        row: dict[str, object] = {
            "workflow": "blog-image",
            "input": {"title": f"Post number {i}", "description": f"What post {i} is about, in a line."},
        }
    else:
        row = {"workflow": "sketch", "input": {"input_image": f"https://images.example.com/{i}.jpg"}}
    if i % 1000 == 0:
        row["id"] = f"row-{i}"
    return row


def write_manifest(path: Path, rows: int, kind: str) -> None:
    """A manifest of ``rows`` distinct valid rows in format ``kind``."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        if kind == "jsonl":
            for i in range(rows):
                fh.write(json.dumps(_row(i)) + "\n")
        elif kind == "txt":
            for i in range(rows):
                fh.write(f"https://images.example.com/{i}.jpg\n")
        elif kind == "csv":
            out = csv.writer(fh)
            out.writerow(["id", "workflow", "input_image", "title", "description"])
            for i in range(rows):
                r = _row(i)
                inputs = r["input"]
                assert isinstance(inputs, dict)
                out.writerow(
                    [r.get("id", ""), r["workflow"]]
                    + [inputs.get(k, "") for k in ("input_image", "title", "description")]
                )
        else:
            for i in range(rows):
                fh.write("- " + json.dumps(_row(i)) + "\n")  # JSON is YAML flow style


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("jsonl", "csv", "yaml", "txt"), default="jsonl")
    args = parser.parse_args()
    registry = load_workflows()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"bench.{args.format}"
        write_manifest(path, args.rows, args.format)
        size_mb = path.stat().st_size / 1e6
        before = _peak_rss_mb()
        jobs = errors = 0
        start = time.perf_counter()
        for item in read_manifest(path, registry):
            if isinstance(item, RowError):
                errors += 1
            else:
                jobs += 1
        elapsed = time.perf_counter() - start
    print(f"manifest:      {args.rows:,} rows of .{args.format}, {size_mb:.0f} MB")
    print(f"read:          {jobs:,} jobs, {errors:,} row errors in {elapsed:.1f} s")
    print(f"throughput:    {args.rows / elapsed:,.0f} rows/s")
    print(f"peak RSS:      {_peak_rss_mb():.0f} MB (before reading: {before:.0f} MB)")


if __name__ == "__main__":
    main()
