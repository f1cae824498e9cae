"""The HTTP contract over real sockets: submit, poll, outputs, errors, introspection."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

import pytest

from batcher.emulator import EmulatorConfig

from .helpers import BLOG, BLOG_TEXT, DEMO_IMAGES, SKETCH, Api, ManualClock, serve, sketch_input

pytestmark = pytest.mark.anyio

HEX32 = re.compile(r"^[0-9a-f]{32}$")
PLACEHOLDER = EmulatorConfig(render="placeholder", duration_median=10.0, duration_spread=0.0)


@pytest.mark.parametrize("path", ["/workflows/", "/workflows/v2/"])
@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
async def test_submit_answers_request_queued_on_both_paths_with_both_auth_headers(
    path: str, auth: str
) -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT}, path=path, auth=auth)
        assert reply.status == 200, reply.text
        body = reply.json()
        assert set(body) == {"message", "poll_url", "request_id", "status"}
        assert (body["message"], body["status"]) == ("Request queued", "QUEUED")
        assert HEX32.match(body["request_id"])
        assert body["poll_url"] == f"{api.base}/workflows/request/{body['request_id']}"


async def test_the_poll_url_follows_the_origin_the_client_used() -> None:
    async with serve(PLACEHOLDER) as api:
        port = api.base.rsplit(":", 1)[1]
        reply = await api.request(
            "POST",
            f"http://localhost:{port}/workflows/{BLOG}",
            json={"Blog_title_and_description": BLOG_TEXT},
            headers={"x-api-key": "k"},
        )
        assert reply.json()["poll_url"].startswith(f"http://localhost:{port}/workflows/request/")


async def test_poll_origin_puts_poll_urls_on_another_origin_and_only_them() -> None:
    config = EmulatorConfig(render="placeholder", poll_origin="http://other-host.test:1234/")
    async with serve(config) as api:
        body = await api.queued(SKETCH, sketch_input())
        assert body["poll_url"] == f"http://other-host.test:1234/workflows/request/{body['request_id']}"
        # The job itself is served as ever, and its outputs stay on the API's own origin.
        finished = await api.finish(body["request_id"])
        assert json.loads(finished["output"])[0]["value"]["data"].startswith(f"{api.base}/outputs/")


async def test_a_job_goes_queued_processing_completed_behind_a_bounded_worker_pool() -> None:
    config = EmulatorConfig(render="placeholder", workers=1, duration_median=10.0, duration_spread=0.0)
    async with serve(config) as api:
        clock = api.clock
        assert isinstance(clock, ManualClock)
        first = await api.queued(SKETCH, sketch_input("cat"))
        second = await api.queued(SKETCH, sketch_input("house"))
        for answer in (first, second):
            await api.emu.state.store.wait_rendered(answer["request_id"])

        async def status(answer: dict[str, str]) -> dict[str, str]:
            reply = await api.poll(answer["poll_url"])
            assert reply.status == 200
            result: dict[str, str] = reply.json()
            return result

        assert await status(first) == {"status": "PROCESSING", "output": ""}
        assert await status(second) == {"status": "QUEUED"}
        clock.advance(10.0)
        assert (await status(first))["status"] == "COMPLETED"
        assert await status(second) == {"status": "PROCESSING", "output": ""}
        assert api.emu.stats()["jobs"] == {"QUEUED": 0, "PROCESSING": 1, "COMPLETED": 1, "FAILED": 0}
        clock.advance(10.0)
        assert (await status(second))["status"] == "COMPLETED"


@pytest.mark.parametrize("shape", ["list", "flat", "parsed"])
async def test_output_shapes(shape: str) -> None:
    async with serve(EmulatorConfig(render="placeholder", output_shape=shape)) as api:
        answer = await api.queued(SKETCH, sketch_input())
        body = await api.finish(answer["request_id"])
        output = body["output"]
        if shape == "parsed":
            entries = output
        else:
            assert isinstance(output, str)
            entries = json.loads(output)
        if shape == "flat":
            url = entries["image_output"]
        else:
            assert entries == [
                {"keyname": "sketch_output", "value": {"data": entries[0]["value"]["data"], "type": "image"}}
            ]
            url = entries[0]["value"]["data"]
        assert url == f"{api.base}/outputs/{answer['request_id']}/sketch_output.png"


async def test_the_base64_shape_puts_each_image_in_the_answer_as_bare_base64() -> None:
    """Some workflows answer with the image itself, base64 without a ``data:`` prefix."""
    async with serve(EmulatorConfig(render="placeholder", output_shape="base64")) as api:
        answer = await api.queued(SKETCH, sketch_input())
        body = await api.finish(answer["request_id"])
        [entry] = json.loads(body["output"])
        assert entry["keyname"] == "sketch_output" and entry["value"]["type"] == "image"
        data = entry["value"]["data"]
        assert not data.startswith(("data:", "http"))
        served = await api.request("GET", f"{api.base}/outputs/{answer['request_id']}/sketch_output.png")
        assert base64.b64decode(data, validate=True) == served.body
        assert served.body.startswith(b"\x89PNG\r\n\x1a\n")


async def test_outputs_download_without_credentials_and_the_stats_catch_a_leak() -> None:
    async with serve(EmulatorConfig(render="placeholder", output_host="localhost")) as api:
        answer = await api.queued(SKETCH, sketch_input())
        body = await api.finish(answer["request_id"])
        url = json.loads(body["output"])[0]["value"]["data"]
        assert url.startswith("http://localhost:")  # another host than the API's 127.0.0.1
        clean = await api.request("GET", url)
        assert (clean.status, clean.headers["content-type"]) == (200, "image/png")
        leaky = await api.request("GET", url, headers={"Authorization": "Bearer k"})
        assert leaky.status == 200
        stats = api.emu.stats()
        assert (stats["output_downloads"], stats["output_downloads_with_credentials"]) == (2, 1)


async def test_unknown_output_files_are_404() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.request("GET", f"{api.base}/outputs/{'0' * 32}/x.png")
        assert (reply.status, reply.json()) == (404, {"error": "Not Found"})


# --- errors --------------------------------------------------------------------------------


async def test_401_without_a_key_on_submit_and_poll() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT}, key=None)
        assert reply.status == 401 and "API key" in reply.json()["error"]
        reply = await api.request("GET", f"{api.base}/workflows/request/{'0' * 32}")
        assert reply.status == 401


@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
async def test_401_with_a_wrong_key(auth: str) -> None:
    async with serve(EmulatorConfig(api_key="right", render="placeholder")) as api:
        reply = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT}, key="wrong", auth=auth)
        assert (reply.status, reply.json()) == (401, {"error": "Unauthorized: invalid API key"})
        ok = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT}, key="right", auth=auth)
        assert ok.status == 200


@pytest.mark.parametrize(("reads", "ignored"), [("x-api-key", "bearer"), ("bearer", "x-api-key")])
async def test_auth_header_reads_the_key_from_one_header_only(reads: str, ignored: str) -> None:
    """The contract cannot say whether the real API reads x-api-key (the SDK's) or Authorization:
    Bearer (the seeds'). Reading either, the emulator let a client that sends only one pass."""
    async with serve(EmulatorConfig(auth_header=reads, render="placeholder")) as api:
        body = {"Blog_title_and_description": BLOG_TEXT}
        refused = await api.submit(BLOG, body, auth=ignored)
        assert refused.status == 401 and "no API key" in refused.json()["error"]
        accepted = await api.submit(BLOG, body, auth=reads)
        assert accepted.status == 200
        poll_url = accepted.json()["poll_url"]
        headers = {"x-api-key": "k"} if ignored == "x-api-key" else {"Authorization": "Bearer k"}
        assert (await api.request("GET", poll_url, headers=headers)).status == 401


async def test_403_for_a_key_that_may_not_run_workflows() -> None:
    async with serve(EmulatorConfig(forbidden_keys=("viewer",))) as api:
        reply = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT}, key="viewer")
        assert reply.status == 403 and "Forbidden" in reply.json()["error"]


