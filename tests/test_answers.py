"""Edge cases in what the provider answers, end to end over real sockets: an output that is bare
base64, an ``x-remaining-credits`` that is not a number, a 2xx submit answer that is an error,
and a COMPLETED whose output is cut short."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web

from batcher.api import SegmindAPI
from batcher.clock import ScaledClock, SystemClock
from batcher.config import ApiSettings
from batcher.download import DownloadFailed, OutputSaver
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode, RunResult
from batcher.outputs import OutputRef, parse_outputs
from batcher.progress_view import snapshot_from, snapshot_json
from batcher.summary import render_summary
from batcher.transport import Transport
from batcher.workflows import WorkflowRegistry

from .support import (
    API_KEY,
    SPEED,
    fronted_emulator,
    last_status,
    ledger_lines,
    run,
    served,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 3


def _emulator(clock: ScaledClock, **changes: Any) -> Any:
    return run_emulator(EmulatorConfig(**{**FAST, **changes}), clock=clock)


# --- 1. an output that is bare base64 ---------------------------------------------------------

ENCODINGS = {
    "standard": lambda raw: base64.b64encode(raw).decode(),
    "MIME line breaks": lambda raw: base64.encodebytes(raw).decode(),
    "URL-safe, no padding": lambda raw: base64.urlsafe_b64encode(raw).decode().rstrip("="),
}
MEDIA = [  # (the bytes a workflow sent, their type, how they were encoded)
    (PNG, "image/png", "standard"),
    (b"\xff\xd8\xff\xe0" + bytes(300), "image/jpeg", "MIME line breaks"),
    (b"GIF89a\xff\xfe" + bytes(40), "image/gif", "URL-safe, no padding"),
    (b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(30), "image/webp", "standard"),
    (b"\x00\x00\x00\x20ftypisom" + bytes(50), "video/mp4", "URL-safe, no padding"),
    (b"\x00\x00\x00\x14ftypqt  " + bytes(50), "video/quicktime", "standard"),
    (b"\x00\x00\x00\x1cftypavif" + bytes(50), "image/avif", "MIME line breaks"),
]

TEXTS = [  # outputs that must stay text, whatever base64 they happen to be
    "Tree",
    "Sunset",
    "A lighthouse at dusk",
    "abcdefghijklmnopqrstuvwxyz012345",  # valid base64 of 24 bytes that are no image
    base64.b64encode(b"a caption, encoded").decode(),
    base64.b64encode(PNG).decode()[:40] + "!not base64!",  # a PNG's start, then not base64
    base64.b64encode(PNG).decode()[:40] + "-+" + base64.b64encode(PNG).decode()[42:80],  # two alphabets
    base64.b64encode(PNG).decode()[:41],  # 41 characters: no base64 is that long
    "iVBORw0KGgo=",  # a PNG's signature and nothing else: too short to be an image
]


def test_only_base64_that_decodes_to_an_image_or_video_becomes_an_inline_file() -> None:
    """A bare base64 string (a workflow's image, sent without a ``data:`` prefix) was saved as a
    .txt file of base64. It is now an inline output of the type its first bytes say, in whatever
    form it came (line breaks, URL-safe, no padding); anything that does not decode to a known
    image or video signature stays text, so a caption is never taken for a file."""
    for raw, mime, encoding in MEDIA:
        sent = ENCODINGS[encoding](raw)
        name = f"{mime}, {encoding}"
        [ref] = parse_outputs(json.dumps([{"keyname": "img", "value": {"data": sent, "type": "image"}}]))
        assert ref.url is not None and ref.text is None, name
        head, _, payload = ref.url.partition(",")
        assert head == f"data:{mime};base64", name
        assert base64.b64decode(payload, validate=True) == raw, name
        assert parse_outputs(sent) == [OutputRef("output", url=ref.url)], name  # bare, as the whole output
    for text in TEXTS:
        assert parse_outputs(json.dumps({"caption": text})) == [OutputRef("caption", text=text)], text


async def test_a_bare_base64_image_is_saved_as_the_image_and_the_ledger_keeps_no_base64(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The emulator answers with the image as bare base64 (``output_shape: base64``): the file
    saved is the PNG the emulator rendered, named ``.png``; the ``generated`` line records the
    output's type and size, not its megabytes of base64 (a ledger line holds a record, not a file)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    async with _emulator(clock, output_shape="base64") as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        [job] = list(emu.state.store)[:1]
        assert job.render is not None
        rendered = job.render.outputs[0].data
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sketch-0000.png", "sketch-0001.png"]
    assert (tmp_path / "out" / "sketch-0000.png").read_bytes() == rendered
    lines = ledger_lines(tmp_path / "ledger.jsonl")
    generated = [r for r in lines if r["status"] == "generated"]
    assert [o["inline"] for r in generated for o in r["outputs"]] == ["image/png", "image/png"]
    assert all(o["chars"] > len(rendered) for r in generated for o in r["outputs"])
    encoded = base64.b64encode(rendered).decode()
    assert encoded[:40] not in (tmp_path / "ledger.jsonl").read_text()


async def test_a_run_killed_before_saving_an_inline_output_polls_the_job_again_for_it(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The ledger keeps no inline bytes, so a job left ``generated`` (killed before its file was
    saved) is polled again by its poll_url, which is free, and never POSTed again."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock, output_shape="base64") as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        saved = tmp_path / "out" / "sketch-0000.png"
        good = saved.read_bytes()
        # As if killed between the provider's COMPLETED and the file reaching its name.
        kept = [r for r in ledger_lines(ledger) if r["status"] not in ("completed", "run_end")]
        ledger.write_text("".join(json.dumps(r) + "\n" for r in kept))
        saved.unlink()
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 1}
    assert result.stats.attached == 1 and after["submissions"] == before["submissions"] == 1
    assert after["requests"]["poll"]["200"] == before["requests"]["poll"]["200"] + 1
    assert saved.read_bytes() == good and last_status(ledger)["sketch-0000"] == "completed"


async def test_a_bare_base64_output_over_the_size_cap_is_refused_not_saved(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``output.max_bytes`` holds for an image sent inline as for one fetched by URL (it was
    saved whatever its size, as text)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _emulator(clock, output_shape="base64") as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"output.max_bytes": 64})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes == {"download_failed": 1}
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert "64-byte cap" in failed["error"] and failed["retryable"] is False
    assert not list((tmp_path / "out").iterdir())


def _saver(transport: Transport, out: Path) -> OutputSaver:
    api_settings = ApiSettings(base_url="https://api.segmind.com", api_key=API_KEY)
    return OutputSaver(SegmindAPI(transport, api_settings, SystemClock()), out, max_bytes=10**6, timeout=5)


async def test_an_inline_output_read_back_without_its_bytes_and_no_poll_url_fails_clearly(
    tmp_path: Path,
) -> None:
    """An inline output from the ledger (type, no bytes) cannot be saved from it; a job without a
    poll_url to ask again (a hand-edited ledger) gets a failure that says so, not an empty file."""
    ref = OutputRef.from_json(
        OutputRef("img", "data:image/png;base64," + base64.b64encode(PNG).decode()).to_json()
    )
    assert (ref.url, ref.inline) == (None, "image/png")
    async with Transport() as transport:
        saver = _saver(transport, tmp_path)
        with pytest.raises(DownloadFailed, match="not kept in the ledger") as caught:
            await saver.save_all("job", [ref])
    assert caught.value.retryable is False and not list(tmp_path.iterdir())


async def test_outputs_sharing_a_key_are_each_saved_to_a_file_of_their_own(tmp_path: Path) -> None:
    """A workflow that answers three images under one ``keyname``: each is paid for and each is
    kept (``job.png``, ``job+image.png``, ``job+image_1.png``). Named by key alone, the third
    overwrote the second, and the ledger recorded two outputs at one path."""
    images = [PNG + bytes([n]) for n in range(3)]
    refs = [OutputRef("image", "data:image/png;base64," + base64.b64encode(i).decode()) for i in images]
    async with Transport() as transport:
        saved = await _saver(transport, tmp_path).save_all("job", refs)
    assert [Path(s.path).name for s in saved] == ["job.png", "job+image.png", "job+image_1.png"]
    assert [Path(s.path).read_bytes() for s in saved] == images
    assert [s.sha256 for s in saved] == [hashlib.sha256(i).hexdigest() for i in images]


async def test_an_outputs_extension_is_its_urls_in_any_case_or_encoding_else_its_types(
    tmp_path: Path,
) -> None:
    """Output hosts answer ``application/octet-stream``, upper-case names, percent-encoded dots,
    and types with parameters or capitals. The file's extension comes from the URL's name when it
    is a known one (``.JPG`` is a ``.jpg``, ``b%2Epng`` a ``.png``), else from the type, read
    without its parameters and case; an inline ``data:`` output with no type is text (RFC 2397).
    Read by the URL's suffix as given, or by the type as written, each is a ``.bin`` that no
    image viewer opens."""
    types = {"A.JPG": "application/octet-stream", "b%2Epng": "application/octet-stream"}
    types |= {"c": "Image/PNG; charset=binary", "d": "application/octet-stream"}

    async def serve(request: web.Request) -> web.Response:
        asked = {unquote(name): ctype for name, ctype in types.items()}[request.match_info["name"]]
        return web.Response(body=PNG, headers={"Content-Type": asked})

    app = web.Application()
    app.router.add_get("/o/{name}", serve)
    async with served(app) as base, Transport() as transport:
        saver = _saver(transport, tmp_path)
        names = {}
        for name in types:
            (saved,) = await saver.save_all(
                name.split("%")[0].split(".")[0], [OutputRef("o", f"{base}/o/{name}")]
            )
            names[name] = Path(saved.path).name
        inline = "data:;base64," + base64.b64encode(b"hi").decode()
        (text,) = await saver.save_all("e", [OutputRef("o", inline)])
        inline = "data:IMAGE/PNG;base64," + base64.b64encode(PNG).decode()
        (image,) = await saver.save_all("f", [OutputRef("o", inline)])
    assert names == {"A.JPG": "A.jpg", "b%2Epng": "b.png", "c": "c.png", "d": "d.bin"}
    assert Path(text.path).name == "e.txt" and Path(text.path).read_bytes() == b"hi"
    assert Path(image.path).name == "f.png"


# --- 2. x-remaining-credits that is not a number -------------------------------------------


@pytest.mark.parametrize("header", ["nan", "NaN", "inf", "-Infinity", "1e999", "unlimited"])
async def test_remaining_credits_that_are_not_a_finite_number_are_ignored(
    tmp_path: Path, registry: WorkflowRegistry, header: str
) -> None:
    """float() reads "nan", "inf" and "1e999" (infinite): they were taken as the balance, shown
    as "credits remaining: $nan" and written as NaN in ``--progress json`` (which is no JSON).
    They are ignored now, as a missing header is, and so is a word ("unlimited"), which must not
    end the run."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with _emulator(clock, credits_header=header) as emu:
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.credits is None
    assert "credits remaining" not in render_summary(result)
    progress = snapshot_json(snapshot_from(result.stats, now=result.stats.started + 1.0))
    assert json.loads(json.dumps(progress, allow_nan=False))["credits"] is None


async def test_a_balance_given_only_with_submit_answers_is_the_one_the_run_shows(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A provider (or a gateway in front of it) may send ``x-remaining-credits`` with the POST's
    answer and not with polls. The run's summary and ``--progress json`` still show that
    balance: read from polls alone, a run against such a provider never showed one."""
    clock = ScaledClock(SPEED)

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        answer = await handler(request)
        if kind == "submit":
            answer.headers["x-remaining-credits"] = "12.5"
        else:
            answer.headers.popall("x-remaining-credits", None)
        return answer

    async with fronted_emulator(clock, EmulatorConfig(**FAST), front) as (base, _):  # type: ignore[arg-type]
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
        result = await run(settings_for(base, tmp_path), [manifest], registry, clock)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert result.stats.credits == 12.5
    assert "Provider credits remaining: $12.50" in render_summary(result)
    assert snapshot_json(snapshot_from(result.stats, now=result.stats.started + 1.0))["credits"] == 12.5


# --- 3. a 2xx submit answer that is an error -------------------------------------------------


@pytest.mark.parametrize("unknown_submit", ["resubmit", "fail"])
async def test_a_200_submit_answer_saying_failed_fails_the_job_once_and_nothing_is_sent_again(
    tmp_path: Path, registry: WorkflowRegistry, unknown_submit: str
) -> None:
    """A 200 whose body says FAILED, with an error and no poll_url or request_id, queued nothing:
    it was taken for a POST of unknown outcome, sent again in the same run (each time possibly
    billed) and by every later run, or failed as unknown under ``ledger.unknown_submit: fail``.
    Now the job fails with the provider's message, not retryable, as after a 400; nothing is
    counted as spent; the next run leaves it; ``--retry-failed`` sends it as a new job."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock, failed_submit_rate=1.0) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"ledger.unknown_submit": unknown_submit})
        result = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert result.exit_code is ExitCode.FAILED and result.stats.outcomes == {"failed": 3}
    assert result.stats.unknown_outcomes == 0 and result.stats.committed_usd == pytest.approx(0.0)
    assert stats["requests"]["submit"] == {"200": 3} and stats["failed_submits"] == 3
    lines = ledger_lines(ledger)
    assert not [r for r in lines if r["status"] == "submit_unknown"]
    failed = [r for r in lines if r["status"] == "failed"]
    assert len(failed) == 3 and all(r["retryable"] is False for r in failed)
    assert all(
        "Workflow could not be started" in r["error"] and "HTTP 200 on submit" in r["error"] for r in failed
    )

    async with _emulator(clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"ledger.unknown_submit": unknown_submit})
        again = await run(settings, [manifest], registry, clock)
        assert emu.stats()["requests"].get("submit") is None
        retried = await run(
            settings_for(
                emu.base_url, tmp_path, retry_failed=True, **{"ledger.unknown_submit": unknown_submit}
            ),
            [manifest],
            registry,
            clock,
        )
    assert again.earlier["failed"] == 3 and again.stats.resubmitted_unknown == 0
    assert retried.exit_code is ExitCode.OK and retried.stats.outcomes == {"completed": 3}
    assert retried.stats.resubmitted_unknown == 0


class OneAnswer:
    """A provider that answers every POST with one fixed answer and counts them (a real server)."""

    def __init__(self, body: str, status: int = 200, ctype: str = "application/json") -> None:
        self.body, self.status, self.ctype = body, status, ctype
        self.posts = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/workflows/{wf}", self.submit)
        return app

    async def submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        return web.Response(status=self.status, content_type=self.ctype, text=self.body)


async def _post_one(
    body: str, tmp: Path, registry: WorkflowRegistry, status: int = 200
) -> tuple[RunResult, list[dict[str, Any]], int]:
    """Two sketch jobs against a provider that answers every POST with ``body`` (``status``)."""
    tmp.mkdir()
    provider = OneAnswer(body, status)
    async with served(provider.app()) as base:
        manifest = write_jsonl(tmp / "m.jsonl", sketch_rows(2))
        settings = settings_for(
            base, tmp, concurrency=1, **{"retry.max_attempts": 2, "retry.base_delay": 0.01}
        )
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
    return result, ledger_lines(tmp / "ledger.jsonl"), provider.posts


@pytest.mark.parametrize(
    ("body", "outcome", "says"),
    [
        ('{"error": "invalid input"}', "failed", "invalid input"),
        ('{"error_message": "invalid seed"}', "failed", "invalid seed"),  # its other name, alone
        (
            '{"status": "FAILED", "error_message": [{"model": "flux", "error": "nsfw"}]}',
            "failed",
            "flux: nsfw",
        ),
        ('{"status": "error", "error": {"detail": "bad seed"}}', "failed", "bad seed"),
        ('{"status": 400, "message": "Invalid input: seed"}', "failed", "Invalid input: seed"),
        (
            '{"error": "Insufficient credits. Balance $0.05, required $0.10"}',
            "credits",
            "Insufficient credits",
        ),
        # Either half of the provider's out-of-credit message is enough: the words alone, or the
        # amounts alone (then the reason still says insufficient credits, read from them).
        ('{"error": "Insufficient credits"}', "credits", "Insufficient credits"),
        ('{"error": "Balance $0.05, required $0.10"}', "credits", "insufficient credits (HTTP 200"),
        ('{"error": "Forbidden", "code": 403}', "key", "Forbidden"),
        # A status the contract does not describe fails that job alone, asking for a report.
        (
            '{"error": "I\'m a teapot", "code": 418}',
            "failed",
            "code 418 in its body: I'm a teapot (unexpected; please report it)",
        ),
    ],
    ids=[
        "error",
        "error-message",
        "failed-list",
        "error-object",
        "code-400",
        "credits",
        "credits-words",
        "credits-amounts",
        "code-403",
        "code-418",
    ],
)
async def test_a_200_submit_answer_that_is_an_error_is_the_refusal_it_spells_out(
    tmp_path: Path, registry: WorkflowRegistry, body: str, outcome: str, says: str
) -> None:
    """An explicit error in a 200 with no poll_url is read as the error answer it would have been:
    a bad input fails that job (not retried, not an unknown outcome); the provider's
    insufficient-credits message, or either half of it, stops submitting as its 406 does (read
    as a bad input, it failed every job of the manifest for good); a code it names (403) is
    that status's refusal (the key: the run stops)."""
    result, lines, posts = await _post_one(body, tmp_path / "run", registry)
    assert result.stats.unknown_outcomes == 0 and not [r for r in lines if r["status"] == "submit_unknown"]
    assert result.stats.committed_usd == pytest.approx(0.0)
    last = {r["job_id"]: r for r in lines if r.get("job_id")}
    if outcome == "failed":
        assert posts == 2 and result.exit_code is ExitCode.FAILED
        assert all(
            r["status"] == "failed" and r["retryable"] is False and says in r["error"] for r in last.values()
        )
    else:
        assert posts == 1 and result.exit_code is ExitCode.PROVIDER
        assert says in (result.stats.stop_reason or "")
        assert last["sketch-0000"]["status"] == "deferred" and "sketch-0001" not in last


async def test_a_200_submit_answer_without_a_poll_url_or_an_explicit_error_stays_an_unknown_outcome(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The safe default holds: a 2xx that is unreadable, or lacks a poll_url without saying it
    failed, may have queued (and billed) the job: ``submit_unknown``, sent again, counted; so
    does one whose request_id is no id (empty, or a path), which names nothing to poll. A
    sibling answer that does say FAILED (or ERROR, in any case) is a refusal: one POST, no
    unknown outcome."""
    for i, body in enumerate(
        [
            '{"message": "Request queued", "status": "QUEUED"}',
            '{"status": "QUEUED", "error": null, "error_message": ""}',
            '{"status": 500, "message": "oops"}',
            "<html>OK</html>",
            '{"status": "FAILED", "error": "upstream timed out", "code": 504}',  # a 5xx stays unknown
            '{"error": "proxy timed out", "code": 599}',  # the last 5xx too
            # A request_id that is no id names no request to poll: the next POST is the way on.
            '{"status": "QUEUED", "request_id": ""}',
            '{"status": "QUEUED", "request_id": "4f7471d8ac431cffe0468dc487b5d354/../../admin"}',
        ]
    ):
        result, lines, posts = await _post_one(body, tmp_path / f"unknown-{i}", registry)
        assert result.stats.unknown_outcomes == 4 and posts == 4, body  # 2 jobs x 2 tries
        assert all(r["retryable"] is True for r in lines if r["status"] == "failed"), body
    for i, body in enumerate(['{"status": "FAILED"}', '{"status": " Error "}']):  # ERROR, any spelling
        result, lines, posts = await _post_one(body, tmp_path / f"explicit-{i}", registry)
        assert result.stats.unknown_outcomes == 0 and posts == 2, body
        assert all(
            "without a reason" in r["error"] or "Error" in r["error"] or "FAILED" in r["error"]
            for r in lines
            if r["status"] == "failed"
        ), body


@pytest.mark.parametrize("status", [500, 599])
async def test_a_submit_answered_with_any_5xx_up_to_599_is_an_unknown_outcome_not_a_refusal(
    tmp_path: Path, registry: WorkflowRegistry, status: int
) -> None:
    """Every 5xx is server trouble, 599 (some proxies' "network connect timeout") as much as 500:
    the POST may have started a billed job, so it is ``submit_unknown``, counted, and sent again
    (retryable when the tries run out). Read as an odd status, a 599 failed each job for good
    after one POST, not retryable, as if the provider had refused its input."""
    result, lines, posts = await _post_one('{"error": "upstream gone"}', tmp_path / "run", registry, status)
    assert result.stats.unknown_outcomes == 4 and posts == 4  # 2 jobs x 2 tries
    assert len([r for r in lines if r["status"] == "submit_unknown"]) == 4
    failed = [r for r in lines if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["retryable"] is True for r in failed)
    assert all(f"HTTP {status} on submit" in r["error"] for r in failed)


# --- 4. a COMPLETED answer whose output is cut short ------------------------------------------


async def test_a_completed_answer_whose_output_json_is_cut_short_is_polled_again_not_saved_as_text(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """An ``output`` string cut mid-JSON (``[{"keyname": ..., "value": {"data": "https://...``)
    did not parse, so it was taken for a text output: saved as ``<job>.txt`` in place of the
    image, the job ``completed`` and the run exit 0, the paid-for picture never fetched. Now it
    names no output: the job is polled again, a bounded number of times, then ``failed``,
    retryable, with an error that says the output was not JSON; the next run polls it again
    (never POSTs it) and saves the image once the answer is whole."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with _emulator(clock, garbled_output_rate=1.0) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"retry.max_attempts": 3})
        first = await run(settings, [manifest], registry, clock)
        garbled = emu.stats()["garbled_outputs"]
        emu.state.reconfigure(garbled_output_rate=0.0)
        second = await run(settings, [manifest], registry, clock)
        stats = emu.stats()
    assert first.exit_code is ExitCode.FAILED and first.stats.outcomes == {"failed": 2}
    assert garbled == 6  # three polls of each job, each answered COMPLETED with broken JSON
    failed = [r for r in ledger_lines(ledger) if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["retryable"] is True for r in failed)
    assert all("COMPLETED, but its output is not valid JSON" in r["error"] for r in failed)
    assert second.exit_code is ExitCode.OK and second.stats.outcomes == {"completed": 2}
    assert second.stats.attached == 2 and stats["submissions"] == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sketch-0000.png", "sketch-0001.png"]


# --- 5. submit and poll answers spelled loosely ------------------------------------------------

#: ``rewrite(answer)``: the JSON the front sends in place of the emulator's answer.
Rewrite = Callable[[dict[str, Any]], dict[str, Any]]


async def _fronted_run(
    tmp: Path,
    registry: WorkflowRegistry,
    *,
    submit: Rewrite | None = None,
    poll: Rewrite | None = None,
    **changes: Any,
) -> tuple[RunResult, list[dict[str, Any]], dict[str, Any]]:
    """Two sketch jobs against the emulator behind a front that rewrites its 200 submit and poll
    answers (settings ``changes``); the run's result, its ledger, and the emulator's stats."""
    clock = ScaledClock(SPEED)

    async def front(kind: str | None, request: web.Request, handler: web.Handler) -> web.StreamResponse:
        answer = await handler(request)
        rewrite = {"submit": submit, "poll": poll}.get(kind) if kind else None
        if rewrite is None or answer.status != 200 or not isinstance(answer, web.Response):
            return answer
        assert answer.body is not None
        return web.json_response(rewrite(json.loads(bytes(answer.body))))

    config = EmulatorConfig(**FAST)  # type: ignore[arg-type]
    async with fronted_emulator(clock, config, front) as (base, state):
        manifest = write_jsonl(tmp / "m.jsonl", sketch_rows(2))
        result = await run(settings_for(base, tmp, **changes), [manifest], registry, clock)
        stats = state.snapshot()
    return result, ledger_lines(tmp / "ledger.jsonl"), stats


@pytest.mark.parametrize(
    "poll_url",
    [None, "", "  \n", "PADDED"],
    ids=["missing", "empty", "blank", "padded"],
)
async def test_a_submit_answer_without_a_usable_poll_url_is_polled_by_its_request_id(
    tmp_path: Path, registry: WorkflowRegistry, poll_url: str | None
) -> None:
    """An accepted POST (paid for) whose answer has no poll_url, an empty or blank one, or one
    padded with whitespace, is polled at ``{base}/workflows/request/{request_id}`` (the
    contract's fallback) or at its poll_url stripped: polled anywhere else, every 404 expired a
    paid job with nothing saved. Each job completes, one POST each."""

    def without_poll_url(answer: dict[str, Any]) -> dict[str, Any]:
        given = answer.pop("poll_url")
        if poll_url is not None:
            answer["poll_url"] = f" {given}\n" if poll_url == "PADDED" else poll_url
        return answer

    result, lines, stats = await _fronted_run(tmp_path, registry, submit=without_poll_url)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert stats["submissions"] == 2
    submitted = [r for r in lines if r["status"] == "submitted"]
    assert len(submitted) == 2
    assert all(r["poll_url"].endswith(f"/workflows/request/{r['request_id']}") for r in submitted)


async def test_a_submit_answer_without_a_request_id_records_the_one_its_poll_url_ends_in(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The ledger's request id (what the provider's support asks for, and what ``status``
    shows) is the last part of the poll_url when the answer names none, not the whole URL."""

    def without_request_id(answer: dict[str, Any]) -> dict[str, Any]:
        return {"poll_url": answer["poll_url"], "status": answer["status"]}

    result, lines, _ = await _fronted_run(tmp_path, registry, submit=without_request_id)
    assert result.stats.outcomes == {"completed": 2}
    submitted = [r for r in lines if r["status"] == "submitted"]
    assert len(submitted) == 2
    assert all(re.fullmatch("[0-9a-f]{32}", r["request_id"]) for r in submitted)


async def test_a_poll_status_in_any_case_or_padded_with_spaces_is_read_as_that_status(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``"status": " completed "`` is COMPLETED: read as an unknown status, each job was polled
    again and again until ``poll.give_up_after`` (here 2 minutes: jobs take seconds), then
    failed, its output never saved."""

    def loose(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "status": f" {answer['status'].lower()} "}

    result, _, stats = await _fronted_run(tmp_path, registry, poll=loose, **{"poll.give_up_after": 120.0})
    assert result.exit_code is ExitCode.OK and result.stats.outcomes == {"completed": 2}
    assert stats["submissions"] == 2


@pytest.mark.parametrize("status", [None, "", "  "], ids=["missing", "empty", "blank"])
async def test_a_poll_answer_with_no_status_is_a_bad_answer_tried_a_bounded_number_of_times(
    tmp_path: Path, registry: WorkflowRegistry, status: str | None
) -> None:
    """A poll answer with no status, or an empty one, says nothing about the job: it is a poll
    that failed, tried again with backoff ``retry.max_attempts`` times, then ``failed``,
    retryable (paid for: the next run re-attaches it), saying the answer had no status. Read
    as an unknown status, a provider answering ``"status": ""`` kept each job polled until
    ``poll.give_up_after`` (two hours by default) and recorded an empty status in the ledger."""

    def no_status(answer: dict[str, Any]) -> dict[str, Any]:
        answer.pop("status")
        return answer if status is None else {**answer, "status": status}

    attempts = 3
    result, lines, stats = await _fronted_run(
        tmp_path,
        registry,
        poll=no_status,
        **{"poll.give_up_after": 120.0, "retry.max_attempts": attempts},
    )
    assert result.exit_code is ExitCode.FAILED and result.stats.outcomes == {"failed": 2}
    assert result.stats.gave_up_polling == 0 and stats["submissions"] == 2
    assert stats["requests"]["poll"] == {"200": 2 * attempts}
    assert not [r for r in lines if r["status"] == "polled"]
    failed = [r for r in lines if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["retryable"] is True for r in failed)
    said = f"polling gave up after {attempts} tries: poll answer has no status"
    assert all(said in r["error"] for r in failed)


async def test_a_status_the_contract_does_not_name_is_recorded_once_not_at_every_poll(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """An unknown status is recorded in the ledger (``polled``, its ``remote_status``) when it
    first comes, not again at every poll that repeats it: a job answering WAITING_FOR_GPU for
    the two hours of ``poll.give_up_after`` added a line a poll to the ledger, which every
    later run reads. It is polled until the cap, then given up, retryable."""

    def waiting(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "status": "WAITING_FOR_GPU"}

    result, lines, stats = await _fronted_run(
        tmp_path, registry, poll=waiting, **{"poll.give_up_after": 20.0, "poll.policy": "fixed"}
    )
    assert result.stats.gave_up_polling == 2 and stats["submissions"] == 2
    assert stats["requests"]["poll"]["200"] >= 2 * 5  # every 2 s for 20 s: polled again and again
    polled = [(r["job_id"], r["remote_status"]) for r in lines if r["status"] == "polled"]
    assert sorted(polled) == [("sketch-0000", "WAITING_FOR_GPU"), ("sketch-0001", "WAITING_FOR_GPU")]
    failed = [r for r in lines if r["status"] == "failed"]
    assert len(failed) == 2 and all(r["retryable"] is True and r["gave_up_polling"] for r in failed)
