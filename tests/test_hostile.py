"""Hostile or broken provider answers are contained: names, schemes, sizes, shapes."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import socket
import struct
import tempfile
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import web
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batcher.api import SegmindAPI
from batcher.clock import ScaledClock, SystemClock
from batcher.config import ApiSettings
from batcher.download import SPILL, DownloadFailed, OutputSaver, safe_name
from batcher.engine import ExitCode, RunResult
from batcher.errors import ConnectError, RequestTimeout, UnsafeOutputError
from batcher.outputs import MAX_OUTPUTS, OutputRef
from batcher.summary import render_summary
from batcher.transport import Transport
from batcher.workflows import WorkflowRegistry

from .support import (
    API_KEY,
    SPEED,
    LoopClock,
    last_status,
    ledger_lines,
    run,
    served,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

#: A job whose first POST's outcome was unknown, sent again and completed.
UNKNOWN_THEN_SENT_AGAIN = [
    "submitting",
    "submit_unknown",
    "submitting",
    "submitted",
    "generated",
    "completed",
]


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd",
        "/etc/passwd",
        "a/b",
        "..",
        ".",
        "",
        "a\x00b",
        "CON",
        "x" * 500,
        "ü🎨",
        "\\..\\x",
        "-rf",
    ],
)
def test_a_safe_name_stays_in_its_folder(name: str) -> None:
    safe = safe_name(name)
    assert "/" not in safe and "\\" not in safe and "\x00" not in safe
    assert safe not in ("", ".", "..") and not safe.startswith((".", "-")) and "+" not in safe
    assert len(safe) <= 90


@given(st.text(max_size=40), st.text(max_size=40))
def test_different_names_never_share_a_safe_name(a: str, b: str) -> None:
    if a != b:
        assert safe_name(a) != safe_name(b)


def _data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def _saver(tmp: Path, transport: Transport, max_bytes: int = 50 * 1024 * 1024) -> OutputSaver:
    api = SegmindAPI(
        transport, ApiSettings(base_url="https://api.segmind.com", api_key=API_KEY), SystemClock()
    )
    return OutputSaver(api, tmp / "out", max_bytes=max_bytes, timeout=10.0)


async def test_hostile_keynames_and_job_ids_cannot_escape_the_output_folder(tmp_path: Path) -> None:
    async with Transport() as transport:
        saver = await _saver(tmp_path, transport)
        refs = [
            OutputRef("../../evil", _data_uri(b"a")),
            OutputRef("/abs/path", _data_uri(b"b")),
            OutputRef("../../evil", _data_uri(b"c")),
        ]
        saved = await saver.save_all("../../../job", refs)
    root = (tmp_path / "out").resolve()
    assert len({s.path for s in saved}) == 3
    for s in saved:
        assert Path(s.path).resolve().is_relative_to(root)
    assert not (tmp_path / "evil").exists() and not (tmp_path.parent / "evil").exists()


_TYPES = ["image/png", "image/jpeg", "text/plain"]
_TRICKY = st.text(alphabet="ab.+_/", min_size=1, max_size=5)


@given(
    st.lists(
        st.tuples(_TRICKY, st.lists(st.tuples(_TRICKY, st.sampled_from(_TYPES)), min_size=1, max_size=3)),
        min_size=2,
        max_size=6,
        unique_by=lambda job: job[0],
    )
)
@example([("a", [("x", "image/png"), ("b", "image/png")]), ("a.b", [("y", "image/png")])])
@example([("a", [("x", "image/png")]), ("a.png", [("y", "image/png")]), ("a+b", [("z", "text/plain")])])
@settings(max_examples=60, deadline=None)
def test_jobs_never_share_an_output_file(jobs: list[tuple[str, list[tuple[str, str]]]]) -> None:
    """Every output of every job keeps its own file in the one flat folder, whatever the ids and
    keys (ids like ``a`` and ``a.png``, keys like ``b`` for job ``a`` against a job ``a.b``)."""

    async def save_every_job(out: Path) -> dict[str, bytes]:
        written: dict[str, bytes] = {}
        async with Transport() as transport:
            saver = await _saver(out, transport)
            for job_id, outputs in jobs:
                refs = []
                for i, (key, ctype) in enumerate(outputs):
                    data = f"{job_id}|{i}".encode()
                    refs.append(OutputRef(key, f"data:{ctype};base64," + base64.b64encode(data).decode()))
                for saved, ref in zip(await saver.save_all(job_id, refs), refs, strict=True):
                    assert saved.path not in written, f"{job_id}: {saved.path} is another output's"
                    written[saved.path] = base64.b64decode(ref.url.partition(",")[2] if ref.url else "")
        return written

    with tempfile.TemporaryDirectory() as tmp:
        written = anyio.run(save_every_job, Path(tmp))
        for path, data in written.items():
            assert Path(path).read_bytes() == data  # nobody overwrote it
            assert Path(path).parent == Path(tmp) / "out"
        assert sorted(p.name for p in (Path(tmp) / "out").iterdir()) == sorted(Path(p).name for p in written)


async def test_a_jobs_first_output_is_named_after_the_job(tmp_path: Path) -> None:
    async with Transport() as transport:
        saver = await _saver(tmp_path, transport)
        saved = await saver.save_all(
            "sketch-lighthouse",
            [OutputRef("sketch_output", _data_uri(b"a")), OutputRef("mask", _data_uri(b"b"))],
        )
    assert [Path(s.path).name for s in saved] == ["sketch-lighthouse.png", "sketch-lighthouse+mask.png"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x/y.png", "gopher://x", "javascript:alert(1)"])
async def test_output_urls_with_other_schemes_are_refused(tmp_path: Path, url: str) -> None:
    async with Transport() as transport:
        saver = await _saver(tmp_path, transport)
        with pytest.raises(DownloadFailed, match="refusing output URL with scheme") as caught:
            await saver.save_all("job", [OutputRef("img", url)])
    assert caught.value.retryable is False


async def test_an_output_url_whose_scheme_is_in_capitals_is_downloaded(tmp_path: Path) -> None:
    """A scheme is read without case (RFC 3986 3.1): ``HTTP://host/x.png`` is an http URL, and
    refusing it as an unsafe scheme lost a paid-for output, not retried."""

    async def image(request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG fake", content_type="image/png")

    app = web.Application()
    app.router.add_get("/x.png", image)
    async with served(app) as base, Transport() as transport:
        saver = await _saver(tmp_path, transport)
        [saved] = await saver.save_all(
            "job", [OutputRef("img", base.replace("http://", "HTTP://") + "/x.png")]
        )
    assert Path(saved.path).read_bytes() == b"\x89PNG fake"


async def test_an_inline_output_in_base64_with_line_breaks_is_saved(tmp_path: Path) -> None:
    """base64 as MIME writes it (RFC 2045, what data: URIs use; Python's encodebytes) has a line
    break every 76 characters; the strict decoder refused it as 'not valid base64', and the
    paid-for output was a download failure, not retried."""
    data = bytes(range(256)) * 4
    uri = "data:image/png;base64," + base64.encodebytes(data).decode()
    assert "\n" in uri.rstrip()
    async with Transport() as transport:
        saver = await _saver(tmp_path, transport)
        [saved] = await saver.save_all("job", [OutputRef("img", uri)])
    assert Path(saved.path).read_bytes() == data and Path(saved.path).name == "job.png"


async def test_an_output_over_the_memory_threshold_streams_to_disk_intact(tmp_path: Path) -> None:
    data = bytes(range(256)) * (SPILL // 256 + 4096)
    async with Transport() as transport:
        saver = await _saver(tmp_path, transport)
        [saved] = await saver.save_all("job", [OutputRef("big", _data_uri(data))])
    assert Path(saved.path).read_bytes() == data and saved.sha256 == hashlib.sha256(data).hexdigest()
    assert not list((tmp_path / "out").rglob("*.part"))


async def test_a_download_spilled_to_disk_and_cut_by_a_stop_leaves_no_part_file(tmp_path: Path) -> None:
    """An output over the memory threshold streams to a hidden part file. A stop (a cancel) in the
    middle used to skip its removal: the cleanup awaited the file's close, which the cancel cut
    in turn, and the part file stayed in --out for good."""
    done = anyio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        await resp.prepare(request)
        await resp.write(b"\x00" * (SPILL + 256 * 1024))
        await done.wait()  # and then nothing more, until the test is over
        return resp

    app = web.Application()
    app.router.add_get("/big.png", stalls)
    async with served(app) as base, Transport() as transport:
        saver = await _saver(tmp_path, transport)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(saver.save_all, "job", [OutputRef("big", f"{base}/big.png")])
                while not list((tmp_path / "out").glob(".job+0.*.part")):
                    await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
        done.set()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


async def test_outputs_over_the_size_cap_are_refused(tmp_path: Path, registry: WorkflowRegistry) -> None:
    from batcher.emulator import EmulatorConfig, run_emulator

    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"output.max_bytes": 10})
        result = await run(settings, [manifest], registry, clock)
    assert result.stats.outcomes == {"download_failed": 1}
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert "cap" in failed["error"] and failed["retryable"] is False


class Hostile:
    """A provider that answers polls with whatever the test says (a real aiohttp server), and
    counts the POSTs and polls it had."""

    def __init__(
        self, answers: list[tuple[int, str, str]], refuse: tuple[int, str, str] | None = None
    ) -> None:
        self.answers = answers
        self.refuse = refuse  # the answer to every POST, instead of accepting it
        self.posts = 0
        self.polls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/workflows/{wf}", self.submit)
        app.router.add_get("/workflows/request/{rid}", self.poll)
        app.router.add_get("/out/{name}", self.output)
        return app

    async def submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.refuse is not None:
            status, ctype, body = self.refuse
            return web.Response(status=status, content_type=ctype, text=body)
        rid = hashlib.md5(await request.read()).hexdigest()
        return web.json_response(
            {
                "request_id": rid,
                "poll_url": f"{request.url.origin()}/workflows/request/{rid}",
                "status": "QUEUED",
            }
        )

    async def poll(self, request: web.Request) -> web.Response:
        status, ctype, body = self.answers[min(self.polls, len(self.answers) - 1)]
        self.polls += 1
        return web.Response(
            status=status, content_type=ctype, text=body.replace("ORIGIN", str(request.url.origin()))
        )

    async def output(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG fake", content_type="image/png")


async def _one_job(
    hostile: Hostile, tmp_path: Path, registry: WorkflowRegistry, **overrides: Any
) -> RunResult:
    """Run one sketch job against ``hostile``, served on a real socket, to the run's end."""
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        settings = settings_for(base, tmp_path, **overrides)
        return await run(settings, [manifest], registry, ScaledClock(SPEED))


async def test_a_poll_answer_that_is_not_json_or_of_the_wrong_shape_does_not_crash_the_run(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    completed = json.dumps(
        {
            "status": "COMPLETED",
            "output": json.dumps(
                [
                    {"keyname": "../../../x", "value": {"data": "ORIGIN/out/a.png", "type": "image"}},
                    {"keyname": "local", "value": {"data": "file:///etc/passwd", "type": "image"}},
                ]
            ),
        }
    )
    hostile = Hostile(
        [
            (200, "text/html", "<html>not json</html>"),
            (200, "application/json", "[1, 2, 3]"),
            (200, "application/json", '{"no_status": true}'),
            (200, "application/json", '{"status": 42}'),
            (502, "text/html", "<html>bad gateway</html>"),
            (200, "application/json", '{"status": "SOMETHING_NEW"}'),
            (200, "application/json", completed),
        ]
    )
    result = await _one_job(hostile, tmp_path, registry, **{"retry.max_attempts": 10})
    lines = ledger_lines(tmp_path / "ledger.jsonl")
    assert [r["remote_status"] for r in lines if r["status"] == "polled"] == ["SOMETHING_NEW"]
    [final] = [r for r in lines if r["status"] in ("completed", "download_failed", "failed")]
    # The file: URL is refused; the run ends with a clear, non-retryable download failure.
    assert final["status"] == "download_failed" and "refusing output URL" in final["error"]
    assert result.exit_code is ExitCode.FAILED
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("how", ["request", "stream"])
async def test_a_compressed_answer_cannot_slip_past_the_size_cap(how: str) -> None:
    """Content-Length counts the compressed bytes: a 1 KB gzip body that inflates to 1 MB must
    still hit a 64 KB cap (the transport inflates answers as it reads them), for an API answer
    and for an output download (whose small answers are read in one go)."""
    bomb = gzip.compress(b"{" + b" " * (1024 * 1024) + b"}")

    async def answer(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    app = web.Application()
    app.router.add_get("/status", answer)
    async with served(app) as base, Transport() as transport:
        url = f"{base}/status"
        assert len(bomb) < 64 * 1024
        got: list[bytes] = []

        async def sink(chunk: bytes) -> None:
            got.append(chunk)

        with pytest.raises(UnsafeOutputError):
            if how == "request":
                await transport.request("GET", url, max_bytes=64 * 1024)
            else:
                await transport.stream(url, sink, max_bytes=64 * 1024, chunk_size=64 * 1024)
        assert sum(map(len, got)) <= 64 * 1024


KEY_AT_A_CUT = [  # the provider's text ends in the key, just across where batcher cuts it
    ("poll", 200, "application/json", json.dumps({"status": "FAILED", "error_message": "x" * 990 + API_KEY})),
    (
        "poll",
        200,
        "application/json",
        json.dumps({"status": "FAILED", "error": {"detail": "x" * 280 + API_KEY}}),
    ),
    ("submit", 400, "application/json", json.dumps({"error": "x" * 490 + API_KEY})),
    ("submit", 400, "text/plain", "x" * 190 + API_KEY),
    ("poll", 200, "application/json", json.dumps({"status": "x" * 50 + API_KEY})),
]


@pytest.mark.parametrize(
    "answer", KEY_AT_A_CUT, ids=["failed", "failed-object", "400-json", "400-text", "status"]
)
async def test_a_key_echoed_by_the_provider_is_redacted_before_any_cut(
    tmp_path: Path, registry: WorkflowRegistry, answer: tuple[str, int, str, str]
) -> None:
    """Provider text is cut to a length for the ledger; a cut through the key left its first
    characters there (and in stderr, status and the report), where no redaction matched them."""
    call, status, ctype, body = answer
    failed = (200, "application/json", '{"status": "FAILED"}')
    if call == "submit":
        hostile = Hostile([failed], refuse=(status, ctype, body))
    else:
        hostile = Hostile([(status, ctype, body), failed])
    await _one_job(hostile, tmp_path, registry)
    text = (tmp_path / "ledger.jsonl").read_text()
    assert "xxxxxxxx" in text.lower()  # the provider's text is there
    assert API_KEY[:6] not in text and API_KEY[:6].upper() not in text


async def test_a_key_echoed_in_a_broken_completed_output_is_redacted_before_the_cut(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A COMPLETED whose output is not JSON fails its job, the error quoting the output's
    beginning; a key the provider echoed there, across where that quote is cut, left its first
    characters in the ledger."""
    broken = json.dumps({"status": "COMPLETED", "output": '[{"keyname": "' + "x" * 40 + API_KEY})
    hostile = Hostile([(200, "application/json", broken)])
    await _one_job(hostile, tmp_path, registry, **{"retry.max_attempts": 2})
    text = (tmp_path / "ledger.jsonl").read_text()
    assert "not valid JSON" in text and "xxxxxxxx" in text  # the provider's text is there
    assert API_KEY[:6] not in text and API_KEY[:6].upper() not in text


async def test_outputs_past_the_cap_are_named_in_the_ledger_and_a_warning(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """They were dropped without a word (exit 0): paid for, and never fetchable afterwards."""
    urls = [f"ORIGIN/out/{i}.png" for i in range(MAX_OUTPUTS + 2)]
    hostile = Hostile([(200, "application/json", json.dumps({"status": "COMPLETED", "output": urls}))])
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        await run(settings_for(base, tmp_path), [manifest], registry, ScaledClock(SPEED))
    [generated] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "generated"]
    assert generated["outputs_cut_at"] == MAX_OUTPUTS == len(generated["outputs"])
    assert len(list((tmp_path / "out").iterdir())) == MAX_OUTPUTS
    assert f"more than {MAX_OUTPUTS} outputs; only the first {MAX_OUTPUTS} are saved" in caplog.text


_DEEP = 100_000  # far past the JSON parser's recursion limit
_NESTED = 500  # within it, but deep enough to exhaust the stack of a recursive reader


def _nested(depth: int) -> str:
    return "[" * depth + '"why"' + "]" * depth


DEEP_ANSWERS = [  # (call, status, body, the job's last status)
    ("poll", 200, "[" * _DEEP, "failed"),
    ("poll", 200, '{"status": "FAILED", "error": ' + _nested(_NESTED) + "}", "failed"),
    # Not an output to save either (it was a .txt of 100,000 "["): polled again, then failed.
    ("poll", 200, json.dumps({"status": "COMPLETED", "output": "[" * _DEEP}), "failed"),
    ("submit", 400, '{"error": ' + _nested(_NESTED) + "}", "failed"),
    ("submit", 400, "[" * _DEEP, "failed"),
]


@pytest.mark.parametrize(
    "answer", DEEP_ANSWERS, ids=["poll", "failed-reason", "output", "400-reason", "400-body"]
)
async def test_an_answer_nested_past_the_stack_is_not_json_not_a_crash(
    tmp_path: Path, registry: WorkflowRegistry, answer: tuple[str, int, str, str]
) -> None:
    """A few KB of ``[[[[`` raised RecursionError (not ValueError) from the JSON parser, and a
    reason nested a few hundred levels exhausted the stack of the reader that flattens it: the
    worker died and the whole run ended in a traceback. Such an answer is no JSON we can use."""
    call, status, body, final = answer
    failed = (200, "application/json", '{"status": "FAILED"}')
    if call == "submit":
        hostile = Hostile([failed], refuse=(status, "application/json", body))
    else:
        hostile = Hostile([(status, "application/json", body)])
    result = await _one_job(hostile, tmp_path, registry)
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": final}
    assert result.exit_code is (ExitCode.OK if final == "completed" else ExitCode.FAILED)


@pytest.mark.parametrize(
    "message",
    ["Insufficient credits. Balance $0.05. Required $0.10.", "Insufficient credits. Balance $.. required $."],
    ids=["full-stops", "no-digits"],
)
async def test_a_406_whose_amounts_end_a_sentence_stops_the_run_not_crashes_it(
    tmp_path: Path, registry: WorkflowRegistry, message: str
) -> None:
    """The balance and the amount required were read as ``[\\d.]+``, so "Balance $0.05." gave
    "0.05." and float() raised ValueError: the request worker died and the run ended in a
    traceback instead of stopping its submissions with exit 3 and the provider's message."""
    hostile = Hostile([], refuse=(406, "application/json", json.dumps({"error": message})))
    result = await _one_job(hostile, tmp_path, registry)
    assert result.exit_code is ExitCode.PROVIDER
    assert message in (result.stats.stop_reason or "")
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "deferred"}


@pytest.mark.parametrize(
    "message", ["Team spend limit reached", "Content-Type must be application/json"], ids=["spend", "ctype"]
)
async def test_a_406_that_is_not_about_credits_does_not_say_insufficient_credits(
    tmp_path: Path, registry: WorkflowRegistry, message: str
) -> None:
    """The provider answers 406 for a team spend limit or a wrong Content-Type too: the run
    stopped with "insufficient credits (...)", and an operator tops up an account that had
    money. The reason now says the provider refuses new jobs, with its own words."""
    hostile = Hostile([], refuse=(406, "application/json", json.dumps({"error": message})))
    result = await _one_job(hostile, tmp_path, registry)
    assert result.exit_code is ExitCode.PROVIDER
    assert result.stats.stop_reason == f"the provider refuses new jobs (HTTP 406 on submit: {message})"


async def test_a_406_on_a_poll_stops_submitting_and_keeps_polling_what_is_in_flight(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 406 "insufficient credits" on a poll was a poll error like a 5xx: the run went on
    POSTing the rest of the manifest (exit 0 here, every job sent). The contract's 406 row holds
    for both calls: submissions stop (exit 3, the provider's words as the reason), and the jobs
    in flight are polled on until they complete."""
    credits = json.dumps({"error": "Insufficient credits. Balance $0.0100, required $0.1006"})
    done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
    hostile = Hostile([(406, "application/json", credits)] * 2 + [(200, "application/json", done)])
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(6))
        settings = settings_for(base, tmp_path, concurrency=2)
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
    assert result.exit_code is ExitCode.PROVIDER
    assert result.stats.stop_reason == (
        "insufficient credits (HTTP 406 on poll: Insufficient credits. Balance $0.0100, required $0.1006)"
    )
    assert result.stats.submitted == 2 and result.stats.left == 4
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed", "sketch-0001": "completed"}


@pytest.mark.parametrize(
    ("status", "then"),
    [(429, "completed"), (404, "completed"), (401, "submitted"), (403, "submitted"), (500, "completed")],
    ids=["rate-limited", "not-found-once", "key-refused", "key-forbidden", "server-error"],
)
async def test_a_poll_refused_for_the_account_is_no_failed_job_whatever_its_body_says(
    tmp_path: Path, registry: WorkflowRegistry, status: int, then: str
) -> None:
    """A non-200 poll answer whose body says ``"status": "FAILED"`` fails its job (FAILED may come
    as a 422), except a 401, 403, 404 or 429: a gateway's "rate limited" or "unauthorized" in that
    shape is about the account or the moment, not the job; nor a 5xx, the server's trouble. A 429
    is waited out and a first 404 or 500 tried again (the job completes); a 401 or 403 stops the
    run with the job still in flight (the next run re-attaches it). None is recorded ``failed``, a
    paid job that only --retry-failed (paying again) would bring back."""
    body = json.dumps({"status": "FAILED", "error": "request refused"})
    done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
    hostile = Hostile([(status, "application/json", body), (200, "application/json", done)])
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        await run(settings_for(base, tmp_path), [manifest], registry, ScaledClock(SPEED))
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": then}


@pytest.mark.parametrize("status", [422, 499])
async def test_a_4xx_poll_answer_saying_failed_in_lower_case_fails_its_job_at_once(
    tmp_path: Path, registry: WorkflowRegistry, status: int
) -> None:
    """A 422 whose body says ``"status": "failed"`` is the provider's FAILED, whatever its case:
    read as a bad answer, the job was polled again ``retry.max_attempts`` times and then failed
    as retryable, without the provider's reason, so --retry-failed would pay for it again. So is
    any other 4xx up to 499 that says so (not 401, 403, 404 or 429: see the test above)."""
    body = json.dumps({"status": "failed", "error": "nsfw content detected"})
    hostile = Hostile([(status, "application/json", body)])
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        await run(settings_for(base, tmp_path), [manifest], registry, ScaledClock(SPEED))
    failed = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert hostile.polls == 1 and len(failed) == 1
    assert "nsfw content detected" in failed[0]["error"] and failed[0]["retryable"] is False


class PollsAfterPosts(Hostile):
    """Holds every poll's answer until ``until`` POSTs have been answered: the first poll can
    otherwise come (on a busy machine) before the last of them was sent."""

    def __init__(self, answers: list[tuple[int, str, str]], until: int) -> None:
        super().__init__(answers)
        self.until, self._all_sent = until, asyncio.Event()

    async def submit(self, request: web.Request) -> web.Response:
        answer = await super().submit(request)
        if self.posts >= self.until:
            self._all_sent.set()
        return answer

    async def poll(self, request: web.Request) -> web.Response:
        await self._all_sent.wait()
        return await super().poll(request)


async def test_a_key_refused_on_a_poll_leaves_its_job_counted_in_flight(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 401 on a poll stops the run at once; the polled job is submitted and paid for, and the
    next run re-attaches it, but it was dropped from the count: "2 still in flight" for three
    jobs submitted and none finished. All three are counted now. (The provider answers polls
    only once all three POSTs are in: about one run in twenty under load, the 401 came before
    the third POST was sent, and that job was deferred.)"""
    hostile = PollsAfterPosts(
        [(401, "application/json", '{"error": "Unauthorized: invalid API key"}')], until=3
    )
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(6))
        result = await run(
            settings_for(base, tmp_path, concurrency=3), [manifest], registry, ScaledClock(SPEED)
        )
    assert result.exit_code is ExitCode.PROVIDER and hostile.polls >= 1
    assert set(last_status(tmp_path / "ledger.jsonl").values()) == {"submitted"}
    assert result.stats.submitted == 3 and result.stats.in_flight == 3 and result.stats.left == 3
    assert "3 still in flight (re-attached next run), 3 not started" in render_summary(result)


class Redirects(Hostile):
    """Answers every POST with a redirect (``status``) to another API host, a token in its query."""

    def __init__(self, status: int) -> None:
        super().__init__([])
        self.status = status

    async def submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        where = f"https://api.example.com{request.path}?token=secret-token"
        return web.Response(status=self.status, headers={"Location": where})


@pytest.mark.parametrize("status", [301, 308, 399])
async def test_a_submit_answered_with_a_redirect_stops_submitting_and_names_where_it_points(
    tmp_path: Path, registry: WorkflowRegistry, status: int
) -> None:
    """A POST is never redirected with the key on it, and a redirect starts nothing. It was an
    "unexpected status": every job failed for good, one POST a row. Now the first stops
    submissions (exit 3), the jobs are left for the next run, and the reason says where the
    provider pointed (without the query, which may hold a token)."""
    hostile = Redirects(status)
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
        settings = settings_for(base, tmp_path, concurrency=1)
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
    assert result.exit_code is ExitCode.PROVIDER and hostile.posts == 1
    assert result.stats.outcomes == {"deferred": 1} and result.stats.left == 2
    reason = result.stats.stop_reason or ""
    assert f"HTTP {status} on submit" in reason and "api.base_url" in reason
    assert "redirected to https://api.example.com/workflows/66cec9a38aeef98f887211f1-v1)" in reason
    assert "secret-token" not in reason


class AcceptsWith(Hostile):
    """Accepts every POST with another 2xx than 200 (``status``), poll_url and all."""

    def __init__(self, status: int) -> None:
        super().__init__(
            [(200, "application/json", json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"}))]
        )
        self.status = status

    async def submit(self, request: web.Request) -> web.Response:
        answer = await super().submit(request)
        answer.set_status(self.status)
        return answer


@pytest.mark.parametrize("status", [201, 202, 299])
async def test_a_submit_accepted_with_another_2xx_is_a_submitted_job(
    tmp_path: Path, registry: WorkflowRegistry, status: int
) -> None:
    """Only 200 was read as an acceptance: a 201 or 202 carrying a poll_url (what a queueing API
    may answer) was an 'unexpected status', taken as a definite no: the job, started and
    billed, was failed for good, its poll_url never recorded, its price taken back off the
    run's spend, and --retry-failed would have paid for it again."""
    hostile = AcceptsWith(status)
    result = await _one_job(hostile, tmp_path, registry, **{"limits.budget_usd": 1.0})
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert hostile.posts == 1 and result.stats.spend_usd > 0
    assert result.exit_code is ExitCode.OK


class PollUrlWithUser(Hostile):
    """Hands out a poll_url on the API's own origin with ``user:pass@`` in it."""

    async def submit(self, request: web.Request) -> web.Response:
        rid = hashlib.md5(await request.read()).hexdigest()
        url = request.url.origin()
        poll_url = f"http://someone:hunter2@{url.host}:{url.port}/workflows/request/{rid}"
        return web.json_response({"request_id": rid, "poll_url": poll_url, "status": "QUEUED"})


async def test_a_poll_url_holding_a_password_is_refused_not_a_crash(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The host is the API's, so the key was sent, and aiohttp refused to send both our header
    and the URL's user:pass (ValueError): the worker died and the run ended in a traceback."""
    hostile = PollUrlWithUser([(200, "application/json", '{"status": "COMPLETED", "output": ""}')])
    result = await _one_job(hostile, tmp_path, registry)
    assert hostile.polls == 0
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert "holds a user name or password" in failed["error"] and "hunter2" not in failed["error"]
    assert result.exit_code is ExitCode.FAILED


@pytest.mark.parametrize("host", ["a..b.example", "x" * 64 + ".example"], ids=["empty-label", "long-label"])
async def test_an_output_host_that_cannot_be_looked_up_is_a_failed_download_not_a_crash(
    tmp_path: Path, registry: WorkflowRegistry, host: str
) -> None:
    """getaddrinfo raises UnicodeError (not OSError) for a host name with an empty label or one
    over 63 characters; it left the transport unmapped, killed the download worker and ended
    the run in a traceback, with the job paid for and its output never recorded as failed."""
    answer = json.dumps({"status": "COMPLETED", "output": [f"https://{host}/x.png"]})
    hostile = Hostile([(200, "application/json", answer)])
    result = await _one_job(hostile, tmp_path, registry, **{"retry.max_attempts": 2})
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert "cannot be looked up" in failed["error"]
    assert result.exit_code is ExitCode.FAILED


async def test_a_poll_that_404s_once_does_not_lose_a_paid_job(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A 404 on a poll was taken at once for an expired record (records are kept for days): a
    job submitted a second earlier, whose poll_url 404'd once (a replica that had not seen it
    yet), was 'expired', its output never fetched, and only --retry-failed (paying again) could
    run it. A 404 is now retried like other poll errors before the record counts as gone."""
    done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
    hostile = Hostile(
        [(404, "application/json", '{"error": "Request not found"}'), (200, "application/json", done)]
    )
    result = await _one_job(hostile, tmp_path, registry)
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert result.exit_code is ExitCode.OK


NO_OUTPUT = {  # COMPLETED answers that name nothing to save
    "empty": {"status": "COMPLETED", "output": ""},
    "missing": {"status": "COMPLETED"},
    "flat-empty": {"status": "COMPLETED", "output": json.dumps({"image_output": ""})},
    "entry-empty": {
        "status": "COMPLETED",
        "output": json.dumps([{"keyname": "image", "value": {"data": "", "type": "image"}}]),
    },
}


@pytest.mark.parametrize("answer", list(NO_OUTPUT))
async def test_a_completed_answer_with_no_output_does_not_complete_the_job(
    tmp_path: Path, registry: WorkflowRegistry, answer: str
) -> None:
    """A COMPLETED answer naming no output was recorded 'completed' with no file, and the run
    exited 0 ("every job completed"): paid for, nothing saved, and nothing left to say so but a
    log line. Now it is polled again, a bounded number of times, then failed, retryable (the
    next run polls it again; it is never sent again)."""
    hostile = Hostile([(200, "application/json", json.dumps(NO_OUTPUT[answer]))])
    result = await _one_job(hostile, tmp_path, registry, **{"retry.max_attempts": 3})
    assert hostile.polls == 3
    lines = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r.get("job_id")]
    assert [r["status"] for r in lines] == ["submitting", "submitted", "failed"]
    assert "COMPLETED with no output" in lines[-1]["error"] and lines[-1]["retryable"] is True
    assert result.exit_code is ExitCode.FAILED


async def test_an_output_named_after_an_empty_completed_answer_is_saved(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
    hostile = Hostile(
        [(200, "application/json", json.dumps(NO_OUTPUT["empty"])), (200, "application/json", done)]
    )
    result = await _one_job(hostile, tmp_path, registry)
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert (tmp_path / "out" / "sketch-0000.png").read_bytes() == b"\x89PNG fake"
    assert result.exit_code is ExitCode.OK


class Redirecting(Hostile):
    """Its output answers 302 to ``target`` (another server's URL, or another scheme)."""

    def __init__(self, target: str) -> None:
        done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
        super().__init__([(200, "application/json", done)])
        self.target = target

    async def output(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(self.target)


class Storage(Hostile):
    """Serves outputs and notes the credentials each request carried."""

    credentials: list[str]

    async def output(self, request: web.Request) -> web.Response:
        self.credentials = [*getattr(self, "credentials", []), request.headers.get("x-api-key", "")]
        return await super().output(request)


@pytest.mark.parametrize(
    ("target", "final"), [("CDN/out/a.png", "completed"), ("file:///etc/passwd", "download_failed")]
)
async def test_an_output_behind_a_redirect_is_fetched_without_credentials(
    tmp_path: Path, registry: WorkflowRegistry, target: str, final: str
) -> None:
    """Downloads did not follow redirects at all: an output a storage host or CDN answered with
    a 302 failed 'HTTP 302' on every try of every run, paid for and never saved. Now up to 5 are
    followed by hand, to http(s) only, with no credentials (downloads never carry them)."""
    cdn = Storage([])
    async with served(cdn.app()) as cdn_base:
        hostile = Redirecting(target.replace("CDN", cdn_base))
        await _one_job(hostile, tmp_path, registry, **{"retry.max_attempts": 2})
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": final}
    if final == "completed":
        assert (tmp_path / "out" / "sketch-0000.png").read_bytes() == b"\x89PNG fake"
        assert cdn.credentials == [""]
    else:
        [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == final]
        assert "redirects to a 'file:' URL" in failed["error"] and failed["retryable"] is False


#: A trickle: one byte this often (real seconds), far inside the read timeout (20 s in tests).
TRICKLE_EVERY = 0.05
#: Bytes of padding before a trickled answer is complete: 20 s of trickle, so that a client
#: without an overall deadline gets the whole answer (and the tests below fail on it).
TRICKLE_PAD = 400


class Trickling(Hostile):
    """Sends the first answer of one kind (``what``: submit, poll or output), or every one with
    ``always``, a byte every TRICKLE_EVERY seconds: never silent long enough for a read timeout.
    ``cut`` notes, for each trickled answer, whether the client hung up before it was complete."""

    def __init__(self, what: str, *, always: bool = False, body: bytes = b"") -> None:
        done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
        super().__init__([(200, "application/json", done)])
        self.what, self.always, self.body = what, always, body
        self.seen: dict[str, int] = {}
        self.cut: list[bool] = []

    def _trickles(self, what: str) -> bool:
        self.seen[what] = self.seen.get(what, 0) + 1
        return what == self.what and (self.always or self.seen[what] == 1)

    async def _trickle(self, request: web.Request, answer: web.Response, pad: int) -> web.StreamResponse:
        """``answer``'s body after ``pad`` spaces (JSON allows them), a byte at a time."""
        assert isinstance(answer.body, bytes)
        data = b" " * pad + answer.body
        resp = web.StreamResponse(status=answer.status, headers={"Content-Type": answer.content_type})
        resp.content_length = len(data)
        await resp.prepare(request)
        try:
            for i in range(len(data)):
                await resp.write(data[i : i + 1])
                await anyio.sleep(TRICKLE_EVERY)
            await resp.write_eof()
        except anyio.get_cancelled_exc_class():
            self.cut.append(True)
            raise
        except ConnectionError:  # the client hung up
            self.cut.append(True)
            return resp
        self.cut.append(False)
        return resp

    async def submit(self, request: web.Request) -> web.StreamResponse:
        answer = await super().submit(request)
        return await self._trickle(request, answer, TRICKLE_PAD) if self._trickles("submit") else answer

    async def poll(self, request: web.Request) -> web.StreamResponse:
        answer = await super().poll(request)
        return await self._trickle(request, answer, TRICKLE_PAD) if self._trickles("poll") else answer

    async def output(self, request: web.Request) -> web.StreamResponse:
        if self._trickles("output"):
            return await self._trickle(request, web.Response(body=self.body, content_type="image/png"), 0)
        return web.Response(body=self.body, content_type="image/png")


@pytest.mark.parametrize("what", ["submit", "poll"])
async def test_an_api_answer_that_trickles_is_cut_at_the_request_deadline_and_retried(
    tmp_path: Path, registry: WorkflowRegistry, what: str
) -> None:
    """A host answering a byte every 50 ms never trips the read timeout (silence), and the session
    had no overall one: the POST or poll held its worker (and the job its slot) for as long as the
    host liked. Now ``api.request_timeout`` cuts it; it is a timeout like any other: a poll is
    retried, and a POST's outcome is unknown (recorded and counted, then sent again)."""
    hostile = Trickling(what, body=b"\x89PNG fake")
    result = await _one_job(hostile, tmp_path, registry, **{"api.request_timeout": 1.0})
    assert hostile.cut == [True]  # the client hung up on the trickle, before its answer ended
    lines = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r.get("job_id")]
    statuses = [r["status"] for r in lines]
    if what == "submit":
        assert statuses == UNKNOWN_THEN_SENT_AGAIN
        assert "within 1 s" in lines[1]["error"] and lines[1]["retryable"] is True
        assert result.stats.unknown_outcomes == 1 and hostile.posts == 2  # sent twice, not silently
    else:
        assert statuses == ["submitting", "submitted", "generated", "completed"]
        assert hostile.posts == 1
    assert (tmp_path / "out" / "sketch-0000.png").read_bytes() == b"\x89PNG fake"
    assert result.exit_code is ExitCode.OK


async def test_a_request_given_its_own_deadline_is_cut_at_it_not_at_the_transports() -> None:
    """``Transport.request(timeout=...)`` (what ``fetch_bytes`` gives an occasional fetch, such
    as the emulator fetching an input by URL) cuts a trickling answer at that deadline; ignored,
    the fetch waited for the transport's two-minute ``request_timeout`` instead."""
    hostile = Trickling("poll")
    async with served(hostile.app()) as base, Transport(request_timeout=120.0) as transport:
        with pytest.raises(RequestTimeout, match=r"within 0\.5 s"):
            await transport.request("GET", f"{base}/workflows/request/r", timeout=0.5)
    assert hostile.cut == [True]


class Unanswered(Hostile):
    """Reads the first POST whole, then does not answer it as ``how`` says: ``silent`` (the
    connection stays open and quiet until the test is over), ``reset`` (a TCP reset), ``cut``
    (half of a declared body, then the connection closes) or ``hangup`` (closed, no answer)."""

    def __init__(self, how: str) -> None:
        done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
        super().__init__([(200, "application/json", done)])
        self.how = how
        self.over = anyio.Event()

    async def submit(self, request: web.Request) -> web.StreamResponse:
        answer = await super().submit(request)  # reads the POST: the provider has it (counted)
        if self.posts > 1:
            return answer
        assert request.transport is not None and isinstance(answer.body, bytes)
        if self.how == "cut":
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            resp.content_length = len(answer.body)
            await resp.prepare(request)
            await resp.write(answer.body[: len(answer.body) // 2])
            request.transport.close()
        elif self.how == "reset":
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            request.transport.close()
        elif self.how == "hangup":
            request.transport.close()
        await self.over.wait()
        return answer


@pytest.mark.parametrize("how", ["silent", "reset", "cut", "hangup"])
async def test_a_post_the_host_read_and_never_answered_is_an_unknown_outcome_not_a_post_never_sent(
    tmp_path: Path, registry: WorkflowRegistry, how: str
) -> None:
    """The host read the POST (and may have started the job and billed it), then went silent
    past the read timeout, reset the connection, cut its answer short or hung up: the outcome
    is unknown, recorded ``submit_unknown`` and counted, and the job sent again. Classed as a
    connection that never reached the host, the job was sent again as if for the first time,
    its first POST's cost given back to the budget and never counted as a possible double
    charge."""
    hostile = Unanswered(how)
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        settings = settings_for(base, tmp_path, **{"api.read_timeout": 0.3})
        result = await run(settings, [manifest], registry, ScaledClock(SPEED))
        hostile.over.set()
    lines = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r.get("job_id")]
    assert [r["status"] for r in lines] == UNKNOWN_THEN_SENT_AGAIN
    assert lines[1]["retryable"] is True
    assert result.stats.unknown_outcomes == 1 and hostile.posts == 2
    assert result.exit_code is ExitCode.OK


@pytest.mark.parametrize("size", [400, 100_000], ids=["one-read", "streamed"])
async def test_an_output_that_trickles_is_cut_and_the_job_ends_as_a_retryable_download_failure(
    tmp_path: Path, registry: WorkflowRegistry, size: int
) -> None:
    """A 100 KB output sent a byte every 50 ms: every byte received pushes the deadline back by
    1/min_rate of a second (a microsecond), so it is cut after about ``output.timeout``, not
    kept alive by its trickle; each try is cut, and the job ends ``download_failed`` (retryable:
    the next run fetches it again), the error saying how slow the host was. A small output (the
    usual one: a declared length under one chunk, read in one go, so no byte extends the
    deadline) is cut at ``output.timeout`` too: its deadline starts with the request, not with
    the first byte of its body."""
    hostile = Trickling("output", always=True, body=bytes(size))
    result = await _one_job(hostile, tmp_path, registry, **{"output.timeout": 1.0, "retry.max_attempts": 2})
    assert hostile.cut == [True, True]
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert "too slow" in failed["error"] and failed["retryable"] is True
    assert result.exit_code is ExitCode.FAILED
    assert not list((tmp_path / "out").glob("sketch-0000*"))


class Steady(Hostile):
    """Serves a big output at a steady ``rate`` bytes a second, in 16 KiB pieces."""

    def __init__(self, data: bytes, rate: float) -> None:
        done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
        super().__init__([(200, "application/json", done)])
        self.data, self.rate = data, rate

    async def output(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = len(self.data)
        await resp.prepare(request)
        piece = 16 * 1024
        for i in range(0, len(self.data), piece):
            await resp.write(self.data[i : i + piece])
            await anyio.sleep(piece / self.rate)
        await resp.write_eof()
        return resp


async def test_a_big_output_that_keeps_flowing_is_not_cut_by_the_download_deadline(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``output.timeout`` was a flat limit on a whole download: an output bigger than the
    timeout times the link's speed was cut on every try of every run, paid for and never saved.
    A download now earns a second for every ``output.min_rate`` bytes received: this one (1.5 MiB
    at 640 KiB/s, about 2.4 s, against a 0.5 s timeout and a 256 KiB/s minimum) completes."""
    data = hashlib.sha256(b"big").digest() * (1536 * 1024 // 32)
    hostile = Steady(data, rate=640 * 1024)
    result = await _one_job(
        hostile,
        tmp_path,
        registry,
        **{"output.timeout": 0.5, "output.min_rate": 256 * 1024, "retry.max_attempts": 2},
    )
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "completed"}
    assert (tmp_path / "out" / "sketch-0000.png").read_bytes() == data
    assert result.exit_code is ExitCode.OK


class Stalling(Hostile):
    """Sends an output's head and its first 16 KiB, then nothing more until ``over`` is set (the
    connection stays open and quiet); ``stalled`` counts the downloads it stalled."""

    def __init__(self, data: bytes) -> None:
        done = json.dumps({"status": "COMPLETED", "output": "ORIGIN/out/a.png"})
        super().__init__([(200, "application/json", done)])
        self.data = data
        self.over = anyio.Event()
        self.stalled = 0

    async def output(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        resp.content_length = len(self.data)
        await resp.prepare(request)
        await resp.write(self.data[: 16 * 1024])
        self.stalled += 1
        await self.over.wait()
        return resp


async def test_an_output_that_stops_midway_is_cut_for_its_silence_not_at_its_deadline(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A host that sends the first 16 KiB of a 1 MiB output and then nothing, the connection
    open: the download's deadline is a minute away, but ``api.read_timeout`` (0.3 s) of silence
    cuts it, each try, and the job ends ``download_failed`` (retryable), the error saying the
    host went silent. Without the silence rule, each try would hold a download worker until its
    deadline."""
    hostile = Stalling(bytes(1024 * 1024))
    async with served(hostile.app()) as base:
        manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
        overrides = {"output.timeout": 60.0, "api.read_timeout": 0.3, "retry.max_attempts": 2}
        with anyio.fail_after(30):
            result = await run(
                settings_for(base, tmp_path, **overrides), [manifest], registry, ScaledClock(SPEED)
            )
        hostile.over.set()
    assert hostile.stalled == 2
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "download_failed"]
    assert "silent for 0.3 s" in failed["error"] and failed["retryable"] is True
    assert result.exit_code is ExitCode.FAILED
    assert not list((tmp_path / "out").glob("sketch-0000*"))


@pytest.mark.parametrize("how", ["request", "stream"])
async def test_waiting_for_a_connection_does_not_count_against_the_deadline(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One connection, two requests: the second waits for the first (held by the server) longer
    than its own 0.3 s deadline, and still succeeds: the deadline starts when a request has its
    connection. (aiohttp's ``total`` and ``connect`` timeouts count that wait.) The wait is made
    long by moving the event loop's clock 1 s on while the second request waits, not by sleeping:
    a deadline or timeout started before that move is overdue at once."""
    order: list[str] = []
    arrived = anyio.Event()
    release = anyio.Event()

    async def slow(request: web.Request) -> web.Response:
        order.append("slow in")
        arrived.set()
        await release.wait()
        order.append("slow out")
        return web.Response(body=b"slow")

    async def fast(request: web.Request) -> web.Response:
        order.append("fast in")
        return web.Response(body=b"fast")

    app = web.Application()
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    got: dict[str, bytes] = {}
    async with served(app) as base, Transport(max_connections=1, connect_timeout=0.3) as transport:

        async def fetch(path: str, deadline: float) -> None:
            if how == "request":
                got[path] = (await transport.request("GET", base + path, timeout=deadline)).body
            else:
                chunks: list[bytes] = []

                async def sink(chunk: bytes) -> None:
                    chunks.append(chunk)

                await transport.stream(base + path, sink, max_bytes=100, timeout=deadline)
                got[path] = b"".join(chunks)

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch, "/slow", 10.0)
            await arrived.wait()  # the one connection is taken
            tg.start_soon(fetch, "/fast", 0.3)
            await anyio.wait_all_tasks_blocked()  # /fast waits for it
            LoopClock(monkeypatch).advance(1.0)
            release.set()
    assert got == {"/slow": b"slow", "/fast": b"fast"}
    assert order == ["slow in", "slow out", "fast in"]  # it did wait for the connection


async def test_a_download_redirected_to_another_origin_does_not_carry_its_headers_there() -> None:
    """``Transport.stream`` follows redirects by hand so that headers given for the first origin
    (a credential, were a caller to pass one) reach no other: a CDN's redirect to a host of its
    choosing gets none of them. A redirect within the origin keeps them."""
    seen: dict[str, str | None] = {}

    async def elsewhere_file(request: web.Request) -> web.Response:
        seen["other origin"] = request.headers.get("Authorization")
        return web.Response(body=b"png", content_type="image/png")

    async def own_file(request: web.Request) -> web.Response:
        seen["same origin"] = request.headers.get("Authorization")
        return web.Response(body=b"png", content_type="image/png")

    other_app = web.Application()
    other_app.router.add_get("/x.png", elsewhere_file)
    async with served(other_app) as other:

        async def away(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{other}/x.png")

        async def within(request: web.Request) -> web.Response:
            raise web.HTTPFound("/own.png")

        app = web.Application()
        app.router.add_get("/away.png", away)
        app.router.add_get("/within.png", within)
        app.router.add_get("/own.png", own_file)
        async with served(app) as base, Transport() as transport:
            for path in ("/away.png", "/within.png"):
                got = bytearray()

                async def sink(chunk: bytes, got: bytearray = got) -> None:
                    got.extend(chunk)

                done = await transport.stream(
                    base + path, sink, headers={"Authorization": "Bearer secret"}, max_bytes=1024
                )
                assert (done.status, bytes(got)) == (200, b"png")
    assert seen == {"other origin": None, "same origin": "Bearer secret"}


async def test_a_download_follows_five_redirects_of_every_kind_and_stops_at_a_loop() -> None:
    """A storage host may answer an output with any of the five redirects, and chain them: a
    chain of five (301, 302, 303, 307, 308; the third to another origin, whose next one is
    relative to it) is followed to the file. A host that redirects to itself gets six requests
    (the first and five redirects) and the download ends with that redirect's status, a failed
    download: not an internal error, and not a loop of requests."""
    hits: list[str] = []

    def hop(status: int, to: str) -> Any:
        async def answer(request: web.Request) -> web.Response:
            hits.append(request.path)
            return web.Response(status=status, headers={"Location": to})

        return answer

    async def file(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"png", content_type="image/png")

    other_app = web.Application()
    other_app.router.add_get("/r3", hop(307, "r4"))  # relative: resolved against this origin
    other_app.router.add_get("/r4", hop(308, "/file.png"))
    other_app.router.add_get("/file.png", file)
    async with served(other_app) as other:
        app = web.Application()
        app.router.add_get("/r0", hop(301, "/r1"))
        app.router.add_get("/r1", hop(302, "/r2"))
        app.router.add_get("/r2", hop(303, f"{other}/r3"))
        app.router.add_get("/loop", hop(302, "/loop"))
        async with served(app) as base, Transport() as transport:
            got = bytearray()

            async def sink(chunk: bytes) -> None:
                got.extend(chunk)

            done = await transport.stream(f"{base}/r0", sink, max_bytes=1024)
            assert (done.status, bytes(got)) == (200, b"png")
            assert hits == ["/r0", "/r1", "/r2", "/r3", "/r4", "/file.png"]
            hits.clear()
            looped = await transport.stream(f"{base}/loop", sink, max_bytes=1024)
    assert (looped.status, looped.size, bytes(got)) == (302, 0, b"png")
    assert hits == ["/loop"] * 6


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize("how", ["request", "stream"])
@pytest.mark.parametrize("extra", [0, 1], ids=["at-the-cap", "one-byte-over"])
async def test_an_answer_is_refused_one_byte_past_its_cap_whether_or_not_it_declares_its_length(
    how: str, declared: bool, extra: int
) -> None:
    """An API answer or an output of exactly ``max_bytes`` is read whole; one byte more is an
    UnsafeOutputError, whether the host declares its length (a Content-Length past the cap is
    refused before the body is read into memory) or sends it chunked (counted as it comes).
    An output of exactly the cap refused is a paid job with no file; one over it read whole is
    what the cap is there to prevent."""
    cap = 1000
    body = bytes(range(256)) * 4
    body = body[: cap + extra]

    async def answer(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if declared:
            resp.content_length = len(body)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/answer", answer)
    got = bytearray()

    async def sink(chunk: bytes) -> None:
        got.extend(chunk)

    async with served(app) as base, Transport() as transport:
        url = f"{base}/answer"
        if extra:
            with pytest.raises(UnsafeOutputError, match="1000"):
                if how == "request":
                    await transport.request("GET", url, max_bytes=cap)
                else:
                    await transport.stream(url, sink, max_bytes=cap)
            assert len(got) <= cap
        elif how == "request":
            assert (await transport.request("GET", url, max_bytes=cap)).body == body
        else:
            done = await transport.stream(url, sink, max_bytes=cap)
            assert (done.status, done.size, bytes(got)) == (200, cap, body)


@pytest.mark.parametrize("failure", ["over-the-cap", "over-the-cap-chunked", "cannot-connect"])
async def test_a_presigned_output_url_is_named_without_its_token_when_its_download_fails(
    failure: str,
) -> None:
    """A storage host's presigned URL carries its signature in the query: the message of a
    failed download (written to the ledger, shown by status and the report) names the URL
    without it, so the ledger does not hand out read access to the output."""
    token = "X-Amz-Signature=5ecret5ignature"

    async def big(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "image/png"})
        if failure == "over-the-cap":
            resp.content_length = 2000
        await resp.prepare(request)
        await resp.write(bytes(2000))
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/out/a.png", big)

    async def sink(chunk: bytes) -> None:
        pass

    async with served(app) as base, Transport() as transport:
        if failure == "cannot-connect":
            with socket.socket() as sock:  # a port that was free a moment ago, now closed
                sock.bind(("127.0.0.1", 0))
                base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        with pytest.raises((UnsafeOutputError, ConnectError)) as raised:
            await transport.stream(f"{base}/out/a.png?{token}", sink, max_bytes=1000)
    assert f"{base}/out/a.png" in str(raised.value) and "5ecret" not in str(raised.value)
