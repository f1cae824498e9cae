"""Backoff arithmetic and server-told waits, as tables of numbers."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batcher.backoff import backoff_ceiling, full_jitter, parse_reset_at, parse_retry_after, server_wait

NOW = 1_800_000_000.0  # a fixed POSIX time


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(0, 0.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 64.0), (7, 120.0), (50, 120.0), (5000, 120.0)],
)
def test_backoff_ceiling_doubles_then_caps(attempt: int, expected: float) -> None:
    assert backoff_ceiling(attempt, base=2.0, cap=120.0) == expected


def test_full_jitter_is_reproducible_from_a_seed() -> None:
    a = [full_jitter(n, base=1, cap=30, rng=random.Random(7)) for n in range(1, 10)]
    b = [full_jitter(n, base=1, cap=30, rng=random.Random(7)) for n in range(1, 10)]
    assert a == b


@given(st.integers(min_value=0, max_value=10_000), st.floats(0.01, 100), st.floats(0.01, 1000), st.integers())
def test_full_jitter_stays_within_zero_and_the_ceiling(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    wait = full_jitter(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0.0 <= wait <= backoff_ceiling(attempt, base=base, cap=cap) <= cap


def _http_date(posix: float) -> str:
    return format_datetime(datetime.fromtimestamp(posix, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30", 30.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-4", 0.0),
        (_http_date(NOW + 90), 90.0),
        (_http_date(NOW - 90), 0.0),
        ("soon", None),
        ("", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after_reads_seconds_and_http_dates(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime.fromtimestamp(NOW + 12, UTC).isoformat(), 12.0),
        (datetime.fromtimestamp(NOW + 12, UTC).isoformat().replace("+00:00", "Z"), 12.0),
        (datetime.fromtimestamp(NOW + 12, UTC).replace(tzinfo=None).isoformat(), 12.0),
        (datetime.fromtimestamp(NOW - 12, UTC).isoformat(), 0.0),
        (str(NOW + 5), 5.0),
        ("tomorrow", None),
    ],
)
def test_parse_reset_at_reads_iso_8601(value: str, expected: float | None) -> None:
    got = parse_reset_at(value, now=NOW)
    assert got == (pytest.approx(expected) if expected is not None else None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "7"}, 7.0),
        (
            {
                "retry-after": "7",
                "x-rate-limit-reset-at-utc": datetime.fromtimestamp(NOW + 50, UTC).isoformat(),
            },
            7.0,
        ),
        ({"x-rate-limit-reset-at-utc": datetime.fromtimestamp(NOW + 50, UTC).isoformat()}, 50.0),
        ({"retry-after": "garbage", "x-rate-limit-reset-at-utc": "2000-01-01T00:00:00Z"}, 0.0),
        ({"retry-after": "999999"}, 600.0),
    ],
)
def test_server_wait_prefers_retry_after_and_clamps(headers: dict[str, str], expected: float | None) -> None:
    assert server_wait(headers, now=NOW, cap=600.0) == expected


@given(st.text(max_size=40))
def test_server_wait_never_raises_and_stays_in_bounds(text: str) -> None:
    for key in ("retry-after", "x-rate-limit-reset-at-utc"):
        wait = server_wait({key: text}, now=NOW, cap=600.0)
        assert wait is None or 0.0 <= wait <= 600.0
