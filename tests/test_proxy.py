"""Proxies: https goes through HTTPS_PROXY (or api.proxy) as a CONNECT, so the key stays inside
TLS; plain http, loopback and NO_PROXY hosts go direct; a failing proxy is named, password hidden.

The proxy here is a stand-in on a real socket: it records every byte it is sent and answers a
CONNECT as told. No test needs TLS end to end: what crosses the proxy is the point.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from aiohttp import web

from batcher.clock import ScaledClock
from batcher.config import ApiSettings, Settings
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.errors import ConfigError, ConnectError
from batcher.settings_load import load_settings
from batcher.transport import Transport
from batcher.workflows import WorkflowRegistry

from .support import (
    API_KEY,
    REPO,
    SPEED,
    last_status,
    ledger_lines,
    run,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

PASSWORD = "pr0xy-PASSWORD"


class StandInProxy:
    """What an HTTP proxy was sent, connection by connection (``received``), and how it answers
    a CONNECT: ``"tunnel"`` (200, then it reads the first TLS record the client sends through
    the tunnel and hangs up), a status line such as ``"403 Forbidden"``, or ``"close"``."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.received: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = bytearray()
        self.received.append(b"")
        try:
            got += await reader.readuntil(b"\r\n\r\n")
            self.received[-1] = bytes(got)
            if self.answer == "tunnel":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                header = await reader.readexactly(5)  # a TLS record: type, version, length
                got += header + await reader.readexactly(int.from_bytes(header[3:5], "big"))
            elif self.answer != "close":
                writer.write(f"HTTP/1.1 {self.answer}\r\nContent-Length: 0\r\n\r\n".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.received[-1] = bytes(got)
            writer.close()

    def heads(self) -> list[str]:
        """The first line of every request the proxy was sent."""
        return [r.split(b"\r\n", 1)[0].decode() for r in self.received if r]


@contextlib.asynccontextmanager
async def proxy_serving(answer: str) -> AsyncIterator[tuple[StandInProxy, str]]:
    """A :class:`StandInProxy` on a free port of 127.0.0.1, and its URL with a user and password."""
    proxy = StandInProxy(answer)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, f"http://batcher:{PASSWORD}@127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


HEADERS = {"x-api-key": API_KEY, "Authorization": f"Bearer {API_KEY}"}


async def test_an_https_request_is_a_connect_to_the_proxy_and_the_key_stays_inside_tls() -> None:
    """The proxy is asked for a tunnel to the host, with the URL's credentials as
    Proxy-Authorization, and then sees only a TLS handshake (naming the host): never the key,
    the path or the headers. The handshake is cut here, which is a ConnectError naming the
    proxy without its password."""
    async with proxy_serving("tunnel") as (proxy, url), Transport(proxy=url) as transport:
        with pytest.raises(ConnectError) as raised:
            await transport.request("GET", "https://api.example.test/workflows/request/abc", headers=HEADERS)
    [sent] = proxy.received
    head, _, tunnelled = sent.partition(b"\r\n\r\n")
    assert head.startswith(b"CONNECT api.example.test:443 HTTP/1.1\r\n")
    credentials = base64.b64encode(f"batcher:{PASSWORD}".encode()).decode()
    assert f"Proxy-Authorization: Basic {credentials}".encode() in head
    assert tunnelled[:2] == b"\x16\x03" and b"api.example.test" in tunnelled  # a ClientHello, with SNI
    assert API_KEY.encode() not in sent and b"/workflows/request" not in sent
    port = url.rsplit(":", 1)[1]
    assert f"through the proxy http://***@127.0.0.1:{port}" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("403 Forbidden", "refused a tunnel to api.example.test:443: HTTP 403 Forbidden"),
        ("407 Proxy Authentication Required", "HTTP 407 Proxy Authentication Required (check the user name"),
        ("close", "closed the connection instead of opening a tunnel to api.example.test:443"),
        ("nothing listening", "cannot connect to the proxy http://***@127.0.0.1:"),
    ],
)
async def test_a_proxy_that_fails_before_the_tunnel_is_a_connect_error_naming_it(
    answer: str, message: str
) -> None:
    """A POST the proxy never tunnelled did not reach the API: a ConnectError (so a submit counts
    as not sent, not as an unknown outcome), naming the proxy with its password hidden, never
    one of aiohttp's exceptions."""
    async with contextlib.AsyncExitStack() as stack:
        if answer == "nothing listening":
            async with proxy_serving("close") as (proxy, url):
                pass  # closed: nothing listens on its port any more
        else:
            proxy, url = await stack.enter_async_context(proxy_serving(answer))
        transport = await stack.enter_async_context(Transport(proxy=url))
        with pytest.raises(ConnectError) as raised:
            await transport.request(
                "POST", "https://api.example.test/workflows/x", headers=HEADERS, json_body={"a": 1}
            )
    assert message in str(raised.value)
    assert "the proxy http://***@127.0.0.1:" in str(raised.value) and PASSWORD not in str(raised.value)
    assert all(API_KEY.encode() not in r for r in proxy.received)


