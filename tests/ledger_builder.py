"""Realistic ledgers for the status and report tests, written as JSONL lines (as the engine writes them).

Records have the shapes the README's "The ledger" section documents; times advance explicitly
so every age and duration in a test is known exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from batcher.ledger import utc_iso

#: 2026-11-21 00:00:00 UTC: every test ledger starts here.
T0 = 1_795_219_200.0
PRICES: dict[str, float | None] = {"sketch": 0.1006, "blog-image": 0.4363}
WORKFLOW_IDS = {"sketch": "66cec9a38aeef98f887211f1-v1", "blog-image": "66b518aa31bd2081a8de2a98-v5"}


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