@pytest.mark.parametrize(
    "workflow_id", ["0123456789abcdef01234567-v1", "66cec9a38aeef98f887211f1-v2", "sketch"]
)
async def test_404_for_a_workflow_the_provider_does_not_have(workflow_id: str) -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.submit(workflow_id, {"input_image": "https://example.com/x.png"})
        assert (reply.status, reply.json()) == (404, {"error": "Workflow not found"})


@pytest.mark.parametrize(
    ("workflow_id", "body", "message"),
    [
        (SKETCH, {}, "Missing required input 'input_image'"),
        (SKETCH, {"input_image": ""}, "Missing required input 'input_image'"),
        (SKETCH, {"input_image": 42}, "must be a string"),
        (SKETCH, {"input_image": "demo-images/cat.png"}, "must be an image URL"),
        (SKETCH, {"input_image": "ftp://example.com/x.png"}, "must be an image URL"),
        (SKETCH, {"input_image": "https://example.com/x.png", "strength": 1}, "Unknown input 'strength'"),
        (SKETCH, ["not", "an", "object"], "must be a JSON object"),
        (BLOG, {"Blog_title_and_description": "x" * 8001}, "longer than 8000"),
        (BLOG, {"title": "A title"}, "Unknown input 'title'"),
    ],
)
async def test_400_for_invalid_inputs(workflow_id: str, body: object, message: str) -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.submit(workflow_id, body)
        assert reply.status == 400
        assert message in reply.json()["error"]
        assert api.emu.stats()["submissions"] == 0


