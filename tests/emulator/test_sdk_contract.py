"""Segmind's own Python SDK, a client we did not write, runs both workflows against the emulator."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
import pytest
from segmind import SegmindClient  # type: ignore[import-untyped]
from segmind.exceptions import SegmindError  # type: ignore[import-untyped]

from batcher.emulator import EmulatorConfig

from .helpers import BLOG, BLOG_TEXT, SKETCH, fast_clock, serve, sketch_input

pytestmark = pytest.mark.anyio


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """httpx honours proxy variables; the emulator is on loopback and must be reached directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield


def _run_sdk(api_key: str, url: str, data: dict[str, str]) -> dict[str, Any]:
    client = SegmindClient(api_key=api_key)
    try:
        result: dict[str, Any] = client.pixelflows.run(
            workflow_url=url, data=data, poll_interval=0, max_wait_time=60
        )
        return result
    finally:
        client._client.close()


@pytest.mark.parametrize(("workflow_id", "data"), [(SKETCH, sketch_input("sailboat")), (BLOG, None)])
async def test_the_sdk_completes_each_workflow(workflow_id: str, data: dict[str, str] | None) -> None:
    data = data or {"Blog_title_and_description": BLOG_TEXT}
    async with serve(EmulatorConfig(duration_median=1.0), fast_clock()) as api:
        result = await anyio.to_thread.run_sync(
            functools.partial(_run_sdk, "sdk-key", f"{api.base}/workflows/{workflow_id}", data)
        )
        assert result["status"] == "COMPLETED", result
        # The SDK parses the JSON string; what it finds is the current list shape.
        [entry] = result["output"]
        assert entry["value"]["type"] == "image"
        reply = await api.request("GET", entry["value"]["data"])
        assert reply.status == 200 and reply.body.startswith(b"\x89PNG")
        stats = api.emu.stats()
        assert stats["requests"]["submit"] == {"200": 1}
        assert stats["submissions"] == 1


async def test_the_sdk_sees_a_failed_job_as_failed() -> None:
    async with serve(EmulatorConfig(fail_rate=1.0, render="placeholder"), fast_clock()) as api:
        result = await anyio.to_thread.run_sync(
            functools.partial(_run_sdk, "k", f"{api.base}/workflows/{SKETCH}", sketch_input())
        )
        assert result["status"] == "FAILED" and result["error"]


async def test_the_sdk_reads_our_error_bodies() -> None:
    async with serve(EmulatorConfig(api_key="right"), fast_clock()) as api:
        with pytest.raises(SegmindError) as caught:
            await anyio.to_thread.run_sync(
                functools.partial(_run_sdk, "wrong", f"{api.base}/workflows/{SKETCH}", sketch_input())
            )
        assert (caught.value.status, caught.value.detail) == (401, "Unauthorized: invalid API key")
