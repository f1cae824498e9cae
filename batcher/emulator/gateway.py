"""What stands in front of the workflows: auth, the per-key budget, injected faults, counting.

Every API request (submit or poll) passes :func:`api_route`'s checks in this order: an optional
slow answer, auth (401/403), the per-key budget (429), then a dropped connection or an injected
5xx, and only then the handler. A submit accepted and then lost (a drop after acceptance here, or
the handler's own 502) is a real, billed job: exactly the case a client must never pay for twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate

from aiohttp import web

from .faults import (
    RequestFaults,
    draw_request_faults,
    rate_limit_headers,
    rate_limit_message,
    server_error_body,
)
from .state import STATE, EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTML_405 = (
    "<html>\r\n<head><title>405 Not Allowed</title></head>\r\n<body>\r\n"
    "<center><h1>405 Not Allowed</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


#: What a 401 for a missing key tells the client to send, by ``auth_header``.
_SEND = {"either": "x-api-key", "x-api-key": "x-api-key", "bearer": "Authorization: Bearer <key>"}


@dataclass(frozen=True)
class ApiCall:
    """An API request that passed the gateway: who sent it and what is to go wrong with it."""

    state: EmulatorState
    api_key: str
    faults: RequestFaults


ApiHandler = Callable[[web.Request, ApiCall], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """The provider's error body: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status, headers=headers)


def api_key_of(request: web.Request, header: str = "either") -> str:
    """The key from ``x-api-key`` or ``Authorization: Bearer`` (or only the one ``header``
    names: ``x-api-key`` or ``bearer``); empty when it is not given."""
    if header != "bearer":
        key = request.headers.get("x-api-key", "").strip()
        if key or header == "x-api-key":
            return key
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _drop(request: web.Request) -> web.Response:
    """Close the connection without a byte of answer (what a crashed upstream looks like)."""
    if request.transport is not None:
        request.transport.close()
    # aiohttp finds the transport closed and writes nothing of this.
    return web.Response(status=500)


def api_route(kind: str, handler: ApiHandler) -> Handler:
    """Wrap ``handler`` (a submit or a poll) in the gateway's checks and faults."""

    async def gateway(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        config = state.config
        faults = draw_request_faults(config, state.next_sequence())
        if faults.slow:
            state.events["slow"] += 1
            await state.clock.sleep(config.slow_seconds)

        key = api_key_of(request, config.auth_header)
        if not key:
            missing = f"Unauthorized: no API key given (send {_SEND[config.auth_header]})"
            return _answer(state, kind, json_error(401, missing))
        if config.api_key is not None and key != config.api_key:
            return _answer(state, kind, json_error(401, "Unauthorized: invalid API key"))
        if key in config.forbidden_keys:
            return _answer(state, kind, json_error(403, "Forbidden: this API key may not run workflows"))

        if kind == "submit" or config.rate_limit_polls:
            wait = state.limiter.check(key, state.clock.monotonic())
            if wait > 0.0:
                state.events["rate_limited"] += 1
                headers = rate_limit_headers(config.rate_header, wait, state.clock.wall())
                return _answer(state, kind, json_error(429, rate_limit_message(config), headers))

        accept_then_drop = faults.drop and kind == "submit" and faults.drop_after_accept
        if faults.drop and not accept_then_drop:
            state.events["dropped"] += 1
            state.record(kind, "dropped")
            return _drop(request)
        if faults.error_status is not None:
            state.events["server_error"] += 1
            content_type, body = server_error_body(faults.error_status)
            error = web.Response(status=faults.error_status, text=body, content_type=content_type)
            return _answer(state, kind, error)

        response = await handler(request, ApiCall(state, key, faults))
        if accept_then_drop:
            state.events["dropped"] += 1
            if response.status == 200:
                state.events["dropped_after_accept"] += 1
            state.record(kind, "dropped")
            return _drop(request)
        return _answer(state, kind, response)

    return gateway


def _answer(state: EmulatorState, kind: str, response: web.StreamResponse) -> web.StreamResponse:
    """Count the answer and, once the caller is known, tell it its balance (JSON answers only),
    or what ``credits_header`` says instead. Its ``Date`` is the emulator's clock, as a real
    server's is its own (aiohttp's would be the real time, not a scaled clock's): a client reads
    the times a 429 names against it."""
    response.headers["Date"] = formatdate(state.clock.wall(), usegmt=True)
    balance = state.store.balance(state.clock.monotonic())
    told = state.config.credits_header
    if told is None and balance is not None:
        told = f"{balance:.4f}"
    if told is not None and response.status != 401 and response.content_type == "application/json":
        response.headers["x-remaining-credits"] = told
    state.record(kind, response.status)
    return response


@web.middleware
async def plain_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Everything but the API: no auth, no faults; framework errors get the provider's bodies."""
    kind = request.match_info.route.name or "other"
    if kind.startswith("submit") or kind == "poll":  # the API: api_route counts those
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        # The contract: a wrong method gets a gateway's HTML page, not JSON.
        allow = ",".join(sorted(exc.allowed_methods))
        response = web.Response(
            status=405, text=_HTML_405, content_type="text/html", headers={"Allow": allow}
        )
    except web.HTTPNotFound:
        response = json_error(404, "Not Found")
    if kind != "stats":
        request.app[STATE].record(kind, response.status)
    return response
