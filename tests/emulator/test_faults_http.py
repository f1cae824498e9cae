"""Every fault option, over real sockets: 429s, 5xx, lost answers, slow answers, drops, failures."""

from __future__ import annotations

import json

import aiohttp
import pytest

from batcher.emulator import EmulatorConfig
from batcher.errors import ConfigError

from .helpers import BLOG, BLOG_TEXT, SKETCH, ManualClock, serve, sketch_input

pytestmark = pytest.mark.anyio

BODY = {"Blog_title_and_description": BLOG_TEXT}
UNKNOWN = "0" * 32


@pytest.mark.parametrize(
    ("style", "headers"),
    [
        ("retry-after-seconds", {"retry-after": "30"}),
        ("retry-after-date", {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}),
        ("reset-at-utc", {"x-rate-limit-reset-at-utc": "2023-11-14T22:13:50.000Z"}),
        ("none", {}),
    ],
)
async def test_429_says_when_to_come_back_in_the_chosen_style(style: str, headers: dict[str, str]) -> None:
    config = EmulatorConfig(rate_limit=2, rate_period=60.0, rate_header=style, render="placeholder")
    async with serve(config, ManualClock(start_wall=1_700_000_000.0)) as api:
        assert [(await api.submit(BLOG, BODY)).status for _ in range(2)] == [200, 200]
        limited = await api.submit(BLOG, BODY)
        assert limited.status == 429
        assert "Rate limit exceeded" in limited.json()["error"]
        told = {k: v for k, v in limited.headers.items() if k in ("retry-after", "x-rate-limit-reset-at-utc")}
        assert told == headers
        assert isinstance(api.clock, ManualClock)
        api.clock.advance(29.9)
        assert (await api.submit(BLOG, BODY)).status == 429
        api.clock.advance(0.1)
        assert (await api.submit(BLOG, BODY)).status == 200
        stats = api.emu.stats()
        assert (stats["rate_limited"], stats["submissions"]) == (2, 3)


async def test_polls_spend_the_same_budget_unless_told_otherwise() -> None:
    async with serve(EmulatorConfig(rate_limit=1, render="placeholder")) as api:
        answer = await api.queued(BLOG, BODY)
        assert (await api.poll(answer["poll_url"])).status == 429
    async with serve(EmulatorConfig(rate_limit=1, rate_limit_polls=False, render="placeholder")) as api:
        answer = await api.queued(BLOG, BODY)
        assert {(await api.poll(answer["poll_url"])).status for _ in range(5)} == {200}


async def test_each_key_has_its_own_budget() -> None:
    async with serve(EmulatorConfig(rate_limit=1, render="placeholder")) as api:
        assert (await api.submit(BLOG, BODY, key="a")).status == 200
        assert (await api.submit(BLOG, BODY, key="a")).status == 429
        assert (await api.submit(BLOG, BODY, key="b")).status == 200


async def test_server_errors_are_500_502_503_504_and_502_is_an_html_gateway_page() -> None:
    async with serve(EmulatorConfig(error_rate=1.0)) as api:
        replies = [await api.poll(f"{api.base}/workflows/request/{UNKNOWN}") for _ in range(30)]
        replies.append(await api.submit(BLOG, BODY))
        assert {r.status for r in replies} == {500, 502, 503, 504}
        for reply in replies:
            if reply.status == 502:
                assert reply.headers["content-type"].startswith("text/html") and "Bad Gateway" in reply.text
            else:
                assert set(reply.json()) == {"error"}
        stats = api.emu.stats()
        assert (stats["server_errors"], stats["submissions"]) == (31, 0)


async def test_a_lost_submit_is_accepted_and_billed_but_answered_502() -> None:
    config = EmulatorConfig(lost_rate=1.0, credits=5.0, render="placeholder", duration_median=0.0)
    async with serve(config) as api:
        reply = await api.submit(BLOG, BODY)
        assert reply.status == 502 and "Bad Gateway" in reply.text
        [job] = list(api.emu.state.store)
        final = await api.finish(job.request_id)
        assert final["status"] == "COMPLETED"
        stats = api.emu.stats()
        assert (stats["lost_responses"], stats["submissions"]) == (1, 1)
        assert stats["charged_usd"] == pytest.approx(0.4363)


async def test_a_failed_submit_is_a_200_saying_failed_with_no_poll_url_and_nothing_billed() -> None:
    config = EmulatorConfig(failed_submit_rate=1.0, credits=5.0, render="placeholder", duration_median=0.0)
    async with serve(config) as api:
        reply = await api.submit(BLOG, BODY)
        assert reply.status == 200
        body = reply.json()
        assert body["status"] == "FAILED" and body["error"]
        assert not {"poll_url", "request_id"} & set(body)
        assert (await api.submit(SKETCH, {})).status == 400  # an invalid input is still a 400
        stats = api.emu.stats()
        assert (stats["failed_submits"], stats["submissions"], stats["charged_usd"]) == (1, 0, 0.0)


async def test_a_slow_answer_arrives_after_slow_seconds_of_the_clock() -> None:
    async with serve(EmulatorConfig(slow_rate=1.0, slow_seconds=45.0, render="placeholder")) as api:
        before = api.clock.monotonic()
        reply = await api.submit(BLOG, BODY)
        assert reply.status == 200
        assert api.clock.monotonic() - before >= 45.0
        assert api.emu.stats()["slow_responses"] == 1


