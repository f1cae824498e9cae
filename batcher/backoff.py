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


def parse_retry_after(value: str, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds or an HTTP date (RFC 9110 10.2.3).

    ``now`` is the current POSIX time. Returns ``None`` for a value that is neither.
    Negative results (a date in the past) become 0.
    """
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def parse_reset_at(value: str, *, now: float) -> float | None:
    """Seconds to wait from ``x-rate-limit-reset-at-utc`` (an ISO 8601 time, as Segmind sends)."""
    text = value.strip()
    if not text:
        return None
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:  # some gateways send epoch seconds here
            return max(0.0, float(text) - now)
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def server_wait(headers: Mapping[str, str], *, now: float, cap: float) -> float | None:
    """What the answer says to wait, clamped to ``[0, cap]``; ``None`` when it says nothing.

    ``headers`` keys are lower case. ``Retry-After`` wins over ``x-rate-limit-reset-at-utc``.
    """
    for key, parse in (("retry-after", parse_retry_after), ("x-rate-limit-reset-at-utc", parse_reset_at)):
        raw = headers.get(key)
        if raw is None:
            continue
        wait = parse(raw, now=now)
        if wait is not None:
            return min(cap, wait)
    return None
