"""The one module that imports aiohttp's client (after httpx's ``map_httpcore_exceptions``).

It sends bytes and returns bytes; it knows nothing of Segmind. Every error of the network library
leaves this module as one of ours (:class:`~batcher.errors.TransportError` and its children),
raised ``from`` the original. Nothing here logs or formats headers, so credentials passed in
``headers`` cannot leak through this layer's messages.

Timeouts. aiohttp's ``sock_read`` counts only silence between bytes, so a host that answers a
byte every few seconds never trips it; and aiohttp's ``total`` also counts the wait for a pooled
connection, which under load is our own queue, not the host's slowness. So the connection limit
is a semaphore here (waiting for a slot is never timed) and every request gets an overall
deadline from the moment it holds a slot (DNS, connect, send, headers and body):

* an API call (:meth:`Transport.request`): a fixed deadline (``api.request_timeout``). Its answers
  are a few hundred bytes of JSON: one that takes minutes is a broken or hostile host.
* an output download (:meth:`Transport.stream`): a deadline that grows with the bytes received.
  It starts at ``output.timeout`` and every ``min_rate`` bytes received push it back one second,
  so a file arriving at ``min_rate`` or faster is never cut, however big (up to its size cap),
  while a trickle is cut after about ``output.timeout``. It scales with what arrived, not with
  the Content-Length a host declares (a hostile host could declare any size and then trickle).
  The longest a host can hold one try of a download is ``output.timeout + max_bytes / min_rate``.

Both also end after ``read_timeout`` seconds of silence: nothing since the request was sent, its
answer's head came, or the last chunk of its body. (The usual API answer, a few hundred bytes
with a Content-Length, is read in one go, with no chunks to see: once its head has come, only its
deadline applies.)
The deadlines and silences are watched by :class:`~batcher.deadlines.Watchdog` with one timer for
every request in flight, not a timer or three per request (``asyncio.timeout``, aiohttp's
``sock_read``): a request is cut at most a twentieth of its limit late. Connecting keeps aiohttp's
own timeouts (``connect_timeout``). A deadline that passes, or a silence, is a
:class:`~batcher.errors.RequestTimeout`: the callers' retry paths apply (a POST cut by it has an
unknown outcome, see :mod:`batcher.actions`).

Proxies. aiohttp's ``trust_env`` would read HTTP(S)_PROXY, and send plain http through a proxy
(key and all), and also read ``~/.netrc`` and attach its passwords. So it stays off, and the
proxy is chosen here, per request, by :func:`batcher.netpolicy.route`: https only (the proxy sees
a ``CONNECT host:port``), never plain http, never loopback, not the ``no_proxy`` hosts. The choice
is made once per origin and remembered: a request pays one dict lookup for it, and nothing when
no proxy is set. A proxy that cannot be reached, refuses the tunnel or closes before opening it
is a :class:`~batcher.errors.ConnectError` naming the proxy (without its password): nothing
reached the host.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from .deadlines import Cut, Watch, Watchdog
from .errors import ConnectError, ConnectionLost, RequestTimeout, TransportError, UnsafeOutputError
from .netpolicy import Routes, described, normalize_proxy, redirect_target, shown, via_proxy

USER_AGENT = "batcher/0.1 (+https://github.com/batcher)"
#: Redirects an output download follows (a CDN's or a storage bucket's), at most.
MAX_REDIRECTS = 5
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


@dataclass(frozen=True)
class Answer:
    """A complete HTTP answer. ``headers`` is case-insensitive (look up lower-case keys)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Streamed:
    """What :meth:`Transport.stream` delivered: the status, content type and byte count."""

    status: int
    content_type: str
    size: int
    headers: Mapping[str, str]