@pytest.mark.parametrize("first", ["direct", "proxied"])
async def test_each_origin_gets_its_own_route_whatever_was_asked_before(first: str) -> None:
    """The route is decided once per origin and remembered: an https request to a loopback host
    (direct) and one to an API host (through the proxy), in either order, each take their own.
    Were the choice remembered per scheme, whichever came first would decide for every https
    host after it: a no_proxy or loopback host sent to the proxy, or every host sent past it."""
    direct, proxied = "https://localhost:9/x", "https://api.example.test/workflows/x"
    async with proxy_serving("403 Forbidden") as (proxy, url), Transport(proxy=url) as transport:
        for target in [direct, proxied] if first == "direct" else [proxied, direct]:
            with pytest.raises(ConnectError) as raised:
                await transport.request("GET", target, headers=HEADERS)
            went_through = "refused a tunnel to api.example.test:443" in str(raised.value)
            assert went_through is (target == proxied), str(raised.value)
    assert proxy.heads() == ["CONNECT api.example.test:443 HTTP/1.1"]


@pytest.mark.parametrize(
    ("url", "no_proxy"),
    [
        ("https://api.example.invalid/x", ("api.example.invalid",)),  # named
        ("https://cdn.example.invalid/x", (".example.invalid",)),  # a domain suffix
        ("https://cdn.example.invalid:8443/x", ("other.test", "cdn.example.invalid:8443")),  # host:port
        ("https://cdn.example.invalid/x", ("*",)),  # everything
        ("https://cdn.example.invalid/x", ("other.test", "*")),  # everything, in a list
        ("https://cdn.example.invalid/x", ("cdn.example.invalid:443",)),  # https's default port
        ("https://localhost:9/x", ()),  # loopback: a proxy cannot reach it
        ("https://127.0.0.1:9/x", ()),
        ("http://api.example.invalid/x", ()),  # plain http would hand the proxy the key
        ("http://127.0.0.1:9/x", ()),
    ],
)
@pytest.mark.parametrize("how", ["request", "download"])
async def test_no_proxy_hosts_loopback_and_plain_http_go_direct(
    url: str, no_proxy: tuple[str, ...], how: str
) -> None:
    """Nothing reaches the proxy: the request goes straight to its host (which does not exist
    or does not listen here), and the error says nothing of a proxy. An output download too: a
    plain http one handed to the proxy would show it the whole URL (a presigned URL's token)."""
    async with (
        proxy_serving("403 Forbidden") as (proxy, proxy_url),
        Transport(proxy=proxy_url, no_proxy=no_proxy, connect_timeout=5.0) as transport,
    ):
        with pytest.raises(ConnectError) as raised:
            if how == "request":
                await transport.request("GET", url, headers=HEADERS)
            else:

                async def sink(chunk: bytes) -> None:
                    raise AssertionError("nothing can arrive")

                await transport.stream(url + "?token=presigned", sink, max_bytes=1024)
    assert proxy.received == []
    assert "proxy" not in str(raised.value)


async def test_a_run_with_proxies_in_the_environment_polls_https_through_it_and_the_emulator_directly(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HTTPS_PROXY and HTTP_PROXY (and their lower-case forms) set, as behind a corporate
    proxy: the submit to the emulator on http://127.0.0.1 goes direct (the proxy would have had
    the key in clear), and the poll_urls the emulator hands out on an https host go through the
    proxy as CONNECTs, which it refuses: the job fails, retryable, naming the proxy."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    async with proxy_serving("403 Forbidden") as (proxy, proxy_url):
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        loaded = load_settings(env=os.environ).api
        assert (loaded.proxy, loaded.no_proxy) == (proxy_url, ())
        config = EmulatorConfig(duration_median=3.0, render="placeholder")
        async with run_emulator(config, clock=clock) as emu:
            emu.state.reconfigure(poll_origin="https://api.example.test")
            settings = settings_for(
                emu.base_url,
                tmp_path,
                **{
                    "api.proxy": loaded.proxy,
                    "api.credential_hosts": ("api.example.test",),
                    "retry.max_attempts": 2,
                },
            )
            result = await run(settings, [manifest], registry, clock)
            stats = emu.stats()
    assert stats["submissions"] == 1  # the POST went straight to 127.0.0.1
    assert proxy.heads() == ["CONNECT api.example.test:443 HTTP/1.1"] * 2  # each poll try
    assert all(API_KEY.encode() not in r for r in proxy.received)
    assert last_status(tmp_path / "ledger.jsonl") == {"sketch-0000": "failed"}
    [failed] = [r for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "failed"]
    assert (
        failed["retryable"] is True
        and "refused a tunnel to api.example.test:443: HTTP 403" in failed["error"]
    )
    assert PASSWORD not in (tmp_path / "ledger.jsonl").read_text()
    assert result.exit_code is ExitCode.FAILED


