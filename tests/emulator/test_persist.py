"""Memory across restarts: an emulator on an earlier one's state_dir knows every request it took.

Each test runs emulator A on a state folder, stops it, and starts B on the same folder, with
hand-driven clocks whose wall times say how long the emulator was down.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from batcher.emulator import EmulatorConfig, EmulatorState, remembered_port
from batcher.emulator.catalog import SKETCH as SKETCH_WORKFLOW
from batcher.emulator.catalog import canonical_input, input_hash
from batcher.emulator.render import placeholder_png
from batcher.errors import ConfigError, LedgerLockedError

from .helpers import BLOG, BLOG_TEXT, SKETCH, Api, ManualClock, serve, sketch_input

pytestmark = pytest.mark.anyio

#: Wall time of emulator A's clock at its start (an integer: conversions stay exact).
W = 1_700_000_000.0


def _config(tmp_path: Path, **changes: Any) -> EmulatorConfig:
    settings: dict[str, Any] = {
        "state_dir": str(tmp_path / "state"),
        "render": "placeholder",
        "duration_median": 30.0,
        "duration_spread": 0.0,
        **changes,
    }
    return EmulatorConfig(**settings)


@contextlib.asynccontextmanager
async def _started(config: EmulatorConfig, wall: float) -> AsyncIterator[Api]:
    """An emulator on the state folder's remembered port, its clock starting at ``wall``."""
    assert config.state_dir is not None
    async with serve(config, ManualClock(start_wall=wall), port=remembered_port(config.state_dir)) as api:
        yield api


def _clock(api: Api) -> ManualClock:
    assert isinstance(api.clock, ManualClock)
    return api.clock


def _output_url(body: dict[str, Any]) -> str:
    url: str = json.loads(body["output"])[0]["value"]["data"]
    return url


