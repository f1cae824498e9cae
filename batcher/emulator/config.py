"""The emulator's settings: one frozen dataclass, validated once, with messages that say how to fix it.

Every probability is per request (faults) or per job (``fail_rate``); every duration is in seconds of
the emulator's :class:`~batcher.clock.Clock`, so a :class:`~batcher.clock.ScaledClock` shrinks them
all together.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError

RATE_HEADERS = ("retry-after-seconds", "retry-after-date", "reset-at-utc", "none")
AUTH_HEADERS = ("either", "x-api-key", "bearer")
DURATION_SHAPES = ("lognormal", "bimodal")
OUTPUT_SHAPES = ("list", "flat", "parsed", "base64")
RENDER_MODES = ("real", "placeholder")
ERROR_SHAPES = ("string", "object", "list", "mixed")

_RATES = (
    "error_rate",
    "lost_rate",
    "slow_rate",
    "drop_rate",
    "drop_accept_share",
    "fail_rate",
    "odd_status_rate",
    "failed_submit_rate",
    "garbled_output_rate",
    "bimodal_long_share",
)
_NON_NEGATIVE = (
    "slow_seconds",
    "duration_median",
    "duration_spread",
    "bimodal_short",
    "bimodal_long",
    "queue_delay",
)
_POSITIVE_OR_NONE = ("rate_limit", "record_ttl", "output_ttl", "output_url_ttl", "output_rate_limit")

#: A rate's period in seconds by the unit after its slash (``50/min``, ``5/s``, ``1000/h``).
PERIODS = {
    **dict.fromkeys(("s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
}
RATE_EXAMPLES = "50/min, 5/s or 1000/h"
#: Each rate setting and the setting holding its period: ``--rate-limit 50/min`` sets both.
RATE_PERIODS = {"rate_limit": "rate_period", "output_rate_limit": "output_rate_period"}
_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(?:/\s*([a-z]+))?\s*")


def split_rate(text: str) -> tuple[float, float | None] | None:
    """``"50/min"`` → ``(50.0, 60.0)``: how many, per how many seconds; ``"12"`` → ``(12.0, None)``
    (no period named). None if ``text`` is not a rate (a unit not in :data:`PERIODS`, a sign)."""
    match = _RATE.fullmatch(text.lower())
    if match is None or (match.group(2) is not None and match.group(2) not in PERIODS):
        return None
    unit = match.group(2)
    return float(match.group(1)), None if unit is None else PERIODS[unit]


@dataclass(frozen=True)
class EmulatorConfig:
    """How the emulated Segmind behaves. The defaults are a well-behaved, unlimited account."""

    #: Seeds every random draw: job durations and fates, and request faults.
    seed: int = 0
    #: The one key accepted; ``None`` accepts any non-empty key.
    api_key: str | None = field(default=None, repr=False)
    #: Keys that authenticate but are not allowed to run workflows (403).
    forbidden_keys: tuple[str, ...] = field(default=(), repr=False)
    #: Where the key is read from: ``x-api-key`` (the SDK's header), ``bearer`` (``Authorization:
    #: Bearer``, the seeds' header) or ``either``. The contract does not say the real API takes
    #: both; a client that sends only one passes against ``either`` and fails against the other.
    auth_header: str = "either"

    # --- the request budget, per API key, shared by submits and polls -----------------------
    #: Requests allowed per ``rate_period`` seconds; ``None`` is unlimited.
    rate_limit: float | None = None
    rate_period: float = 60.0
    #: Requests that may go back to back after an idle spell; ``None`` means ``ceil(rate_limit)``.
    rate_burst: int | None = None
    #: How a 429 says when to come back (the contract lists all of these as seen in the wild).
    rate_header: str = "reset-at-utc"
    #: Whether polls spend the budget (the contract says: assume they do).
    rate_limit_polls: bool = True

    # --- request faults (drawn from seed and request sequence number) ----------------------
    #: Share of API requests answered 500/502/503/504 (502 with a gateway's HTML page).
    error_rate: float = 0.0
    #: Share of submits accepted (and billed) whose answer is a 502 anyway.
    lost_rate: float = 0.0
    #: Share of API requests answered only after ``slow_seconds``.
    slow_rate: float = 0.0
    slow_seconds: float = 30.0
    #: Share of API requests whose connection is closed without any answer.
    drop_rate: float = 0.0
    #: Of dropped submits, the share the server had already accepted (and will bill).
    drop_accept_share: float = 0.5
    #: Share of polls of an unfinished job that report an undocumented status ("STARTING").
    odd_status_rate: float = 0.0
    #: Share of valid submits refused with a 200 whose body says FAILED, with an error and no
    #: poll_url or request_id: nothing is queued or billed.
    failed_submit_rate: float = 0.0
    #: Share of polls of a completed job whose ``output`` string is cut short (not valid JSON,
    #: as from a serializer that died mid-answer): the job and its files are fine, and a later
    #: poll may answer it whole.
    garbled_output_rate: float = 0.0

    # --- jobs (drawn from seed, canonical input and how often that input came before) ------
    #: Share of jobs that end FAILED.
    fail_rate: float = 0.0
    #: How FAILED bodies carry ``error_message``: a string, an object, a list, or a mix.
    error_shape: str = "string"
    #: HTTP status of a FAILED poll answer (the contract does not know whether it is 200 or 422).
    failed_http_status: int = 200
    duration_median: float = 2.0
    #: Sigma of the lognormal around the median (0 gives every job exactly the median).
    duration_spread: float = 0.3
    duration_shape: str = "lognormal"
    bimodal_short: float = 1.0
    bimodal_long: float = 20.0
    bimodal_long_share: float = 0.2
    #: Seconds every job waits in the queue before any worker may take it.
    queue_delay: float = 0.0
    #: Server-side workers per emulator; extra jobs stay QUEUED. ``None`` is unbounded.
    workers: int | None = None

    # --- money and retention --------------------------------------------------------------
    #: Starting balance in USD; ``None`` is unlimited. A job is charged when it completes.
    credits: float | None = None
    #: Seconds after a job ends before polls of it answer 404.
    record_ttl: float | None = None
    #: Seconds after a job ends before its output files answer 404.
    output_ttl: float | None = None
    #: Seconds an output URL stays good after the poll that handed it out: URLs are signed, as
    #: an S3 bucket's presigned ones are, and past it the file host answers 403 ("Request has
    #: expired") while the file is still there; a new poll of the job hands out new URLs.
    #: ``None``: plain URLs that never lapse.
    output_url_ttl: float | None = None

    #: Send this exact ``x-remaining-credits`` value instead of the balance ("nan", "inf",
    #: "-1", "lots"), on every JSON answer, to test what a client makes of it.
    credits_header: str | None = None

    # --- outputs --------------------------------------------------------------------------
    #: ``list`` (current), ``flat`` (older), ``parsed`` (list, not a JSON string), or ``base64``
    #: (list, each image as bare base64 with no ``data:`` prefix, as some workflows answer).
    output_shape: str = "list"
    #: "real" renders with Pillow; "placeholder" serves one small fixed PNG (for big benchmarks).
    render: str = "real"
    #: Serve output URLs under this hostname (same port), e.g. "localhost" while the API is at
    #: 127.0.0.1, so a client can prove it never sends the key to the output host.
    output_host: str | None = None
    #: Output downloads the file host serves per ``output_rate_period`` seconds, to everyone
    #: together (a CDN's or a bucket's own limit, not the API's); one past it is answered 429
    #: with when to come back, in the ``rate_header`` style. ``None`` is unlimited.
    output_rate_limit: float | None = None
    output_rate_period: float = 60.0
    #: Threads rendering at once (Pillow work runs off the event loop).
    render_threads: int = 2
    #: Largest input image accepted, in bytes (fetched or inline).
    max_input_bytes: int = 20 * 1024 * 1024
    #: Seconds allowed to fetch an http(s) input image.
    fetch_timeout: float = 20.0
    #: A folder served under ``/assets/`` (e.g. jobs/demo-images), so an offline emulator can be
    #: given http input URLs that point at itself.
    assets_dir: str | None = None
    #: Answer submits with ``poll_url``s on this origin (``scheme://host:port``) instead of the one
    #: the client used, so a client's refusal to send its key to a foreign poll host can be tested.
    poll_origin: str | None = None

    # --- memory ---------------------------------------------------------------------------
    #: A folder where the emulator keeps every request it accepts (journal, outputs, port), so
    #: a new emulator on the same folder answers polls of an earlier one's jobs, as a provider
    #: that remembers requests for days does. ``None`` forgets everything at exit.
    state_dir: str | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def burst(self) -> int:
        """The bucket's capacity: ``rate_burst`` or, by default, one period's worth of requests."""
        if self.rate_burst is not None:
            return self.rate_burst
        return max(1, math.ceil(self.rate_limit or 1))

    def validate(self) -> None:
        """Raise :class:`~batcher.errors.ConfigError` naming the first wrong setting and its fix."""
        for name in _RATES:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                _bad(name, value, "give a probability between 0 and 1")
        for name in _NON_NEGATIVE:
            value = getattr(self, name)
            if not value >= 0.0 or math.isinf(value):
                _bad(name, value, "give a finite number of seconds, 0 or more")
        for name in _POSITIVE_OR_NONE:
            value = getattr(self, name)
            if value is not None and not value > 0.0:
                _bad(name, value, "give a positive number, or leave it unset")
        if not self.rate_period > 0.0:
            _bad("rate_period", self.rate_period, "give a positive number of seconds")
        if not self.output_rate_period > 0.0:
            _bad("output_rate_period", self.output_rate_period, "give a positive number of seconds")
        if self.rate_burst is not None and self.rate_burst < 1:
            _bad("rate_burst", self.rate_burst, "give 1 or more, or leave it unset")
        for name, value, choices in (
            ("rate_header", self.rate_header, RATE_HEADERS),
            ("auth_header", self.auth_header, AUTH_HEADERS),
            ("duration_shape", self.duration_shape, DURATION_SHAPES),
            ("output_shape", self.output_shape, OUTPUT_SHAPES),
            ("render", self.render, RENDER_MODES),
            ("error_shape", self.error_shape, ERROR_SHAPES),
        ):
            if value not in choices:
                _bad(name, value, f"use one of: {', '.join(choices)}")
        if self.workers is not None and self.workers < 1:
            _bad("workers", self.workers, "give 1 or more, or leave it unset for no limit")
        if self.credits_header is not None and (
            not self.credits_header.isprintable() or not self.credits_header.isascii()
        ):
            _bad("credits_header", self.credits_header, "give printable ASCII text, such as nan or 12.5")
        if self.credits is not None and not self.credits >= 0.0:
            _bad("credits", self.credits, "give a balance in USD, 0 or more, or leave it unset")
        if not 200 <= self.failed_http_status <= 599:
            _bad("failed_http_status", self.failed_http_status, "give an HTTP status such as 200 or 422")
        if self.render_threads < 1:
            _bad("render_threads", self.render_threads, "give 1 or more")
        if self.max_input_bytes < 1:
            _bad("max_input_bytes", self.max_input_bytes, "give a positive number of bytes")
        if not self.fetch_timeout > 0.0:
            _bad("fetch_timeout", self.fetch_timeout, "give a positive number of seconds")
        if self.api_key is not None and not self.api_key.strip():
            _bad("api_key", "''", "give a non-empty key, or leave it unset to accept any key")
        if self.output_host is not None and (not self.output_host or "/" in self.output_host):
            _bad("output_host", self.output_host, "give a bare hostname such as localhost")
        if self.poll_origin is not None and not _is_origin(self.poll_origin):
            _bad(
                "poll_origin", self.poll_origin, "give scheme://host[:port], e.g. http://other-host.test:1234"
            )
        if self.assets_dir is not None and not Path(self.assets_dir).is_dir():
            # Every /assets/ URL would answer 404, and each job given one fail "could not fetch".
            _bad("assets_dir", self.assets_dir, "give an existing folder, e.g. jobs/demo-images")
        if self.state_dir is not None and not str(self.state_dir).strip():
            _bad("state_dir", self.state_dir, "give a folder, or leave it unset to remember nothing")


def field_names() -> tuple[str, ...]:
    """Every setting's name, in declaration order (the CLI checks it offers a flag for each)."""
    return tuple(f.name for f in fields(EmulatorConfig))


def _is_origin(text: str) -> bool:
    """``scheme://host[:port]`` over http(s), with nothing after it but an optional slash."""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and parts.path in ("", "/")
        and not (parts.query or parts.fragment or parts.username or parts.password)
    )


def _bad(key: str, value: object, fix: str) -> None:
    raise ConfigError(f"invalid value {value!r}", key=f"emulator.{key}", fix=fix)