def _load(tmp_path: Path, env: dict[str, str], config: str = "") -> Settings:
    path = tmp_path / "c.yaml"
    path.write_text(config)
    return load_settings(config_path=path, env=env)


@pytest.mark.parametrize(
    ("env", "config", "proxy", "no_proxy"),
    [
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "", "http://proxy.corp:3128", ()),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "", "http://proxy.corp:3128", ()),  # as curl reads it
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "", "http://lower:2", ()),
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}, "", None, ()),  # set empty: none
        ({"HTTP_PROXY": "http://proxy.corp:3128"}, "", None, ()),  # plain http's proxy is never used
        (
            {"HTTPS_PROXY": "http://p:1", "NO_PROXY": "a.test, .b.test"},
            "",
            "http://p:1",
            ("a.test", ".b.test"),
        ),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "a.test", "NO_PROXY": "z"}, "", "http://p:1", ("a.test",)),
        ({"HTTPS_PROXY": "http://p:1"}, "api:\n  proxy: http://mine:8080\n", "http://mine:8080", ()),
        ({"HTTPS_PROXY": "http://p:1"}, "api:\n  proxy: false\n", None, ()),  # the config says none
        ({"HTTPS_PROXY": "http://p:1"}, "api:\n  proxy: off\n", None, ()),
        ({"HTTPS_PROXY": "http://p:1"}, "api:\n  proxy: null\n", "http://p:1", ()),  # null: the environment's
        (
            {"NO_PROXY": "x.test"},
            "api:\n  no_proxy: [a.test, 'b.test,c.test']\n",
            None,
            ("a.test", "b.test", "c.test"),
        ),
        # As the README says of api.proxy, "api.no_proxy likewise": null is the environment's,
        # false none (both were "expected a list of text").
        ({"NO_PROXY": "x.test"}, "api:\n  no_proxy: null\n", None, ("x.test",)),
        ({"NO_PROXY": "x.test"}, "api:\n  no_proxy: false\n", None, ()),
        ({"no_proxy": "x.test"}, "api:\n  no_proxy: off\n", None, ()),
    ],
)
def test_the_proxy_comes_from_the_config_or_else_the_environment(
    tmp_path: Path, env: dict[str, str], config: str, proxy: str | None, no_proxy: tuple[str, ...]
) -> None:
    api = _load(tmp_path, env, config).api
    assert (api.proxy, api.no_proxy) == (proxy, no_proxy)


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        (
            {"HTTPS_PROXY": f"socks5://me:{PASSWORD}@proxy.corp:1080"},
            "",
            "environment variable HTTPS_PROXY: api.proxy: 'socks5://***@proxy.corp:1080' is not an"
            " http(s) proxy URL (SOCKS proxies are not supported)",
        ),
        (
            {"https_proxy": f"http://me:{PASSWORD}@proxy.corp:99999"},
            "",
            "environment variable https_proxy: api.proxy: 'http://***@proxy.corp:99999' has an invalid port",
        ),
        (
            {},
            f"concurrency: 4\napi:\n  proxy: http://me:{PASSWORD}@proxy.corp:3128/path\n",
            "c.yaml:3: api.proxy: 'http://***@proxy.corp:3128/path' has a path",
        ),
        # An ftp:// proxy was refused "(SOCKS proxies are not supported)"; a query was "a path".
        (
            {"HTTPS_PROXY": f"ftp://me:{PASSWORD}@proxy.corp:21"},
            "",
            "environment variable HTTPS_PROXY: api.proxy: 'ftp://***@proxy.corp:21' is not an"
            " http(s) proxy URL (give",
        ),
        (
            {"HTTPS_PROXY": f"http://me:{PASSWORD}@:3128"},
            "",
            "environment variable HTTPS_PROXY: api.proxy: 'http://***@:3128' names no host",
        ),
        (
            {"HTTPS_PROXY": f"http://me:{PASSWORD}@proxy.corp:3128?via=corp"},
            "",
            "environment variable HTTPS_PROXY: api.proxy: 'http://***@proxy.corp:3128?via=corp' has a"
            " query; a proxy URL is scheme://host:port",
        ),
    ],
)
def test_a_proxy_url_that_cannot_work_is_refused_naming_where_it_came_from_and_hiding_its_password(
    tmp_path: Path, env: dict[str, str], config: str, message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, env, config)
    assert message in str(raised.value) and "api.proxy: false for none" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize("char", ["/", "?", "#"], ids=["slash", "question-mark", "hash"])