async def test_400_for_a_body_that_is_not_json() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.request(
            "POST",
            f"{api.base}/workflows/{SKETCH}",
            data=b"{not json",
            headers={"x-api-key": "k", "Content-Type": "application/json"},
        )
        assert (reply.status, reply.json()) == (400, {"error": "Request body is not valid JSON"})


async def test_406_for_a_body_that_is_not_declared_json() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.request(
            "POST",
            f"{api.base}/workflows/{SKETCH}",
            data=b'{"input_image": "x"}',
            headers={"x-api-key": "k", "Content-Type": "text/plain"},
        )
        assert (reply.status, reply.json()) == (406, {"error": "Content-Type must be application/json"})


async def test_406_when_the_balance_cannot_pay_and_the_balance_header_on_answers() -> None:
    config = EmulatorConfig(credits=0.6, render="placeholder", duration_median=0.0)
    async with serve(config) as api:
        first = await api.submit(BLOG, {"Blog_title_and_description": BLOG_TEXT})
        assert first.status == 200 and first.headers["x-remaining-credits"] == "0.6000"
        await api.finish(first.json()["request_id"])  # charged 0.4363 on completion
        second = await api.submit(BLOG, {"Blog_title_and_description": "Title: Another\n"})
        assert second.status == 406
        assert second.json() == {"error": "Insufficient credits. Balance $0.1637, required $0.4363"}
        assert second.headers["x-remaining-credits"] == "0.1637"
        cheap = await api.submit(SKETCH, sketch_input())  # a sketch still fits
        assert cheap.status == 200
        await api.finish(cheap.json()["request_id"])
        assert api.emu.stats()["charged_usd"] == pytest.approx(0.4363 + 0.1006)


@pytest.mark.parametrize("credits", [None, 5.0])
async def test_credits_header_replaces_the_balance_header_on_json_answers(credits: float | None) -> None:
    config = EmulatorConfig(render="placeholder", credits=credits, credits_header="nan")
    async with serve(config) as api:
        assert (await api.submit(SKETCH, sketch_input())).headers["x-remaining-credits"] == "nan"
        assert (await api.submit(SKETCH, {})).headers["x-remaining-credits"] == "nan"  # a 400
        assert "x-remaining-credits" not in (await api.submit(SKETCH, sketch_input(), key=None)).headers


