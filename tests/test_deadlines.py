"""The transport's deadlines and silences (:mod:`batcher.deadlines`), against a real server: each
request is watched while it runs and only then, whatever way it ends.

Time is the event loop's clock, moved on by the test (``support.LoopClock``): the host answers
when the test says, and nothing here waits on the wall clock."""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import anyio.lowlevel
import pytest
from aiohttp import web

from batcher.errors import ConnectError, RequestTimeout
from batcher.transport import Answer, Transport

from .support import LoopClock, served

pytestmark = pytest.mark.anyio


async def settle() -> None:
    """A few passes of the event loop: what a host just sent is read by the client."""
    for _ in range(10):
        await anyio.lowlevel.checkpoint()


class Host:
    """Answers ``/ok``; never answers ``/silent``; sends ``/stall``'s head and 10 of its 100 bytes,
    then nothing; redirects ``/hop`` to ``/pieces`` once told to; sends ``/pieces`` 10 bytes at a
    time, each when told to (:meth:`tick`), 60 in all (``?length=no``: without a Content-Length,
    sent chunked as a big or compressed answer is). What it holds ends when ``over`` is set;
    :meth:`seen` is set once a path (with its query) is asked for."""

    def __init__(self) -> None:
        self.over = anyio.Event()
        self._seen: dict[str, anyio.Event] = {}
        self._ticks, self._told = anyio.create_memory_object_stream[None](math.inf)

    def seen(self, path: str) -> anyio.Event:
        return self._seen.setdefault(path, anyio.Event())

    def close(self) -> None:
        self._ticks.close()
        self._told.close()

    def tick(self) -> None:
        """Let the host send its next piece (or its redirect)."""
        self._ticks.send_nowait(None)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/silent", self.silent)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/hop", self.hop)
        app.router.add_get("/pieces", self.pieces)
        return app

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    async def silent(self, request: web.Request) -> web.Response:
        self.seen(request.path_qs).set()
        await self.over.wait()
        return web.Response(body=b"late")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        await resp.write(bytes(10))
        self.seen(request.path_qs).set()
        await self.over.wait()
        return resp

    async def hop(self, request: web.Request) -> web.Response:
        self.seen(request.path_qs).set()
        await self._told.receive()
        raise web.HTTPFound("/pieces")

    async def pieces(self, request: web.Request) -> web.StreamResponse:
        self.seen(request.path_qs).set()
        resp = web.StreamResponse()
        if request.query.get("length") != "no":
            resp.content_length = 60
        for i in range(6):
            await self._told.receive()
            if i == 0:
                await resp.prepare(request)  # the head comes with the first piece
            await resp.write(bytes(10))
        await resp.write_eof()
        return resp


