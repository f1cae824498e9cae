"""What the network may see of a request: pure rules, no network library.

Two rules keep the API key off the wire in clear:

* **Plain http only to this machine.** An http request carries the key in clear, so it may go
  only to a loopback host (127.0.0.0/8, ::1, ``localhost``: the emulator), unless the user says
  the network is trusted (``api.allow_insecure_http``: an emulator on another machine or in a
  container).
* **A proxy for https only.** Through a proxy an https request is a ``CONNECT host:port``: the
  proxy relays TLS bytes and sees nothing else. A plain http request through a proxy would be
  handed to it whole, key included, so plain http always goes direct, whatever ``HTTP_PROXY``
  says. Loopback hosts go direct too (a proxy cannot reach this machine's loopback).

A proxy URL may hold a user name and password (``http://user:pass@proxy:3128``): :func:`shown`
is the only way one is printed (:func:`via_proxy` in the transport's messages), and other URLs are
named without their query string (:func:`described`: presigned URLs carry tokens there). Which
origins get the key at all is :class:`batcher.api.SegmindAPI`'s rule, in the terms below
(:func:`origin`, :func:`has_userinfo`, :func:`redact`). An output download's redirect is followed
by hand (:func:`redirect_target`): only to http(s), and with its headers to the same origin only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

# Not in typeshed, but in urllib.request since Python 3.0 (what urlopen uses for no_proxy).
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from yarl import URL

from .errors import UnsafeOutputError

_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})
#: The schemes of proxy URLs aiohttp can use (a SOCKS proxy would need another library).
PROXY_SCHEMES = ("http", "https")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP literal, brackets allowed) is this machine's loopback."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback  # ::ffff:127.0.0.1
    return addr.is_loopback


def in_clear_off_machine(url: str) -> bool:
    """Whether a request to ``url`` would cross the network unencrypted (plain http to a host
    that is not loopback)."""
    parts = urlsplit(url)
    return parts.scheme.lower() == "http" and not is_loopback(parts.hostname or "")


def shown(url: str) -> str:
    """``url`` as it may be printed: a user name and password become ``***``.

    Everything up to the last ``@`` is hidden, not only up to the first ``/``: a password with a
    ``/`` in it (``http://bob:s3/cr3t@proxy:3128``, not percent-encoded, as generated passwords
    often are) ends the authority there for a URL parser, and the message refusing that URL
    quoted the password. Only proxy and API base URLs are shown, which have no ``@`` after it."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    return f"{scheme}{sep}***@{rest.rsplit('@', 1)[1]}"


def described(url: str) -> str:
    """The URL without its query string (presigned URLs carry tokens there)."""
    return url.split("?", 1)[0]


def via_proxy(proxy: URL | None) -> str:
    """What a message about a proxied request adds: the proxy, its password hidden."""
    return "" if proxy is None else f" (through the proxy {shown(str(proxy))})"


def normalize_proxy(text: str) -> str:
    """A proxy URL as given, with ``http://`` added when it names no scheme (``proxy:3128``, as
    curl reads it)."""
    text = text.strip()
    return text if "://" in text else f"http://{text}"