async def test_no_balance_header_when_credits_are_unlimited() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.submit(SKETCH, sketch_input())
        assert "x-remaining-credits" not in reply.headers


async def test_404_for_an_unknown_request_and_for_another_accounts_request() -> None:
    async with serve(PLACEHOLDER) as api:
        unknown = await api.poll(f"{api.base}/workflows/request/{'f' * 32}")
        assert (unknown.status, unknown.json()) == (404, {"error": f"Request {'f' * 32} not found"})
        answer = await api.queued(SKETCH, sketch_input(), key="alice")
        theirs = await api.poll(answer["poll_url"], key="mallory")
        assert theirs.status == 404


async def _finished_sketch(api: Api) -> tuple[ManualClock, dict[str, Any], str]:
    """A sketch job run to COMPLETED on ``api``'s manual clock: the clock, the submit's answer
    and the URL of its output."""
    clock = api.clock
    assert isinstance(clock, ManualClock)
    answer = await api.queued(SKETCH, sketch_input())
    body = await api.finish(answer["request_id"])
    return clock, answer, json.loads(body["output"])[0]["value"]["data"]


async def test_404_once_the_record_expires_while_the_file_lives_on() -> None:
    config = EmulatorConfig(
        render="placeholder", duration_median=10.0, duration_spread=0.0, record_ttl=60.0, output_ttl=3600.0
    )
    async with serve(config) as api:
        clock, answer, url = await _finished_sketch(api)
        clock.advance(59.0)
        assert (await api.poll(answer["poll_url"])).status == 200
        clock.advance(1.0)
        expired = await api.poll(answer["poll_url"])
        assert (expired.status, expired.json()) == (
            404,
            {"error": f"Request {answer['request_id']} not found"},
        )
        assert (await api.request("GET", url)).status == 200
        clock.advance(3600.0)
        assert (await api.request("GET", url)).status == 404


async def test_signed_output_urls_lapse_with_403_while_a_new_poll_hands_out_working_ones() -> None:
    """``output_url_ttl``: each poll hands out URLs good for that long (an S3 presigned URL);
    past it the file host answers 403 "Request has expired" though the file is still kept, and
    a URL whose signature was tampered with is refused at once."""
    config = EmulatorConfig(
        render="placeholder", duration_median=10.0, duration_spread=0.0, output_url_ttl=3600.0
    )
    async with serve(config) as api:
        clock, answer, url = await _finished_sketch(api)
        assert re.search(r"\?Expires=[0-9]+&Signature=[0-9a-f]{32}$", url), url
        assert (await api.request("GET", url)).status == 200
        unsigned = await api.request("GET", url.split("?")[0])
        forged = await api.request("GET", url[:-1] + ("0" if url[-1] != "0" else "1"))
        assert (unsigned.status, forged.status) == (403, 403) and "Access Denied" in forged.text
        clock.advance(3600.0)
        lapsed = await api.request("GET", url)
        assert lapsed.status == 403 and "Request has expired" in lapsed.text
        again = json.loads((await api.poll(answer["poll_url"])).json()["output"])[0]["value"]["data"]
        assert again != url and (await api.request("GET", again)).status == 200
        assert api.emu.stats()["output_urls_refused"] == 3


async def test_405_is_an_html_page() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.request("GET", f"{api.base}/workflows/{SKETCH}")
        assert reply.status == 405
        assert reply.headers["content-type"].startswith("text/html") and "405" in reply.text


async def test_unknown_paths_are_json_404() -> None:
    async with serve(PLACEHOLDER) as api:
        reply = await api.request("GET", f"{api.base}/v1/nothing")
        assert (reply.status, reply.json()) == (404, {"error": "Not Found"})


