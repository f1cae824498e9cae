"""The request budget (429s) and the request-level fault draws: pure, given the time and the seed.

Nothing here reads a clock or touches the network; callers pass ``now`` (monotonic seconds) and
``wall`` (POSIX seconds) from the emulator's clock, so tests can drive it as a table of numbers.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate

from .config import EmulatorConfig

#: The 5xx statuses a faulty gateway answers, drawn uniformly.
SERVER_ERRORS = (500, 502, 503, 504)

_ERROR_MESSAGES = {
    500: "Internal Server Error",
    503: "Service temporarily unavailable",
    504: "Request timed out",
}

# What a fronting nginx answers when the upstream is gone: the body is HTML, not JSON.
_GATEWAY_HTML = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def seeded(*parts: object) -> random.Random:
    """A generator seeded from ``parts``: ``random.Random`` hashes a str seed with SHA-512, so the
    draws are the same in every process (``PYTHONHASHSEED`` plays no part)."""
    return random.Random(":".join(str(p) for p in parts))


# --- the request budget --------------------------------------------------------------------


@dataclass
class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled at ``rate`` per second, starting full."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token: ``0.0`` if there was one, else the seconds until there will be."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimiter:
    """One :class:`TokenBucket` per API key (Segmind's limits are per account), or with
    ``output`` the file host's budget (``output_rate_limit``), one bucket for everyone."""

    def __init__(self, config: EmulatorConfig, *, output: bool = False) -> None:
        if output:
            self._limit, self._period = config.output_rate_limit, config.output_rate_period
            self._burst = max(1, math.ceil(self._limit or 1))
        else:
            self._limit, self._period, self._burst = config.rate_limit, config.rate_period, config.burst
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def enabled(self) -> bool:
        """False when requests are unlimited."""
        return self._limit is not None

    def check(self, key: str, now: float) -> float:
        """Spend one request of ``key``'s budget: ``0.0`` if allowed, else seconds to wait."""
        if self._limit is None:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(float(self._burst), self._limit / self._period, float(self._burst), now)
            self._buckets[key] = bucket
        return bucket.take(now)


def rate_limit_headers(style: str, wait: float, wall: float) -> dict[str, str]:
    """The headers of a 429 telling the client to come back after ``wait`` seconds.

    Rounded up, never down: a client that honours the header exactly must then find a token.
    """
    if style == "retry-after-seconds":
        return {"Retry-After": str(max(1, math.ceil(wait)))}
    if style == "retry-after-date":
        # An HTTP date has whole seconds; the next whole second after the wait is safe.
        return {"Retry-After": formatdate(math.ceil(wall + wait), usegmt=True)}
    if style == "reset-at-utc":
        at = datetime.fromtimestamp(math.ceil((wall + wait) * 1000) / 1000, tz=UTC)
        return {"x-rate-limit-reset-at-utc": at.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    return {}


def rate_limit_message(config: EmulatorConfig) -> str:
    """The 429 body's message, naming the budget as the provider's docs do."""
    limit = config.rate_limit or 0.0
    return f"Rate limit exceeded: {limit:g} requests per {config.rate_period:g} seconds. Try again later."


# --- request faults ------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFaults:
    """What goes wrong with one API request (all False: nothing)."""

    #: Close the connection without answering.
    drop: bool = False
    #: For a dropped submit: the job was accepted (and will be billed) before the drop.
    drop_after_accept: bool = False
    #: Answer this 5xx instead of doing the work.
    error_status: int | None = None
    #: Answer only after ``slow_seconds``.
    slow: bool = False
    #: For a submit that would succeed: accept and bill it, but answer 502.
    lost: bool = False
    #: For a poll of an unfinished job: report an undocumented status.
    odd_status: bool = False
    #: For a valid submit: refuse it with a 200 whose body says FAILED (nothing queued).
    failed_submit: bool = False
    #: For a poll of a completed job: its ``output`` string cut short (not valid JSON).
    garbled_output: bool = False


def draw_request_faults(config: EmulatorConfig, sequence: int) -> RequestFaults:
    """The faults of the ``sequence``-th API request: a function of (seed, sequence) only.

    Every draw is made whatever the rates, so changing one rate never shifts another's draws.
    """
    rng = seeded(config.seed, "request", sequence)
    # Drawn in this order for ever: a new fault's draw goes last, so older ones keep theirs.
    u_drop, u_accept, u_error, u_code, u_slow, u_lost, u_odd, u_failed, u_garbled = (
        rng.random() for _ in range(9)
    )
    return RequestFaults(
        drop=u_drop < config.drop_rate,
        drop_after_accept=u_accept < config.drop_accept_share,
        error_status=SERVER_ERRORS[int(u_code * len(SERVER_ERRORS))] if u_error < config.error_rate else None,
        slow=u_slow < config.slow_rate,
        lost=u_lost < config.lost_rate,
        odd_status=u_odd < config.odd_status_rate,
        failed_submit=u_failed < config.failed_submit_rate,
        garbled_output=u_garbled < config.garbled_output_rate,
    )


def server_error_body(status: int) -> tuple[str, str]:
    """``(content_type, body)`` of an injected 5xx: a gateway's HTML page for 502, JSON otherwise."""
    if status == 502:
        return "text/html", _GATEWAY_HTML
    message = _ERROR_MESSAGES.get(status, "Server error")
    return "application/json", f'{{"error": "{message}"}}'