def test_a_proxy_password_holding_a_slash_is_never_quoted_and_the_refusal_says_to_encode_it(
    tmp_path: Path, char: str
) -> None:
    """A generated password with a ``/`` in it (``http://me:s3cr/t@proxy:3128``, not
    percent-encoded) ends the host part early for a URL parser: the refusal quoted the URL with
    the password in it, since only the part before the first ``/`` was searched for ``user:pass@``.
    A ``?`` or ``#`` there was hidden but refused as "a path" or "an invalid port", naming the
    wrong thing. The URL is now shown without the password, and the message says what to do."""
    secret = f"s3cr{char}t-{PASSWORD}"
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, {"HTTPS_PROXY": f"http://me:{secret}@proxy.corp:3128"}, "")
    message = str(raised.value)
    assert "s3cr" not in message and PASSWORD not in message, message
    assert (
        "environment variable HTTPS_PROXY: api.proxy: 'http://***@proxy.corp:3128': its user name or"
        " password holds a '/', '?' or '#'; percent-encode it (%2F, %3F, %23)"
    ) in message


@pytest.mark.parametrize("secret", [PASSWORD, f"p@ss-{PASSWORD}"], ids=["plain", "holding-an-at"])
def test_the_ledger_header_shows_the_proxy_without_its_password(secret: str) -> None:
    """A password holding an ``@`` (not percent-encoded) is a valid proxy URL for a URL parser
    (the host is after the last ``@``): hidden up to the first ``@`` only, the rest of the
    password was written to the ledger."""
    settings = Settings(api=ApiSettings(proxy=f"http://me:{secret}@proxy.corp:3128"))
    assert settings.public()["api"]["proxy"] == "http://***@proxy.corp:3128"


#: Run in a child process whose SSL_CERT_FILE trusts the test's certificate (aiohttp reads the
#: trusted certificates once, when it is imported): two POSTs through the proxy given as argv[1].
THROUGH_THE_TUNNEL = """
import asyncio, sys
from batcher.errors import TransportError
from batcher.transport import Transport

async def main() -> None:
    async with Transport(proxy=sys.argv[1]) as transport:
        for path in ("/answered", "/unanswered"):
            try:
                answer = await transport.request("POST", "https://api.example.test" + path, json_body={})
                print(path, answer.status)
            except TransportError as exc:
                print(path, type(exc).__name__)

asyncio.run(main())
"""


async def test_a_post_through_an_open_tunnel_that_the_host_hangs_up_on_is_an_unknown_outcome(
    tmp_path: Path,
) -> None:
    """Through a proxy, a host that reads a POST and hangs up (the tunnel open, TLS done) may have
    started the job: ConnectionLost, an unknown outcome. aiohttp raises the same error as for a
    proxy that closes instead of opening the tunnel (a ConnectError: nothing reached the host);
    taken for that, every POST cut this way was sent again as never sent, and could be billed
    twice. A real TLS host behind a relaying proxy; the first POST, answered, shows the tunnel
    works."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make the host's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    name = ["-subj", "/CN=api.example.test", "-addext", "subjectAltName=DNS:api.example.test"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", *name, *files],
        check=True,
        capture_output=True,
    )

    async def answered(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def unanswered(request: web.Request) -> web.Response:
        await request.read()  # the host has the POST
        assert request.transport is not None
        request.transport.close()
        return web.json_response({"ok": True})  # never sent

    app = web.Application()
    app.router.add_post("/answered", answered)
    app.router.add_post("/unanswered", unanswered)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    runner = web.AppRunner(app)
    await runner.setup()
    connects: list[bytes] = []

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A proxy that opens the tunnel it is asked for, to the TLS host whatever the name."""
        connects.append((await reader.readuntil(b"\r\n\r\n")).split(b"\r\n", 1)[0])
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        port = runner.addresses[0][1]
        proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
        proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}"
        env = {**os.environ, "SSL_CERT_FILE": str(cert), "PYTHONPATH": str(REPO)}
        with anyio.fail_after(60):
            done = await anyio.run_process([sys.executable, "-c", THROUGH_THE_TUNNEL, proxy_url], env=env)
        proxy.close()
    finally:
        await runner.cleanup()
    assert done.stdout.decode().split("\n") == ["/answered 200", "/unanswered ConnectionLost", ""]
    assert set(connects) == {b"CONNECT api.example.test:443 HTTP/1.1"}  # one, or one a POST