def proxy_problem(url: str) -> str | None:
    """Why ``url`` cannot be used as a proxy, or None. Never quotes its credentials."""
    what = shown(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address: it was a traceback
        return f"{what!r} is not a valid URL: {exc}"
    scheme = parts.scheme.lower()
    if scheme not in PROXY_SCHEMES:
        # The SOCKS note only for a SOCKS URL: an ftp:// one was told SOCKS is not supported.
        why = " (SOCKS proxies are not supported)" if scheme.startswith("socks") else ""
        return f"{what!r} is not an http(s) proxy URL{why}"
    if "@" in url.partition("://")[2][len(parts.netloc) :]:
        # The user name or password holds a / ? or # that ends the host part early (it was
        # refused for "an invalid port" or "a path", which named the wrong thing).
        return (
            f"{what!r}: its user name or password holds a '/', '?' or '#'; percent-encode it (%2F, %3F, %23)"
        )
    try:
        parts.port  # noqa: B018 (raises for a port out of range or not a number)
    except ValueError:
        return f"{what!r} has an invalid port"
    if not parts.hostname:
        return f"{what!r} names no host"
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        extra = "a path" if parts.path not in ("", "/") else "a query" if parts.query else "a fragment"
        return f"{what!r} has {extra}; a proxy URL is scheme://host:port"
    return None


def proxy_from_environment(env: Mapping[str, str]) -> tuple[str, str] | None:
    """``(variable, value)`` of the https proxy the environment names, or None. The lower-case
    variable wins, as in curl and urllib; an empty one means no proxy."""
    for name in ("https_proxy", "HTTPS_PROXY"):
        if name in env:
            value = env[name].strip()
            return (name, value) if value else None
    return None


def no_proxy_from_environment(env: Mapping[str, str]) -> tuple[str, ...]:
    """The hosts NO_PROXY (or no_proxy, which wins) lists."""
    for name in ("no_proxy", "NO_PROXY"):
        if name in env:
            return split_hosts([env[name]])
    return ()


def split_hosts(items: Sequence[str]) -> tuple[str, ...]:
    """Host entries, each item possibly a comma-separated list (NO_PROXY's form)."""
    return tuple(h.strip() for item in items for h in item.split(",") if h.strip())


def route(url: str, proxy: str | None, no_proxy: Sequence[str]) -> str | None:
    """The proxy a request to ``url`` goes through, or None for a direct connection.

    Only https goes through ``proxy``; loopback hosts and those ``no_proxy`` matches (a name,
    a ``.domain`` suffix, ``host:port``, or ``*`` for all: NO_PROXY's rules as urllib reads
    them) go direct.
    """
    if proxy is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme.lower() != "https" or not host or is_loopback(host):
        return None
    try:
        port = parts.port or 443
    except ValueError:
        return None  # aiohttp refuses the URL itself
    if no_proxy and (
        "*" in no_proxy or proxy_bypass_environment(f"{host}:{port}", {"no": ",".join(no_proxy)})
    ):
        return None
    return proxy


#: Origins whose route is remembered, at most (output hosts vary; a hostile answer could name
#: many): past it the memory starts again.
MAX_ROUTES = 1024


class Routes:
    """Which requests go through the https ``proxy``: :func:`route`'s answer, decided once per
    origin and remembered (a request pays one dict lookup for it)."""

    def __init__(self, proxy: str, no_proxy: Sequence[str]) -> None:
        self.proxy = proxy
        self._no_proxy = tuple(no_proxy)
        #: ``scheme://authority`` → whether it goes through the proxy.
        self._known: dict[str, bool] = {}

    def proxied(self, url: str) -> bool:
        end = url.find("/", 8)  # past "https://": the origin ends at the path
        key = url if end < 0 else url[:end]
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= MAX_ROUTES:
                self._known.clear()
            known = self._known[key] = route(url, self.proxy, self._no_proxy) is not None
        return known


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of ``url``, with default ports filled in."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return scheme, (parts.hostname or "").lower(), port or (443 if scheme == "https" else 80)


def has_userinfo(url: str) -> bool:
    """Whether ``url`` names a user (``user:pass@host``)."""
    parts = urlsplit(url)
    return "@" in parts.netloc


def redact(text: str, secret: str) -> str:
    """``text`` with ``secret`` blanked out (an error body could echo the key back)."""
    if secret and secret in text:
        return text.replace(secret, "***")
    return text


def redirect_target(current: URL, location: str, first: str) -> tuple[URL, bool]:
    """Where an output download's redirect from ``current`` to ``location`` leads, and whether
    the request's headers may go with it (to the same origin only). Only to http(s): anything
    else is an UnsafeOutputError naming ``first``, the URL asked for."""
    try:
        nxt = current.join(URL(location))
    except ValueError:
        raise UnsafeOutputError(f"{described(first)} redirects to an invalid URL") from None
    if nxt.scheme not in ("http", "https"):
        raise UnsafeOutputError(f"{described(first)} redirects to a '{nxt.scheme}:' URL; refused")
    return nxt, nxt.origin() == current.origin()
