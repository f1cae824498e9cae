"""The transport's deadlines and silences (:mod:`batcher.deadlines`), against a real server: each
request is watched while it runs and only then, whatever way it ends."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from batcher.errors import ConnectError, RequestTimeout
from batcher.transport import Transport

from .support import served

pytestmark = pytest.mark.anyio


class Host:
    """Answers ``/ok``; never answers ``/silent``; sends ``/stall``'s head and 10 of its 100 bytes,
    then nothing; sends ``/trickle``'s 100 bytes one every 20 ms (never silent). The held ones
    wait for ``over``."""

    def __init__(self) -> None:
        self.over = anyio.Event()
        self.arrived = anyio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/silent", self.silent)
        app.router.add_get("/stall", self.stall)
        app.router.add_get("/trickle", self.trickle)
        app.router.add_get("/paced", self.paced)
        return app

    async def ok(self, request: web.Request) -> web.Response:
        return web.Response(body=b"ok")

    async def silent(self, request: web.Request) -> web.Response:
        self.arrived.set()
        await self.over.wait()
        return web.Response(body=b"late")

    async def stall(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        await resp.write(bytes(10))
        await self.over.wait()
        return resp

    async def trickle(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.content_length = 100
        await resp.prepare(request)
        try:
            for _ in range(100):
                await resp.write(b"x")
                await anyio.sleep(0.02)
        except ConnectionError:  # the client hung up
            pass
        return resp

    async def paced(self, request: web.Request) -> web.StreamResponse:
        """Its head after 0.2 s, then 10 bytes every 0.2 s, 60 in all: never silent for 0.3 s.
        ``?length=no``: no Content-Length (sent chunked, as a big or compressed answer is)."""
        await anyio.sleep(0.2)
        resp = web.StreamResponse()
        if request.query.get("length") != "no":
            resp.content_length = 60
        await resp.prepare(request)
        for _ in range(6):
            await anyio.sleep(0.2)
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


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_request_is_watched_only_while_it_runs_however_it_ends() -> None:
    """A request is cut (at its deadline, or after ``read_timeout`` of silence) by cancelling its
    task. A watch left behind once the request ended would cancel that task later, wherever it
    then was: a worker in the middle of another job. After a request answered, cut for its
    silence, cut at its deadline, refused, or cancelled by the run stopping: nothing is watched
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
        dog = transport.watchdog
        task = asyncio.current_task()
        assert task is not None

        def after(what: str) -> None:
            seen.append((what, dog.watching, task.cancelling()))

        assert (await transport.request("GET", f"{base}/ok")).body == b"ok"
        after("answered")
        assert (await transport.stream(f"{base}/ok", sink, max_bytes=100)).size == 2
        after("downloaded")
        with pytest.raises(RequestTimeout, match=r"silent for 0\.3 s"):
            await transport.request("GET", f"{base}/silent")
        after("silent")
        with pytest.raises(RequestTimeout, match=r"silent for 0\.3 s"):
            await transport.stream(f"{base}/stall", sink, max_bytes=100)
        after("stalled")
        with pytest.raises(RequestTimeout, match=r"within 0\.5 s"):
            await transport.request("GET", f"{base}/trickle", timeout=0.5)
        after("trickled")
        with pytest.raises(ConnectError):
            await transport.request("GET", f"http://127.0.0.1:{_closed_port()}/")
        after("refused")
        host.arrived = anyio.Event()
        with anyio.CancelScope() as stop:

            async def stop_once_there() -> None:
                await host.arrived.wait()
                stop.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_once_there)
                await transport.request("GET", f"{base}/silent")
        assert stop.cancelled_caught
        after("cancelled")
        with pytest.raises(RequestTimeout, match=r"silent for 0\.3 s"):
            await transport.request("GET", f"{base}/silent")
        after("silent again")
    assert seen == [
        (what, 0, 0)
        for what in (
            "answered",
            "downloaded",
            "silent",
            "stalled",
            "trickled",
            "refused",
            "cancelled",
            "silent again",
        )
    ]


async def test_a_request_that_keeps_showing_signs_of_life_is_not_cut_for_silence() -> None:
    """Silence is time without a sign of life: the request sent, its answer's head, each piece of
    its body. A download whose head comes 0.2 s after it was sent and whose body comes in pieces
    0.2 s apart (1.4 s in all) is never silent for the 0.3 s read timeout, and completes; so does
    an API answer of unknown length sent the same way. Counted from the request alone (its head
    or its pieces not seen), either would be cut."""
    host = Host()
    got: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        got.append(chunk)

    async with (
        served(host.app()) as base,
        Transport(read_timeout=0.3, request_timeout=30.0) as transport,
        _over(host),
    ):
        assert (await transport.stream(f"{base}/paced", sink, max_bytes=100, chunk_size=16)).size == 60
        assert b"".join(got) == bytes(60)
        answer = await transport.request("GET", f"{base}/paced?length=no")
        assert answer.body == bytes(60)


async def test_a_short_deadline_is_kept_while_longer_requests_are_in_flight() -> None:
    """Requests in flight are looked at as often as the shortest limit among them needs. A
    request given 0.5 s, sent while another with a minute's limit is in flight, is cut at about
    0.5 s: before its trickling answer (2 s long) ends. Looked at only as often as the first
    request needed (every 3 s), it would have run to its end."""
    host = Host()
    async with (
        served(host.app()) as base,
        Transport(read_timeout=60.0, request_timeout=60.0) as transport,
        _over(host),
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(lambda: transport.request("GET", f"{base}/silent"))
        await host.arrived.wait()
        with pytest.raises(RequestTimeout, match=r"within 0\.5 s"):
            await transport.request("GET", f"{base}/trickle", timeout=0.5)
        tg.cancel_scope.cancel()