class Transport:
    """An aiohttp session with our timeouts, connection limit and exception mapping.

    Use as an async context manager; one per run. ``request_timeout`` is the deadline of one
    request once it holds one of the ``max_connections`` slots (see the module's docstring).
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        request_timeout: float = 120.0,
        max_connections: int = 64,
        user_agent: str = USER_AGENT,
        proxy: str | None = None,
        no_proxy: Sequence[str] = (),
    ) -> None:
        # No ``total`` (it counts the wait for a pooled connection) and no ``sock_read`` (a timer
        # per request and another per read): deadlines and silences are watched here.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=None
        )
        self._read_timeout = read_timeout
        self._request_timeout = request_timeout
        self._watchdog: Watchdog | None = None
        self._max_connections = max_connections
        #: The connection limit. A request waits here, untimed, before its deadline starts. The
        #: connector has the same limit but never waits for it: a connection goes back to it
        #: (synchronously) before its slot here is released.
        self._slots = asyncio.Semaphore(max_connections)
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        #: The proxy for https (see the module's docstring), parsed once; None: every request
        #: goes direct, with no lookup at all.
        proxy_text = normalize_proxy(proxy) if proxy else None
        self._proxy = URL(proxy_text) if proxy_text else None
        self._routes = Routes(proxy_text, no_proxy) if proxy_text else None

    async def __aenter__(self) -> Transport:
        self._watchdog = Watchdog(asyncio.get_running_loop(), self._read_timeout)
        connector = aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=self._max_connections)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers={"User-Agent": self._user_agent},
            # Redirects are followed by hand, never silently: a redirect could carry our headers
            # (and the key) to another host.
            auto_decompress=True,
            trust_env=False,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("Transport used outside 'async with'")
        return self._session

    @property
    def watchdog(self) -> Watchdog:
        if self._watchdog is None:
            raise RuntimeError("Transport used outside 'async with'")
        return self._watchdog

    def _silent(self, url: str, proxy: URL | None) -> RequestTimeout:
        return RequestTimeout(
            f"no answer from {described(url)} in time (silent for {self._read_timeout:g} s){via_proxy(proxy)}"
        )

    def proxy_for(self, url: str) -> URL | None:
        """The proxy a request to ``url`` goes through, or None (direct): see
        :class:`batcher.netpolicy.Routes`."""
        if self._routes is None or not self._routes.proxied(url):
            return None
        return self._proxy

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json_body: Any = None,
        max_bytes: int = 16 * 1024 * 1024,
        timeout: float | None = None,
        on_send: Callable[[], None] | None = None,
    ) -> Answer:
        """Send one request and read the whole answer (at most ``max_bytes``), within
        ``timeout`` seconds (default: the transport's ``request_timeout``) of holding a slot.

        ``on_send`` is called once the request holds its slot, just before it is handed to the
        network: a request cancelled before that (waiting for a slot) never left this machine."""
        limit = self._request_timeout if timeout is None else timeout
        proxy = None if self._proxy is None else self.proxy_for(url)
        try:
            async with self._slots:
                if on_send is not None:
                    on_send()
                with self.watchdog.watch(limit) as watch:
                    async with self.session.request(
                        method,
                        url,
                        headers=headers,
                        allow_redirects=False,
                        json=json_body,  # None: no body (aiohttp's default)
                        proxy=proxy,
                    ) as resp:
                        declared = resp.content_length
                        # Content-Length counts the bytes on the wire: trust it for the cap only when
                        # the answer is not compressed (aiohttp inflates as it reads).
                        encoding = resp.headers.get("Content-Encoding")
                        identity = encoding is None or encoding.lower() == "identity"
                        if identity and declared is not None and declared <= max_bytes:
                            # The usual case: a small JSON answer, one read, with no chunks to
                            # see; from its head on, only its deadline applies.
                            watch.last = math.inf
                            body = await resp.read()
                        else:
                            watch.alive()  # its head came
                            body = await _read_capped(resp, max_bytes, url, watch)
                        # aiohttp's headers are case-insensitive: lower-case keys find them.
                        return Answer(status=resp.status, headers=resp.headers, body=body)
        except Cut as cut:
            if cut.watch.cut == "silence":
                raise self._silent(url, proxy) from cut
            raise RequestTimeout(
                f"no complete answer from {described(url)} within {limit:g} s{via_proxy(proxy)}"
            ) from cut
        except (UnsafeOutputError, TransportError):
            raise
        except Exception as exc:
            raise _map(exc, url, proxy) from exc

    async def stream(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        headers: Mapping[str, str] | None = None,
        max_bytes: int,
        timeout: float | None = None,
        min_rate: float | None = None,
        chunk_size: int = 64 * 1024,
    ) -> Streamed:
        """GET ``url`` and hand its body to ``sink`` chunk by chunk, refusing past ``max_bytes``.

        The whole download, redirects included, must end within ``timeout`` seconds (default:
        the transport's ``request_timeout``) of holding a slot, plus one second for every
        ``min_rate`` bytes received (None: no extension). A non-200 answer is returned with
        ``size == 0`` and nothing passed to ``sink``.
        """
        kwargs: dict[str, Any] = {"headers": headers, "allow_redirects": False}
        base = self._request_timeout if timeout is None else timeout
        first = url
        received = 0
        proxy: URL | None = None
        watch: Watch | None = None

        def progress(n: int) -> None:
            # A sign of life; and every min_rate bytes earn one more second (see the module's
            # docstring).
            nonlocal received
            received += n
            if watch is not None:
                watch.alive()
                if min_rate is not None:
                    watch.until = watch.started + base + received / min_rate

        try:
            # One slot for every hop: each hop's connection is released before the next.
            async with self._slots:
                with self.watchdog.watch(base) as watch:
                    for hop in range(MAX_REDIRECTS + 1):
                        proxy = None if self._proxy is None else self.proxy_for(url)
                        async with self.session.get(url, proxy=proxy, **kwargs) as resp:
                            watch.alive()  # its head came
                            location = resp.headers.get("Location")
                            if resp.status in _REDIRECTS and location and hop < MAX_REDIRECTS:
                                # Followed by hand: only to http(s), and headers go to the first
                                # origin only.
                                nxt, same_origin = redirect_target(resp.url, location, first)
                                if not same_origin:
                                    kwargs["headers"] = None
                                url = str(nxt)
                                continue
                            return await self._deliver(
                                resp, url, sink, progress, max_bytes=max_bytes, chunk_size=chunk_size
                            )
                    raise AssertionError("unreachable: the last hop returns")  # pragma: no cover
        except Cut as cut:
            if cut.watch.cut == "silence":
                raise self._silent(url, proxy) from cut
            elapsed = cut.watch.task.get_loop().time() - cut.watch.started
            allowed = f"{base:g} s" + (f", plus 1 s per {min_rate:g} bytes received" if min_rate else "")
            raise RequestTimeout(
                f"{described(url)} too slow: {received} bytes in {elapsed:.1f} s"
                f" (allowed: {allowed}){via_proxy(proxy)}"
            ) from cut
        except (UnsafeOutputError, TransportError):
            raise
        except Exception as exc:
            raise _map(exc, url, proxy) from exc

    async def _deliver(
        self,
        resp: aiohttp.ClientResponse,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        progress: Callable[[int], None],
        *,
        max_bytes: int,
        chunk_size: int,
    ) -> Streamed:
        """Hand a (final) answer's body to ``sink``, telling ``progress`` each chunk's size: see
        :meth:`stream`."""
        hdrs = resp.headers
        if resp.status != 200:
            return Streamed(resp.status, resp.content_type, 0, hdrs)
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            raise UnsafeOutputError(f"{described(url)} is {declared} bytes, over the {max_bytes}-byte cap")
        encoding = resp.headers.get("Content-Encoding")
        if (
            declared is not None
            and declared <= chunk_size
            and (encoding is None or encoding.lower() == "identity")
        ):
            # The usual output (an image of a few KB to a chunk): one read, one sink call.
            body = await resp.read()  # declared <= max_bytes, checked above
            if body:
                await sink(body)
            return Streamed(resp.status, resp.content_type, len(body), hdrs)
        size = 0
        async for chunk in resp.content.iter_chunked(chunk_size):
            size += len(chunk)
            if size > max_bytes:
                raise UnsafeOutputError(f"{described(url)} is over the {max_bytes}-byte cap")
            progress(len(chunk))
            await sink(chunk)
        return Streamed(resp.status, resp.content_type, size, hdrs)


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, url: str, watch: Watch) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        watch.alive()
        size += len(chunk)
        if size > max_bytes:
            raise UnsafeOutputError(f"answer from {described(url)} is over {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reason(error: OSError) -> str:
    """Why a connection failed, never empty (a reset carries no text)."""
    return error.strerror or str(error) or type(error).__name__


def _in_tunnel_setup(exc: BaseException) -> bool:
    """Whether ``exc`` was raised while aiohttp asked the proxy for a tunnel (``CONNECT``), before
    anything was sent to the host. Read from the traceback, on the error path only: aiohttp
    raises the same ServerDisconnectedError there as for a host that hangs up on a request."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_name == "_create_proxy_connection":
            return True
        tb = tb.tb_next
    return False


def _map(exc: BaseException, url: str, proxy: URL | None = None) -> BaseException:
    """One of our errors for one of aiohttp's (or asyncio's). Cancellation passes through."""
    where = described(url)
    via = via_proxy(proxy)
    if isinstance(exc, asyncio.CancelledError):
        return exc
    if isinstance(exc, TransportError):
        return exc
    if proxy is not None:
        mapped = _map_proxy(exc, url, proxy)
        if mapped is not None:
            return mapped
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return RequestTimeout(f"no answer from {where} in time{via}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {where}{via}: {_reason(exc.os_error)}")
    if isinstance(exc, aiohttp.InvalidURL):
        return ConnectError(f"invalid URL {where}")
    if isinstance(exc, UnicodeError):
        # getaddrinfo cannot encode the host name (an empty label, or one over 63 characters):
        # raised before anything is sent, as a failed DNS lookup would be.
        return ConnectError(f"cannot connect to {where}: the host name cannot be looked up")
    if isinstance(
        exc,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.ClientOSError
        | aiohttp.ClientResponseError
        | ConnectionError,
    ):
        return ConnectionLost(f"connection to {where} broke{via}: {type(exc).__name__}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransportError(f"request to {where} failed{via}: {type(exc).__name__}")
    return exc


def _map_proxy(exc: BaseException, url: str, proxy: URL) -> ConnectError | None:
    """A ConnectError for a proxy that failed before the tunnel was open (nothing reached the
    host), naming the proxy without its password; None for any other error."""
    who = f"the proxy {shown(str(proxy))}"
    target = URL(url)
    host = f"{target.host}:{target.port}"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return ConnectError(f"cannot connect to {who}: {_reason(exc.os_error)} (for {host})")
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        hint = " (check the user name and password in the proxy URL)" if exc.status == 407 else ""
        reason = str(exc.message)[:100]
        return ConnectError(f"{who} refused a tunnel to {host}: HTTP {exc.status} {reason}{hint}")
    if (
        isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError)
        and not isinstance(exc, aiohttp.ClientConnectorError)  # the tunnel is open: TLS failed
        and _in_tunnel_setup(exc)
    ):
        return ConnectError(f"{who} closed the connection instead of opening a tunnel to {host}")
    return None


async def fetch_bytes(url: str, *, max_bytes: int, timeout: float = 30.0) -> tuple[int, bytes]:
    """One GET with its own short-lived session: ``(status, body)``. For occasional fetches."""
    async with Transport(read_timeout=timeout, connect_timeout=min(timeout, 10.0)) as t:
        answer = await t.request("GET", url, max_bytes=max_bytes, timeout=timeout)
        return answer.status, answer.body
