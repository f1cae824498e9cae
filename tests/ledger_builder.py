"""Realistic ledgers for the status and report tests, written as JSONL lines (as the engine writes them).

Records have the shapes the README's "The ledger" section documents; times advance explicitly
so every age and duration in a test is known exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batcher.ledger import utc_iso
from batcher.runsahead import RunMark

#: 2026-11-21 00:00:00 UTC: every test ledger starts here.
T0 = 1_795_219_200.0
PRICES: dict[str, float | None] = {"sketch": 0.1006, "blog-image": 0.4363}
WORKFLOW_IDS = {"sketch": "66cec9a38aeef98f887211f1-v1", "blog-image": "66b518aa31bd2081a8de2a98-v5"}


def marks_of(records: Sequence[Mapping[str, Any]]) -> list[RunMark]:
    """What :func:`~batcher.runsahead.run_ends` finds in a file of these records: each ``run``
    record and the ``run_end`` lines that follow it (first, those before any ``run``)."""
    marks = [RunMark(None, 0)]
    for rec in records:
        if rec.get("job_id") is None and rec["status"] == "run":
            marks.append(RunMark(dict(rec), 0))
        elif rec.get("job_id") is None and rec["status"] == "run_end":
            marks[-1] = RunMark(marks[-1].record, marks[-1].ends + 1)
    return marks


class LedgerBuilder:
    """Appends ledger records at controlled times; :meth:`write` saves them as a JSONL file."""

    def __init__(self, start: float = T0, seed: int = 1) -> None:
        self.now = start
        self.records: list[dict[str, Any]] = []
        self.rng = random.Random(seed)
        self.request_ids: dict[str, str] = {}

    def tick(self, seconds: float) -> LedgerBuilder:
        self.now += seconds
        return self

    def line(self, job_id: str | None, status: str, **fields: Any) -> LedgerBuilder:
        self.records.append({"ts": utc_iso(self.now), "job_id": job_id, "status": status, **fields})
        return self

    def run(self, manifest: str = "/data/jobs.jsonl") -> LedgerBuilder:
        return self.line(
            None,
            "run",
            manifests=[manifest],
            workflows={"sketch": "f39e439d060f00d3", "blog-image": "1c5a765741340cd9"},
            settings={"concurrency": 8, "poll": {"interval": 7.0, "first_delay": 10.0}},
            version=1,
        )

    def finished_run(self, jobs: Sequence[str], *, ended: bool) -> LedgerBuilder:
        """A run in which each of ``jobs`` (sketch jobs) completes, ended in order (``run_end``)
        or not (killed)."""
        self.run()
        for job in jobs:
            self.tick(1).submit(job, "sketch", {"input_image": f"https://img.example.com/{job}.jpg"})
            self.tick(30).generated(job).tick(1).completed(job, {"image": f"out/{job}.png"})
        return self.line(None, "run_end", outputs_synced=True) if ended else self

    def submitting(self, job_id: str, workflow: str, inputs: dict[str, Any], line: int = 1) -> LedgerBuilder:
        return self.line(
            job_id,
            "submitting",
            workflow=workflow,
            workflow_id=WORKFLOW_IDS.get(workflow, workflow),
            source="/data/jobs.jsonl",
            line=line,
            inputs=inputs,
        )

    def submitted(self, job_id: str) -> LedgerBuilder:
        rid = f"{self.rng.getrandbits(128):032x}"
        self.request_ids[job_id] = rid
        return self.line(
            job_id, "submitted", request_id=rid, poll_url=f"https://api.segmind.com/workflows/request/{rid}"
        )

    def submit(self, job_id: str, workflow: str, inputs: dict[str, Any], line: int = 1) -> LedgerBuilder:
        return self.submitting(job_id, workflow, inputs, line).tick(0.3).submitted(job_id)

    def generated(self, job_id: str, keys: tuple[str, ...] = ("image",)) -> LedgerBuilder:
        outputs = [{"key": k, "url": self._url(job_id, k), "type": "image"} for k in keys]
        return self.line(job_id, "generated", outputs=outputs, polls=3)

    def completed(self, job_id: str, paths: dict[str, str]) -> LedgerBuilder:
        outputs = [
            {
                "key": key,
                "url": self._url(job_id, key),
                "path": path,
                "sha256": hashlib.sha256(path.encode()).hexdigest(),
                "bytes": 18_746,
            }
            for key, path in paths.items()
        ]
        return self.line(job_id, "completed", outputs=outputs)

    def failed(self, job_id: str, error: str, *, retryable: bool = False) -> LedgerBuilder:
        return self.line(job_id, "failed", error=error, retryable=retryable)

    def invalid(self, row_id: str, line: int, field: str, error: str, fix: str) -> LedgerBuilder:
        return self.line(
            None,
            "invalid",
            row_id=row_id,
            source="/data/jobs.jsonl",
            line=line,
            field=field,
            error=error,
            fix=fix,
        )

    def _url(self, job_id: str, key: str) -> str:
        return f"https://segmind-outputs.s3.amazonaws.com/{self.request_ids.get(job_id, 'x')}/{key}.png"

    def write(self, path: Path) -> Path:
        with path.open("w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec, ensure_ascii=False, separators=(",", ":")) + "\n")
        return path


SKETCH = {"input_image": "https://images.example.com/cat.jpg"}
BLOG = {"Blog_title_and_description": "Title: Hello\n\nDescription: World\n"}


def every_branch() -> LedgerBuilder:
    """A ledger on which every list ``batcher status`` shows has entries and every field has a
    value other than its default: two runs; completions of two workflows; failures for several
    reasons and of every failed status (one given up polling, one retryable); a POST of unknown
    outcome; jobs in flight, one of an unpriced raw workflow and one no ``submitting`` line names;
    invalid rows; and a last run that ended early, leaving rows unstarted, unread and edited."""
    b = LedgerBuilder().run()
    b.invalid("old-row", 9, "input_image", "local file not found: a.png", "give an existing image file")
    b.tick(1).submit("sketch-0", "sketch", SKETCH).tick(30).generated("sketch-0").tick(1)
    b.completed("sketch-0", {"image": "/o/sketch-0.png"})
    b.tick(1).submit("blog-0", "blog-image", BLOG).tick(40).generated("blog-0").tick(1)
    b.completed("blog-0", {"image": "/o/blog-0.png"})
    for job in ("sketch-f1", "sketch-f2"):
        b.tick(1).submit(job, "sketch", SKETCH).tick(5)
        b.failed(job, f"the provider reported FAILED: request {b.request_ids[job]} NSFW content")
    b.tick(1).submit("sketch-x", "sketch", SKETCH).tick(5)
    b.line("sketch-x", "expired", error="HTTP 404 on poll: the record is gone")
    b.tick(1).submit("sketch-dl", "sketch", SKETCH).tick(20).generated("sketch-dl").tick(1)
    b.line(
        "sketch-dl", "download_failed", error="HTTP 503 from https://cdn.example.com/a.png", retryable=True
    )
    b.tick(1).submit("sketch-g", "sketch", SKETCH).tick(7200)
    b.line(
        "sketch-g",
        "failed",
        error="still PROCESSING after 7200.0 s",
        retryable=True,
        gave_up_polling=True,
    )
    b.tick(1).submitting("sketch-u", "sketch", SKETCH).tick(60)
    b.line("sketch-u", "submit_unknown", error="HTTP 502", retryable=True)
    b.tick(1).line(None, "run_end", outputs_synced=True, seconds=7381.5, not_started=0, edited_rows=0)
    b.tick(3600).run()
    b.invalid("row-7", 7, "title", "is missing or empty", "give title")
    b.tick(1).submit("raw-0", "66cec9a38aeef98f887211f1-v2", {"x": 1})
    b.tick(1).submit("blog-1", "blog-image", BLOG).tick(2).line("blog-1", "polled", remote_status="STARTING")
    b.tick(1).submitted("orphan")  # its submitting line is not in this ledger: workflow unknown
    b.tick(1).submitting("sketch-d", "sketch", SKETCH).tick(1)
    b.line("sketch-d", "deferred", error="HTTP 429", retryable=True)
    b.tick(1).line(
        None,
        "run_end",
        outputs_synced=True,
        seconds=8.25,
        not_started=4,
        stop_reason="max runtime: too little time left for another job to finish inside the window",
        edited_rows=2,
        rows_unread=True,
    )
    return b


def one_big_run(path: Path, jobs: int, *, ended: bool) -> Path:
    """A ledger of one run of ``jobs`` sketch jobs, each completed, ended in order or not (killed)."""
    return LedgerBuilder().finished_run([f"job-{i:05d}" for i in range(jobs)], ended=ended).write(path)
