"""Pure backoff arithmetic and server-told waits (after stamina's ``_compute_backoff`` and
urllib3's ``parse_retry_after``). No I/O, no clock reads: time comes in as arguments.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


def backoff_ceiling(attempt: int, *, base: float, cap: float) -> float:
    """The exponential ceiling for retry number ``attempt`` (1 for the first retry)."""
    if attempt < 1:
        return 0.0
    # 2**attempt overflows a float near 1024; the cap binds long before.
    exponent = min(attempt - 1, 60)
    return min(cap, base * math.pow(2.0, exponent))


def full_jitter(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """AWS's "full jitter": a uniform wait in ``[0, ceiling]``.

    Spreads clients that failed together, which is what a shared 429 needs
    (Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).
    """
    return rng.uniform(0.0, backoff_ceiling(attempt, base=base, cap=cap))


#: Seconds this machine's clock may differ from a server's ``Date`` before the server's is believed
#: for the times it names (``Date`` has whole seconds, and left the server a moment ago).
CLOCK_TOLERANCE = 5.0


def _http_date(text: str) -> float | None:
    """The POSIX time of an HTTP date (RFC 9110 5.6.7), or None."""
    try:
        when = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError):
        return None


def _retry_after_at(value: str, *, now: float) -> tuple[float | None, bool]:
    """``Retry-After`` as (seconds to wait, unclamped; whether it named a time, not a delay)."""
    text = value.strip()
    if not text:
        return None, False
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None, False
        return seconds, False
    when = _http_date(text)
    return (None, True) if when is None else (when - now, True)


def _reset_at(value: str, *, now: float) -> tuple[float | None, bool]:
    """``x-rate-limit-reset-at-utc`` as (seconds to wait, unclamped; True: it is a time)."""
    text = value.strip()
    if not text:
        return None, True
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:  # some gateways send epoch seconds here
            seconds = float(text)
        except ValueError:
            return None, True
        return (seconds - now, True) if math.isfinite(seconds) else (None, True)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp() - now, True
    except (OverflowError, ValueError):
        return None, True


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    ``now`` is the current POSIX time. Returns ``None`` for a value that is neither.
    Negative results (a date in the past) become 0.
    """
    wait, _ = _retry_after_at(value, now=now)
    return None if wait is None else max(0.0, wait)


def parse_reset_at(value: str, *, now: float) -> float | None:
    """Seconds to wait from ``x-rate-limit-reset-at-utc`` (an ISO 8601 time, as Segmind sends)."""
    wait, _ = _reset_at(value, now=now)
    return None if wait is None else max(0.0, wait)


def server_now(headers: Mapping[str, str], *, now: float) -> float | None:
    """The time by the server's clock when its ``Date`` header says this machine's clock (``now``)
    is off by more than :data:`CLOCK_TOLERANCE`; ``now`` when they agree; None without a ``Date``."""
    raw = headers.get("date")
    told = _http_date(raw) if raw is not None else None
    if told is None:
        return None
    # The server's time was in [told, told + 1) when it answered, a moment before now.
    if told - CLOCK_TOLERANCE <= now <= told + 1.0 + CLOCK_TOLERANCE:
        return now
    return told


def server_wait(headers: Mapping[str, str], *, now: float, cap: float) -> float | None:
    """What the answer says to wait, clamped to ``[0, cap]``; ``None`` when it says nothing.

    ``headers`` keys are lower case. ``Retry-After`` wins over ``x-rate-limit-reset-at-utc``.

    A time (an HTTP date, a reset time) is counted on the server's clock: on a machine ten
    minutes slow, "reset at 12:00:30" read against the local 11:50:10 meant a ten-minute pause
    for every 429, and on one ten minutes fast no pause at all. The answer's ``Date`` says what
    time the server thinks it is (RFC 9110 6.6.1), and is used when the two clocks disagree. A
    time more than :data:`CLOCK_TOLERANCE` in the past with no ``Date`` to tell whose clock is
    wrong says nothing (the caller backs off as for a 429 without a header), rather than
    "retry at once".
    """
    server = server_now(headers, now=now)
    for key, parse in (("retry-after", _retry_after_at), ("x-rate-limit-reset-at-utc", _reset_at)):
        raw = headers.get(key)
        if raw is None:
            continue
        wait, is_time = parse(raw, now=now if server is None else server)
        if wait is None or (is_time and server is None and wait < -CLOCK_TOLERANCE):
            continue
        return min(cap, max(0.0, wait))
    return None