@pytest.mark.parametrize(("accept_share", "jobs"), [(0.0, 0), (1.0, 1)])
async def test_a_dropped_connection_gives_no_answer_and_may_have_started_a_job(
    accept_share: float, jobs: int
) -> None:
    config = EmulatorConfig(drop_rate=1.0, drop_accept_share=accept_share, render="placeholder")
    async with serve(config) as api:
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.submit(BLOG, BODY)
        with pytest.raises(aiohttp.ClientConnectionError):
            await api.poll(f"{api.base}/workflows/request/{UNKNOWN}")
        stats = api.emu.stats()
        assert (stats["dropped_after_accept"], stats["submissions"]) == (jobs, jobs)
        assert stats["requests"]["submit"] == {"dropped": 1}
        # aiohttp's client quietly sends an idempotent GET again after a disconnect.
        assert stats["requests"]["poll"]["dropped"] >= 1
        assert stats["dropped_connections"] == 1 + stats["requests"]["poll"]["dropped"]


@pytest.mark.parametrize("http_status", [200, 422])
async def test_failed_jobs_report_failed_with_an_error(http_status: int) -> None:
    config = EmulatorConfig(fail_rate=1.0, failed_http_status=http_status, render="placeholder", credits=1.0)
    async with serve(config) as api:
        answer = await api.queued(SKETCH, sketch_input())
        await api.finish(answer["request_id"])
        reply = await api.poll(answer["poll_url"])
        assert reply.status == http_status
        body = reply.json()
        assert body["status"] == "FAILED" and body["error"] and body["error_message"]
        assert api.emu.stats()["charged_usd"] == 0.0


async def test_an_undocumented_status_shows_up_while_a_job_runs() -> None:
    config = EmulatorConfig(
        odd_status_rate=1.0, render="placeholder", duration_median=10.0, duration_spread=0.0
    )
    async with serve(config) as api:
        answer = await api.queued(SKETCH, sketch_input())
        assert (await api.poll(answer["poll_url"])).json() == {"status": "STARTING"}
        assert (await api.finish(answer["request_id"]))["status"] == "COMPLETED"


@pytest.mark.parametrize("shape", ["list", "flat", "parsed"])
async def test_a_garbled_output_is_a_completed_answer_whose_output_string_is_cut_short(shape: str) -> None:
    config = EmulatorConfig(
        garbled_output_rate=1.0, output_shape=shape, render="placeholder", duration_median=0.0
    )
    async with serve(config) as api:
        answer = await api.queued(SKETCH, sketch_input())
        final = await api.finish(answer["request_id"])
        assert final["status"] == "COMPLETED" and isinstance(final["output"], str)
        assert final["output"][:1] in ("[", "{")
        with pytest.raises(ValueError):
            json.loads(final["output"])
        api.emu.state.reconfigure(garbled_output_rate=0.0)
        whole = (await api.poll(answer["poll_url"])).json()["output"]
        assert (json.dumps(whole) if shape == "parsed" else whole).startswith(final["output"])
        assert api.emu.stats()["garbled_outputs"] == 1


async def test_the_output_host_has_its_own_budget_and_says_when_to_come_back() -> None:
    config = EmulatorConfig(
        output_rate_limit=1.0,
        output_rate_period=60.0,
        rate_header="retry-after-seconds",
        render="placeholder",
        duration_median=0.0,
    )
    async with serve(config) as api:
        answer = await api.queued(SKETCH, sketch_input())
        final = await api.finish(answer["request_id"])
        url = json.loads(final["output"])[0]["value"]["data"]
        assert (await api.request("GET", url)).status == 200
        limited = await api.request("GET", url)
        assert limited.status == 429 and limited.headers["retry-after"] == "60"
        assert (await api.poll(answer["poll_url"])).status == 200  # the API's budget is another
        assert isinstance(api.clock, ManualClock)
        api.clock.advance(60.0)
        assert (await api.request("GET", url)).status == 200
        stats = api.emu.stats()
        assert (stats["output_rate_limited"], stats["output_downloads"]) == (1, 2)


async def test_reconfiguring_a_running_emulator_takes_effect_at_once() -> None:
    config = EmulatorConfig(slow_rate=1.0, slow_seconds=3600.0, render="placeholder", duration_median=3600.0)
    async with serve(config) as api:
        answer = await api.queued(SKETCH, sketch_input())
        assert api.clock.monotonic() >= 3600.0
        with pytest.raises(ConfigError):
            api.emu.state.reconfigure(fail_rate=2.0)
        assert api.emu.state.config.slow_rate == 1.0  # a refused change changes nothing
        api.emu.state.reconfigure(slow_rate=0.0, duration_median=0.0)
        before = api.clock.monotonic()
        reply = await api.poll(answer["poll_url"])
        assert api.clock.monotonic() == before
        await api.emu.state.store.wait_rendered(answer["request_id"])
        assert (await api.poll(answer["poll_url"])).json()["status"] == "COMPLETED"
        assert reply.status == 200


async def test_every_api_answer_is_dated_by_the_emulators_clock() -> None:
    """A client corrects the reset times a 429 names by the answer's Date, as it would a real
    server's: so the Date is the emulator's clock (aiohttp's own is the real time, which a scaled
    clock leaves behind at once)."""
    config = EmulatorConfig(rate_limit=1, render="placeholder")
    async with serve(config, ManualClock(start_wall=1_700_000_000.0)) as api:
        assert isinstance(api.clock, ManualClock)
        api.clock.advance(3600.0)
        accepted = await api.submit(BLOG, BODY)
        limited = await api.submit(BLOG, BODY)
    assert (accepted.status, limited.status) == (200, 429)
    assert accepted.headers["date"] == limited.headers["date"] == "Tue, 14 Nov 2023 23:13:20 GMT"
