"""The offline demo: its pictures are ours and small, and every row runs to completion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from PIL import Image

from batcher.emulator import EmulatorConfig
from batcher.inputs import materialize
from batcher.workflows import load_workflows

from .helpers import DEMO_IMAGES, REPO, fast_clock, serve

MANIFEST = REPO / "jobs" / "demo.jsonl"


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in MANIFEST.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_the_demo_pictures_are_small_640x480_images_with_a_stated_origin() -> None:
    pictures = sorted(DEMO_IMAGES.glob("*.png"))
    assert len(pictures) >= 10
    for path in pictures:
        with Image.open(path) as image:
            assert image.size == (640, 480)
        assert path.stat().st_size < 60_000
    assert "make_images.py" in (DEMO_IMAGES / "README.md").read_text(encoding="utf-8")


def test_the_demo_manifest_has_a_dozen_rows_of_each_workflow_with_unique_ids() -> None:
    rows = _rows()
    assert len({row["id"] for row in rows}) == len(rows)
    kinds = [row["workflow"] for row in rows]
    assert kinds.count("sketch") >= 10 and kinds.count("blog-image") >= 10
    for row in rows:
        if row["workflow"] == "sketch":
            assert (MANIFEST.parent / row["input"]["input_image"]).is_file()
        else:
            assert row["input"]["title"] and row["input"]["description"]


@pytest.mark.anyio
async def test_every_demo_row_completes_on_the_emulator() -> None:
    workflows = load_workflows()
    bodies = []
    for row in _rows():
        workflow = workflows.get(row["workflow"])
        assert workflow is not None
        inputs = workflow.prepare(row["input"], base_dir=MANIFEST.parent)
        bodies.append((workflow.workflow_id, materialize(workflow.inputs, inputs, Path(MANIFEST.parent))))
    async with serve(EmulatorConfig(duration_median=1.0, render_threads=2), fast_clock()) as api:
        answers = [await api.queued(workflow_id, body) for workflow_id, body in bodies]
        results: dict[str, str] = {}

        async def finish(request_id: str) -> None:
            results[request_id] = (await api.finish(request_id))["status"]

        async with anyio.create_task_group() as group:
            for answer in answers:
                group.start_soon(finish, answer["request_id"])
        assert set(results.values()) == {"COMPLETED"} and len(results) == len(bodies)