async def test_a_restarted_emulator_answers_old_poll_urls_on_the_same_port_and_on_time(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    async with _started(config, W) as a:
        answer = await a.queued(SKETCH, sketch_input())
        await a.emu.state.store.wait_rendered(answer["request_id"])
        _clock(a).advance(10.0)
        assert (await a.poll(answer["poll_url"])).json()["status"] == "PROCESSING"
    # Down for no time: submitted 10 s before the restart, 30 s long, so done 20 s after it.
    async with _started(config, W + 10.0) as b:
        assert b.base == a.base
        assert (await b.poll(answer["poll_url"])).json() == {"status": "PROCESSING", "output": ""}
        _clock(b).advance(19.5)
        assert (await b.poll(answer["poll_url"])).json()["status"] == "PROCESSING"
        _clock(b).advance(0.5)
        body = (await b.poll(answer["poll_url"])).json()
        assert body["status"] == "COMPLETED"
        download = await b.request("GET", _output_url(body))
        assert download.status == 200 and download.body == placeholder_png()
        stats = b.emu.stats()
        assert (stats["submissions"], stats["restored"], stats["charged_usd"]) == (1, 1, 0.1006)


async def test_a_job_whose_time_ran_out_while_the_emulator_was_down_is_completed_at_once(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    async with _started(config, W) as a:
        answer = await a.queued(BLOG, {"Blog_title_and_description": BLOG_TEXT})
        await a.emu.state.store.wait_rendered(answer["request_id"])
    async with _started(config, W + 3600.0) as b:
        assert (await b.poll(answer["poll_url"])).json()["status"] == "COMPLETED"


async def test_a_restart_on_a_clock_behind_the_journal_carries_on_from_where_it_stopped(
    tmp_path: Path,
) -> None:
    """``--speed 60`` runs an hour of the emulator's time in a real minute: restarted then, the new
    emulator's clock (real time again) is 59 minutes behind its journal. Its jobs keep the
    statuses they had and finish on time. Read against the clock behind it, a job answered
    COMPLETED went back to QUEUED, and its file to 404, for those 59 minutes."""
    config = _config(tmp_path)  # 30 s jobs
    async with _started(config, W) as a:
        _clock(a).advance(3600.0)
        done = await a.queued(SKETCH, sketch_input("cat"))
        assert (await a.finish(done["request_id"]))["status"] == "COMPLETED"
        running = await a.queued(SKETCH, sketch_input("house"))
        await a.emu.state.store.wait_rendered(running["request_id"])
        _clock(a).advance(10.0)  # stopped 10 s into the second job's 30
    async with _started(config, W + 60.0) as b:
        body = (await b.poll(done["poll_url"])).json()
        assert body["status"] == "COMPLETED"
        assert (await b.request("GET", _output_url(body))).status == 200
        assert (await b.poll(running["poll_url"])).json()["status"] == "PROCESSING"
        _clock(b).advance(19.5)
        assert (await b.poll(running["poll_url"])).json()["status"] == "PROCESSING"
        _clock(b).advance(0.5)
        assert (await b.poll(running["poll_url"])).json()["status"] == "COMPLETED"
        new = await b.queued(SKETCH, sketch_input("flowers"))
    # The journal's time went on from where it stopped; so does the next emulator's.
    async with _started(config, W + 60.0) as c:
        assert (await c.poll(new["poll_url"])).json()["status"] == "PROCESSING"
        assert (await c.poll(running["poll_url"])).json()["status"] == "COMPLETED"


async def test_submissions_per_input_and_the_bill_survive_and_the_next_draw_follows_on(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path, duration_median=1.0)
    twice, once = sketch_input("cat"), sketch_input("house")
    async with _started(config, W) as a:
        for body in (twice, twice, once):
            await a.finish((await a.queued(SKETCH, body))["request_id"])
        before = a.emu.stats()
    assert sorted(before["submissions_per_input"].values()) == [1, 2]
    async with _started(config, W + 60.0) as b:
        after = b.emu.stats()
        for key in ("submissions_per_input", "charged_usd", "jobs", "inputs_submitted_more_than_once"):
            assert after[key] == before[key], key
        third = await b.queued(SKETCH, twice)
        job = next(j for j in b.emu.state.store if j.request_id == third["request_id"])
        assert job.occurrence == 2
        assert max(b.emu.stats()["submissions_per_input"].values()) == 3


async def test_new_draws_from_a_reconfigure_survive_a_restart(tmp_path: Path) -> None:
    config = _config(tmp_path, duration_median=1000.0)
    async with _started(config, W) as a:
        answer = await a.queued(SKETCH, sketch_input())
        a.emu.state.reconfigure(duration_median=5.0)
        await a.emu.state.store.wait_rendered(answer["request_id"])
    async with _started(config, W) as b:
        _clock(b).advance(5.0)
        assert (await b.poll(answer["poll_url"])).json()["status"] == "COMPLETED"


async def test_a_render_cut_short_by_the_stop_is_done_again_on_load(tmp_path: Path) -> None:
    """A job journaled but never rendered (the emulator died mid-render) is rendered by the next."""
    config = _config(tmp_path, render="real", duration_median=1.0, fetch_timeout=5.0)
    earlier = EmulatorState(config, ManualClock(start_wall=W))
    ids = []
    # The second input was served by the dead emulator itself and cannot be fetched any more.
    for inputs in (sketch_input("cat"), {"input_image": "http://127.0.0.1:1/assets/cat.png"}):
        digest = input_hash(canonical_input(SKETCH_WORKFLOW, inputs))
        job = earlier.store.submit(SKETCH_WORKFLOW, inputs, digest, "k", 0.0)
        await earlier.remember(job)
        ids.append(job.request_id)
    earlier.close()  # without rendering anything

    async with _started(config, W + 60.0) as b:
        assert b.emu.state.restored == 2
        redrawn, lost = [await b.finish(request_id) for request_id in ids]
        assert redrawn["status"] == "COMPLETED"
        download = await b.request("GET", _output_url(redrawn))
        assert download.status == 200 and download.body.startswith(b"\x89PNG")
        assert lost["status"] == "FAILED"
        assert "could not fetch input_image" in lost["error"]
        assert "after an emulator restart" in lost["error"]


async def test_a_torn_journal_tail_is_cut_and_a_bad_middle_line_skipped(tmp_path: Path) -> None:
    config = _config(tmp_path)
    journal = tmp_path / "state" / "journal.jsonl"
    async with _started(config, W) as a:
        first = await a.queued(SKETCH, sketch_input("cat"))
    with journal.open("ab") as handle:
        handle.write(b"this line is not json\n")
    async with _started(config, W) as b:
        second = await b.queued(SKETCH, sketch_input("house"))
        assert b.emu.state.saved is not None and b.emu.state.saved.journal.skipped_lines == 1
    torn = b'{"kind": "job", "request_id": "0123'
    with journal.open("ab") as handle:
        handle.write(torn)
    async with _started(config, W) as c:
        saved = c.emu.state.saved
        assert saved is not None and saved.journal.repaired_bytes == len(torn)
        assert not journal.read_bytes().endswith(torn)
        third = await c.queued(SKETCH, sketch_input("flowers"))  # must not glue onto the torn bytes
    async with _started(config, W) as d:
        for answer in (first, second, third):
            assert (await d.poll(answer["poll_url"])).status == 200
        assert d.emu.stats()["submissions"] == 3


async def test_the_key_is_not_written_down_yet_still_owns_its_jobs(tmp_path: Path) -> None:
    config = _config(tmp_path)
    async with _started(config, W) as a:
        answer = await a.queued(SKETCH, sketch_input(), key="sk-very-secret")
    assert b"sk-very-secret" not in (tmp_path / "state" / "journal.jsonl").read_bytes()
    async with _started(config, W) as b:
        assert (await b.poll(answer["poll_url"], key="sk-someone-else")).status == 404
        assert (await b.poll(answer["poll_url"], key="sk-very-secret")).status == 200


async def test_one_state_dir_serves_one_emulator_at_a_time(tmp_path: Path) -> None:
    config = _config(tmp_path)
    first = EmulatorState(config, ManualClock())
    try:
        with pytest.raises(LedgerLockedError, match="in use by another emulator"):
            EmulatorState(config, ManualClock())
        with pytest.raises(ConfigError, match="state_dir"):
            first.reconfigure(state_dir=str(tmp_path / "elsewhere"))
    finally:
        first.close()
    EmulatorState(config, ManualClock()).close()  # released


async def test_without_a_state_dir_nothing_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with serve(EmulatorConfig(render="placeholder")) as api:
        await api.finish((await api.queued(SKETCH, sketch_input()))["request_id"])
    assert list(tmp_path.iterdir()) == []


async def test_a_submit_that_cannot_be_recorded_is_answered_500_and_forgotten(tmp_path: Path) -> None:
    async with _started(_config(tmp_path), W) as api:
        saved = api.emu.state.saved
        assert saved is not None
        saved.journal.close()  # as a full or failed disk would: every write now fails
        reply = await api.submit(SKETCH, sketch_input())
        assert reply.status == 500 and "could not be recorded" in reply.json()["error"]
        assert api.emu.stats()["submissions"] == 0