@contextlib.asynccontextmanager
async def _over(host: Host) -> AsyncIterator[None]:
    """Lets the held answers end (else the server's shutdown waits for them)."""
    try:
        yield
    finally:
        host.over.set()
        host.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_request_is_watched_only_while_it_runs_however_it_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request is cut (at its deadline, or after ``read_timeout`` of silence) by cancelling its
    task. A watch left behind once the request ended would cancel that task later, wherever it
    then was: a worker in the middle of another job. After a request answered, cut for its
    silence, cut at its deadline (a small answer whose body stops after its head included: it
    has only its deadline), refused, or cancelled by the run stopping: nothing is watched
    and the task has no cancellation left pending; and a cancellation from outside stays a
    cancellation, not a timeout."""
    host = Host()
    seen: list[tuple[str, int, int]] = []

    async def sink(chunk: bytes) -> None:
        pass

    async with (
        served(host.app()) as base,
        Transport(read_timeout=0.3, request_timeout=30.0) as transport,
        _over(host),
    ):
        clock = LoopClock(monkeypatch)
        dog = transport.watchdog
        task = asyncio.current_task()
        assert task is not None

        def after(what: str) -> None:
            seen.append((what, dog.watching, task.cancelling()))

        async def moved_on(path: str, seconds: float) -> None:
            """Once the host has the request for ``path``, ``seconds`` pass."""
            await host.seen(path).wait()
            clock.advance(seconds)

        async def cut_for_silence(path: str, send: Callable[[], Awaitable[object]]) -> None:
            """``send`` to ``path`` is cut once the host has it and 0.31 s pass in silence."""
            async with anyio.create_task_group() as tg:
                tg.start_soon(moved_on, path, 0.31)
                with pytest.raises(RequestTimeout, match=r"silent for 0\.3 s"):
                    await send()

        assert (await transport.request("GET", f"{base}/ok")).body == b"ok"
        after("answered")
        assert (await transport.stream(f"{base}/ok", sink, max_bytes=100)).size == 2
        after("downloaded")
        await cut_for_silence("/silent", lambda: transport.request("GET", f"{base}/silent"))
        after("silent")
        await cut_for_silence("/stall", lambda: transport.stream(f"{base}/stall", sink, max_bytes=100))
        after("stalled")
        async with anyio.create_task_group() as tg:
            # A deadline shorter than the read timeout: past it, the request is cut at it.
            tg.start_soon(moved_on, "/silent?deadline", 0.25)
            with pytest.raises(RequestTimeout, match=r"within 0\.2 s"):
                await transport.request("GET", f"{base}/silent?deadline", timeout=0.2)
        after("past its deadline")
        async with anyio.create_task_group() as tg:
            # A small answer (a Content-Length, read in one go) whose body stops after its head:
            # silent past the read timeout, it is cut at its deadline all the same.

            async def past_both() -> None:
                await host.seen("/stall?request").wait()
                await settle()  # its head is read
                clock.advance(0.35)  # silent for longer than read_timeout
                await settle()
                clock.advance(0.25)  # and past its deadline

            tg.start_soon(past_both)
            with pytest.raises(RequestTimeout, match=r"within 0\.5 s"):
                await transport.request("GET", f"{base}/stall?request", timeout=0.5)
        after("silent after its head")
        with pytest.raises(ConnectError):
            await transport.request("GET", f"http://127.0.0.1:{_closed_port()}/")
        after("refused")
        with anyio.CancelScope() as stop:

            async def stop_once_there() -> None:
                await host.seen("/silent?stopped").wait()
                stop.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_once_there)
                await transport.request("GET", f"{base}/silent?stopped")
        assert stop.cancelled_caught
        after("cancelled")
        await cut_for_silence("/silent?again", lambda: transport.request("GET", f"{base}/silent?again"))
        after("silent again")
    assert seen == [
        (what, 0, 0)
        for what in (
            "answered",
            "downloaded",
            "silent",
            "stalled",
            "past its deadline",
            "silent after its head",
            "refused",
            "cancelled",
            "silent again",
        )
    ]


async def test_a_request_that_keeps_showing_signs_of_life_is_not_cut_for_silence(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Silence is time without a sign of life: the request sent, its answer's head, each piece of
    its body. A download redirected after 0.2 s, whose body then comes in pieces 0.2 s apart
    (1.4 s in all), is never silent for the 0.3 s read timeout, and completes; so does an API
    answer of unknown length sent in pieces 0.1 s apart. Counted from the request alone (the
    redirect's head or the pieces not seen), either would be cut."""
    host = Host()
    got: list[bytes] = []
    piece = anyio.Event()

    async def sink(chunk: bytes) -> None:
        nonlocal piece
        got.append(chunk)
        piece.set()
        piece = anyio.Event()

    async with (
        served(host.app()) as base,
        Transport(read_timeout=0.3, request_timeout=30.0) as transport,
        _over(host),
    ):
        clock = LoopClock(monkeypatch)
        streamed = []
        async with anyio.create_task_group() as tg:

            async def download() -> None:
                streamed.append(await transport.stream(f"{base}/hop", sink, max_bytes=100, chunk_size=16))

            tg.start_soon(download)
            await host.seen("/hop").wait()
            clock.advance(0.2)
            host.tick()  # the redirect
            await host.seen("/pieces").wait()  # its head was read: the client asked for /pieces
            for _ in range(6):
                clock.advance(0.2)
                waiting = piece
                host.tick()
                await waiting.wait()
        assert [s.size for s in streamed] == [60] and b"".join(got) == bytes(60)

        answered: list[Answer] = []
        async with anyio.create_task_group() as tg:

            async def ask() -> None:
                answered.append(await transport.request("GET", f"{base}/pieces?length=no"))

            tg.start_soon(ask)
            await host.seen("/pieces?length=no").wait()
            for _ in range(6):
                clock.advance(0.1)
                host.tick()
                await settle()
        assert [a.body for a in answered] == [bytes(60)]


async def test_a_short_deadline_is_kept_while_longer_requests_are_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Requests in flight are looked at as often as the shortest limit among them needs. A
    request given 0.5 s, sent while another with a minute's limit is in flight, is cut once
    0.6 s have passed: before its host, held until then, answers. Looked at only as often as the
    first request needed (every 3 s), it would have had its answer."""
    host = Host()
    outcome: list[object] = []
    async with (
        served(host.app()) as base,
        Transport(read_timeout=60.0, request_timeout=60.0) as transport,
        _over(host),
    ):
        clock = LoopClock(monkeypatch)
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: transport.request("GET", f"{base}/silent"))
            await host.seen("/silent").wait()

            done = anyio.Event()

            async def short() -> None:
                try:
                    outcome.append(await transport.request("GET", f"{base}/hop", timeout=0.5))
                except RequestTimeout as exc:
                    outcome.append(exc)
                done.set()

            tg.start_soon(short)
            await host.seen("/hop").wait()
            clock.advance(0.6)
            await settle()
            host.tick()  # the host answers now: too late, if the request was cut
            await done.wait()
            tg.cancel_scope.cancel()
    assert len(outcome) == 1 and isinstance(outcome[0], RequestTimeout), outcome
    assert "within 0.5 s" in str(outcome[0])