# --- real work -----------------------------------------------------------------------------


async def test_a_real_sketch_from_a_data_uri() -> None:
    async with serve(EmulatorConfig(duration_median=1.0)) as api:
        answer = await api.queued(SKETCH, sketch_input("lighthouse"))
        body = await api.finish(answer["request_id"])
        assert body["status"] == "COMPLETED"
        url = json.loads(body["output"])[0]["value"]["data"]
        async with api.session.get(url) as resp:
            data = await resp.read()
        source = (DEMO_IMAGES / "lighthouse.png").read_bytes()
        assert data.startswith(b"\x89PNG") and data != source and len(data) > 5000


async def test_a_real_sketch_from_an_http_url_on_the_emulators_own_assets() -> None:
    async with serve(EmulatorConfig(duration_median=0.0, assets_dir=str(DEMO_IMAGES))) as api:
        answer = await api.queued(SKETCH, {"input_image": f"{api.base}/assets/cat.png"})
        body = await api.finish(answer["request_id"])
        assert body["status"] == "COMPLETED", body
        assert api.emu.stats()["requests"]["asset"] == {"200": 1}


async def test_a_real_blog_image() -> None:
    async with serve(EmulatorConfig(duration_median=0.0)) as api:
        answer = await api.queued(BLOG, {"Blog_title_and_description": BLOG_TEXT})
        body = await api.finish(answer["request_id"])
        url = json.loads(body["output"])[0]["value"]["data"]
        reply = await api.request("GET", url)
        assert reply.status == 200 and reply.headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("data:image/png;base64,aGVsbG8gd29ybGQ=", "not a readable image"),
        ("data:image/png;base64,%%%", "not valid base64"),
        ("{base}/assets/missing.png", "HTTP 404"),
        ("http://127.0.0.1:9/unreachable.png", "could not fetch input_image"),
    ],
)
async def test_a_bad_or_unreachable_input_image_fails_the_job_clearly(image: str, message: str) -> None:
    async with serve(
        EmulatorConfig(duration_median=0.0, assets_dir=str(DEMO_IMAGES), fetch_timeout=5)
    ) as api:
        answer = await api.queued(SKETCH, {"input_image": image.format(base=api.base)})
        body = await api.finish(answer["request_id"])
        assert body["status"] == "FAILED"
        assert message in body["error"] and body["error"].startswith("Failed to process input_image")
        assert api.emu.stats()["charged_usd"] == 0.0


# --- introspection -------------------------------------------------------------------------


async def test_stats_count_requests_submissions_per_input_and_money() -> None:
    async with serve(EmulatorConfig(render="placeholder", duration_median=0.0, credits=10.0)) as api:
        body = {"Blog_title_and_description": BLOG_TEXT}
        first = await api.queued(BLOG, body)
        await api.queued(BLOG, body)  # the same input again: paid twice
        await api.queued(SKETCH, sketch_input())
        await api.submit(SKETCH, {}, key="k")
        await api.finish(first["request_id"])
        reply = await api.request("GET", f"{api.base}/_emulator/stats")
        stats = reply.json()
        assert stats == api.emu.stats()
        assert stats["requests"]["submit"] == {"200": 3, "400": 1}
        assert stats["requests"]["poll"] == {"200": 1}
        assert stats["submissions"] == 3
        assert sorted(stats["submissions_per_input"].values()) == [1, 2]
        assert stats["inputs_submitted_more_than_once"] == 1
        assert stats["jobs"]["COMPLETED"] == 3
        assert stats["charged_usd"] == pytest.approx(0.4363 * 2 + 0.1006)
        assert stats["credits_remaining"] == pytest.approx(10 - 0.4363 * 2 - 0.1006)
        assert set(stats) >= {
            "rate_limited",
            "lost_responses",
            "failed_submits",
            "dropped_connections",
            "server_errors",
            "output_downloads",
            "output_downloads_with_credentials",
            "api_requests",
        }
