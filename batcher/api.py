"""The Segmind workflows API, as ``../shared/segmind-api.md`` describes it.

Exact in what it sends (both auth headers, JSON body, the key only to allowed origins), tolerant in
what it reads (every known answer shape). Every HTTP answer becomes a result or one of the errors
of :mod:`batcher.errors`; nothing here decides what a *run* does about an error (that is the
scheduler's job).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .backoff import server_wait
from .clock import Clock
from .config import ApiSettings
from .errors import (
    AuthError,
    BadRequest,
    BadResponse,
    ForeignHostError,
    InsufficientCredits,
    NotFound,
    RateLimited,
    RemoteError,
    ServerError,
    UnexpectedStatus,
    UnsafeOutputError,
    WrongEndpoint,
)
from .netpolicy import has_userinfo, in_clear_off_machine, origin, redact
from .outputs import OutputRef, malformed, parse_outputs_capped
from .transport import Answer, Streamed, Transport

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_REQUEST_ID = re.compile(r"^[0-9a-zA-Z_-]{8,128}$")
#: "Balance $X, required $Y": a number is digits with an optional fraction, so a sentence's full
#: stop after it ("Balance $0.05.") is not read as part of it.
_AMOUNT = r"\s*\$?\s*(-?\d+(?:\.\d+)?)"
_CREDITS = re.compile(rf"balance{_AMOUNT}.*?required{_AMOUNT}", re.IGNORECASE | re.DOTALL)
#: How deep a failure reason is read before the rest is shown as "...".
_MAX_REASON_DEPTH = 8
#: A submit answer's ``status`` that says the request failed (the poll's FAILED; ERROR as some
#: gateways spell it).
_FAILED = frozenset({"FAILED", "ERROR"})
#: Where an error answer sent with a 2xx may name the HTTP status it stands for.
_CODE_KEYS = ("status", "status_code", "statusCode", "code")
#: What :func:`_loads` returns for a body that is not JSON (JSON's own null is None).
_NOT_JSON = object()


def _loads(body: bytes | str) -> Any:
    """The provider's JSON, or ``_NOT_JSON``. An answer nested deeper than the parser's
    recursion limit (``[[[[...``: a few KB) raises RecursionError, not ValueError; it is no
    more JSON we can use than a body that is not JSON at all."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


@dataclass(frozen=True)
class Submitted:
    """A queued request: poll ``poll_url`` for its fate."""

    request_id: str
    poll_url: str
    credits: float | None


@dataclass(frozen=True)
class PollResult:
    """One poll answer. ``status`` is the provider's string, upper-cased."""

    status: str
    outputs: tuple[OutputRef, ...] = ()
    #: The answer named more outputs than are saved (:data:`~batcher.outputs.MAX_OUTPUTS`).
    outputs_cut: bool = False
    #: FAILED: the provider's reason. COMPLETED with no outputs: why none could be read, if the
    #: output was there but broken (None: it was empty).
    error: str | None = None
    credits: float | None = None


class SegmindAPI:
    """Submit, poll and download, over one :class:`~batcher.transport.Transport`."""

    def __init__(self, transport: Transport, settings: ApiSettings, clock: Clock) -> None:
        self._transport = transport
        self._settings = settings
        self._clock = clock
        self._base = settings.base_url.rstrip("/")
        self._insecure_ok = settings.allow_insecure_http
        # The settings loader refuses a plain-http base off this machine without the opt-in;
        # settings built by hand are held to the same rule here: no request to such a base
        # gets the key (its fast path never matches, and its origin is not allowed).
        base_ok = self._insecure_ok or not in_clear_off_machine(self._base)
        self._base_slash = self._base + "/" if base_ok else "\0"
        self._allowed = {origin(self._base)} if base_ok else set()
        # Listed hosts get the key over https only.
        self._allowed.update(("https", host.lower(), 443) for host in settings.credential_hosts)
        #: The last ``x-remaining-credits`` seen, if any.
        self.credits: float | None = None
        # Built once: every request sends the same headers (aiohttp copies them, never changes them).
        key = settings.api_key
        auth = {"Authorization": f"Bearer {key}", "x-api-key": key} if key else {}
        self._submit_headers = {**auth, "Content-Type": "application/json", "Accept": "application/json"}
        self._poll_headers = {**auth, "Accept": "application/json"}
        self._submit_urls: dict[str, str] = {}

    # --- credentials ------------------------------------------------------------------

    def may_receive_key(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the API key: the API's origin and
        ``credential_hosts`` (https), and plain http only to this machine's loopback unless
        ``allow_insecure_http``."""
        if url.startswith(self._base_slash):
            return True  # the API's own origin, spelled as configured (every poll_url, usually)
        if not self._insecure_ok and in_clear_off_machine(url):
            return False
        return origin(url) in self._allowed and not has_userinfo(url)

    def _check_origin(self, url: str) -> None:
        """Raise ForeignHostError unless ``url`` may receive the API key."""
        if not self.may_receive_key(url):
            if not self._insecure_ok and in_clear_off_machine(url):
                raise ForeignHostError(
                    f"refusing to send the API key over plain http to {origin(url)[1] or url[:60]}:"
                    " it would cross the network unencrypted (use https, or set"
                    " api.allow_insecure_http: true for an emulator on a network you trust)"
                )
            if has_userinfo(url):
                # aiohttp cannot send both (it raised ValueError, which ended the run), and a
                # URL carrying someone's password is not one to add our key to.
                raise ForeignHostError(
                    "refusing to send the API key to a URL that holds a user name or password"
                    " (user:pass@host)"
                )
            host = origin(url)[1] or url[:60]
            raise ForeignHostError(
                f"refusing to send the API key to {host}: it is not the API host"
                " (add it to api.credential_hosts if it is genuinely Segmind's)"
            )

    # --- calls -----------------------------------------------------------------------

    def submit_url(self, workflow_id: str) -> str:
        url = self._submit_urls.get(workflow_id)
        if url is None:
            url = self._submit_urls[workflow_id] = self._base + self._settings.submit_path.format(
                workflow_id=workflow_id
            )
        return url

    async def submit(
        self,
        workflow_id: str,
        body: Mapping[str, Any],
        *,
        job_id: str,
        on_send: Callable[[], None] | None = None,
    ) -> Submitted:
        """POST one job. Raises RemoteError / TransportError; the caller decides what each means.
        ``on_send`` is called when the POST may leave this machine (see ``Transport.request``)."""
        url = self.submit_url(workflow_id)
        self._check_origin(url)
        # A dict is sent as it is (materialize made a fresh one); any other mapping as a copy.
        json_body = body if isinstance(body, dict) else dict(body)
        answer = await self._transport.request(
            "POST", url, headers=self._submit_headers, json_body=json_body, on_send=on_send
        )
        self._note_credits(answer)
        data = self._json_or_raise(answer, job_id=job_id, call="submit")
        request_id = data.get("request_id")
        poll_url = data.get("poll_url")
        if not isinstance(request_id, str) or not _REQUEST_ID.match(request_id):
            request_id = None
        if not isinstance(poll_url, str) or not poll_url.strip():
            if request_id is None:
                refused = self._refusal(answer, data, job_id=job_id)
                if refused is not None:
                    raise refused
                # Nothing says it failed: it may have been queued (and billed) all the same.
                raise BadResponse(
                    "submit answer has neither poll_url nor request_id", status=answer.status, job_id=job_id
                )
            poll_url = f"{self._base}/workflows/request/{request_id}"
        poll_url = poll_url.strip()
        if request_id is None:
            request_id = poll_url.rstrip("/").rsplit("/", 1)[-1]
        return Submitted(request_id=request_id, poll_url=poll_url, credits=self.credits)

    async def poll(self, poll_url: str, *, job_id: str) -> PollResult:
        """GET a job's status. A poll_url off the allow-list raises ForeignHostError, unsent."""
        self._check_origin(poll_url)
        answer = await self._transport.request("GET", poll_url, headers=self._poll_headers)
        self._note_credits(answer)
        failed = self._failed_body(answer)
        if failed is not None:  # FAILED may come as 200 or as 4xx (the contract cannot say which)
            return PollResult("FAILED", error=self._failure_text(failed), credits=self.credits)
        data = self._json_or_raise(answer, job_id=job_id, call="poll")
        status = data.get("status")
        if not isinstance(status, str) or not status.strip():
            raise BadResponse("poll answer has no status", status=answer.status, job_id=job_id)
        # An unknown status is recorded in the ledger: bounded, and never the key.
        status = redact(status.strip(), self._settings.api_key)[:64].upper()
        if status == "COMPLETED":
            output = data.get("output")
            refs, cut = parse_outputs_capped(output)
            # Naming no output: ``error`` says why when the output is there but broken.
            broken = None if refs else malformed(output)
            why = None
            if broken is not None:
                shown = redact(broken, self._settings.api_key)[:60]  # redact, then cut
                why = f"its output is not valid JSON ({len(broken):,} characters, beginning {shown!r})"
            return PollResult(status, tuple(refs), outputs_cut=cut, error=why, credits=self.credits)
        if status == "FAILED":
            return PollResult(status, error=self._failure_text(data), credits=self.credits)
        return PollResult(status, credits=self.credits)

    async def download(
        self,
        url: str,
        sink: Callable[[bytes], Awaitable[None]],
        *,
        max_bytes: int,
        timeout: float,
        min_rate: float | None = None,
    ) -> Streamed:
        """Stream an output file to ``sink``. Never sends credentials; only http(s). It gets
        ``timeout`` seconds, plus one for every ``min_rate`` bytes received."""
        match = _SCHEME.match(url)
        scheme = match.group(1).lower() if match else ""
        if scheme not in ("http", "https"):
            raise UnsafeOutputError(f"refusing output URL with scheme '{scheme or '(none)'}:'")
        return await self._transport.stream(
            url, sink, max_bytes=max_bytes, timeout=timeout, min_rate=min_rate
        )

    # --- answers ---------------------------------------------------------------------

    def told_wait(self, headers: Mapping[str, str]) -> float | None:
        """Seconds an answer says to wait before asking again (``Retry-After`` or
        ``x-rate-limit-reset-at-utc``, read against the answer's ``Date``), or None."""
        return server_wait(headers, now=self._clock.wall(), cap=86400.0)

    def _note_credits(self, answer: Answer) -> None:
        """Keep the balance an answer's ``x-remaining-credits`` gives, if it is a finite number.
        Python's float() also reads "nan", "inf" and "1e999" (infinite): none is a balance, and
        a NaN shown as credits left (or written as JSON progress, where NaN is not JSON) misleads,
        so such a value is ignored, as a missing header is. A negative balance is kept: a provider
        that charges jobs as they finish can leave an account overdrawn (the emulator does)."""
        raw = answer.headers.get("x-remaining-credits")
        if raw is not None:
            with contextlib.suppress(ValueError):
                value = float(raw)
                if math.isfinite(value):
                    self.credits = value

    @staticmethod
    def _failed_body(answer: Answer) -> dict[str, Any] | None:
        """A non-200 poll answer whose JSON body says ``"status": "FAILED"``, if it is one."""
        if answer.status == 200 or not 400 <= answer.status < 500 or answer.status in (401, 403, 404, 429):
            return None
        data = _loads(answer.body)
        if isinstance(data, dict) and str(data.get("status", "")).upper() == "FAILED":
            return data
        return None

    def _json_or_raise(self, answer: Answer, *, job_id: str, call: str) -> dict[str, Any]:
        # Any 2xx is an answer to read: a POST accepted with 201 or 202 was started (and billed),
        # not refused, and its poll_url must be kept.
        if not 200 <= answer.status < 300:
            raise self._error_for(answer, job_id=job_id, call=call)
        data = _loads(answer.body)
        if data is _NOT_JSON:
            raise BadResponse(f"{call} answer is not JSON", status=answer.status, job_id=job_id)
        if not isinstance(data, dict):
            raise BadResponse(f"{call} answer is not a JSON object", status=answer.status, job_id=job_id)
        return data

    def _message(self, answer: Answer) -> str:
        text = ""
        data = _loads(answer.body)
        if isinstance(data, dict):
            for key in ("error", "message", "detail", "error_message"):
                if data.get(key):
                    text = _flatten(data[key])
                    break
        if not text:
            ctype = answer.headers.get("content-type", "")
            text = "an HTML error page" if "html" in ctype or answer.body.lstrip()[:1] == b"<" else ""
            if not text:
                body = redact(answer.body.decode("utf-8", "replace"), self._settings.api_key)
                text = body.strip()[:200] or "no message"
        # Redact, then cut: a cut through the key would leave a prefix no redaction matches.
        return redact(text, self._settings.api_key)[:500]

    def _refusal(self, answer: Answer, data: Mapping[str, Any], *, job_id: str) -> RemoteError | None:
        """The error a 2xx submit answer spells out, if it says in so many words that the request
        failed (``"status": "FAILED"``, an ``error``/``error_message``, or an HTTP error code in
        its body) and carries neither poll_url nor request_id: no request was queued that could
        ever be polled or billed.
        It is read as the error answer it would have been: a code it names (``"code": 406``) is
        classified like that HTTP status (a 5xx stays an unknown outcome, as a real one does);
        without one, the provider's insufficient-credits message is its 406, anything else a
        400 (the job fails, not retried: sending it again is never silent). None for any other
        answer: a 2xx that is merely unreadable stays a POST of unknown outcome."""
        status = data.get("status")
        failed = isinstance(status, str) and status.strip().upper() in _FAILED
        code = next(
            (v for key in _CODE_KEYS if type(v := data.get(key)) is int and 400 <= v <= 599),
            None,
        )
        if not failed and code is None and not any(data.get(key) for key in ("error", "error_message")):
            return None
        named = f", code {code} in its body" if code is not None else ""
        if code is None:
            msg = self._message(answer)
            code = 406 if _CREDITS.search(msg) or "insufficient credits" in msg.lower() else 400
        text = f"HTTP {answer.status} on submit, an error answer without a poll_url{named}"
        return self._error_for(answer, job_id=job_id, call="submit", status=code, text=text)

    def _error_for(
        self, answer: Answer, *, job_id: str, call: str, status: int | None = None, text: str | None = None
    ) -> RemoteError:
        """The error an answer means: by its HTTP status, or by ``status`` when given (a 2xx
        error answer's), with ``text`` before the provider's message."""
        status = answer.status if status is None else status
        msg = self._message(answer)
        text = f"{text or f'HTTP {status} on {call}'}: {msg}"
        if status == 429:
            return RateLimited(text, retry_after=self.told_wait(answer.headers), job_id=job_id)
        if status == 400 or status == 422:
            return BadRequest(text, status=status, job_id=job_id)
        if status in (401, 403):
            return AuthError(text, status=status, job_id=job_id)
        if status == 404:
            return NotFound(text, status=status, job_id=job_id)
        if status == 406:
            match = _CREDITS.search(msg)
            balance = float(match.group(1)) if match else None
            required = float(match.group(2)) if match else None
            return InsufficientCredits(text, balance=balance, required=required, job_id=job_id)
        if 500 <= status <= 599:
            return ServerError(text, status=status, job_id=job_id)
        redirect = 300 <= status <= 399
        if status == 405 or redirect:
            where = answer.headers.get("location")
            if where and redirect:
                # Where it points says what is wrong with the base URL (its query: maybe a token).
                text += f" (redirected to {redact(where, self._settings.api_key).split('?', 1)[0][:200]})"
            return WrongEndpoint(text, status=status, job_id=job_id)
        return UnexpectedStatus(text, status=status, job_id=job_id)

    def _failure_text(self, data: Mapping[str, Any]) -> str:
        parts = []
        for key in ("error", "error_message"):
            value = data.get(key)
            if value:
                text = _flatten(value)
                if text not in parts:
                    parts.append(text)
        text = redact("; ".join(parts), self._settings.api_key)[:1000]  # redact, then cut
        return text or "the provider reported FAILED without a reason"


def _flatten(value: Any, depth: int = 0) -> str:
    """A failure reason as one line: strings, objects and ``[{"model":..,"error":..}]`` lists.
    Read :data:`_MAX_REASON_DEPTH` levels deep; what nests deeper is "..." (a hostile answer
    nested a few hundred levels would otherwise exhaust the stack)."""
    if isinstance(value, str):
        return value.strip()
    if depth >= _MAX_REASON_DEPTH and isinstance(value, list | dict):
        return "..."
    if isinstance(value, list):
        return "; ".join(filter(None, (_flatten(v, depth + 1) for v in value)))
    if isinstance(value, dict):
        if "error" in value:
            model = value.get("model")
            inner = _flatten(value["error"], depth + 1)
            return f"{model}: {inner}" if model else inner
        try:
            return json.dumps(value, ensure_ascii=False)  # cut by the caller, after redaction
        except RecursionError:
            return "an object nested too deeply to show"
    return str(value)
