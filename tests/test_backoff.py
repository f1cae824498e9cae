"""Backoff arithmetic and server-told waits, as tables of numbers."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batcher.backoff import (
    CLOCK_TOLERANCE,
    backoff_ceiling,
    full_jitter,
    parse_reset_at,
    parse_retry_after,
    server_wait,
)

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
        (datetime.fromtimestamp(NOW + 12, UTC).isoformat().replace("+00:00", "z"), 12.0),
        (datetime.fromtimestamp(NOW + 12, UTC).replace(tzinfo=None).isoformat(), 12.0),
        (datetime.fromtimestamp(NOW - 12, UTC).isoformat(), 0.0),
        (str(NOW + 5), 5.0),
        ("tomorrow", None),
        ("", None),
        # float() reads these, and no wait is infinite (or NaN): they say nothing.
        ("inf", None),
        ("nan", None),
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
        # A reset time the server's own Date puts in the past: come back at once.
        (
            {
                "retry-after": "garbage",
                "x-rate-limit-reset-at-utc": "2000-01-01T00:00:00Z",
                "date": _http_date(NOW),
            },
            0.0,
        ),
        ({"retry-after": "999999"}, 600.0),
    ],
)
def test_server_wait_prefers_retry_after_and_clamps(headers: dict[str, str], expected: float | None) -> None:
    assert server_wait(headers, now=NOW, cap=600.0) == expected


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)))
def test_server_wait_never_raises_and_stays_in_bounds(text: str, date: str | None) -> None:
    """Whatever the header, and whatever the answer's Date (or none)."""
    dated = {} if date is None else {"date": date}
    for key in ("retry-after", "x-rate-limit-reset-at-utc"):
        wait = server_wait({key: text, **dated}, now=NOW, cap=600.0)
        assert wait is None or 0.0 <= wait <= 600.0


def _reset_at(posix: float) -> str:
    return datetime.fromtimestamp(posix, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("skew", "wait"),
    [
        (-3600.0, 20.0),
        (-600.0, 20.0),
        (-30.0, 20.0),
        # Date has whole seconds and left the server a moment ago: within the tolerance the local
        # clock (to the millisecond) stays in charge, as before.
        (-CLOCK_TOLERANCE, 20.0 + CLOCK_TOLERANCE),
        (0.0, 20.0),
        (0.4, 19.6),
        (1.0 + CLOCK_TOLERANCE, 19.0 - CLOCK_TOLERANCE),
        (30.0, 20.0),
        (600.0, 20.0),
        (3600.0, 20.0),
    ],
)
@pytest.mark.parametrize("key", ["x-rate-limit-reset-at-utc", "retry-after"])
def test_a_time_to_come_back_is_counted_on_the_servers_clock_when_ours_is_off(
    skew: float, wait: float, key: str
) -> None:
    """The server says "come back in 20 s" as a time. On a machine whose clock is off by
    ``skew``, that read as 20 - skew seconds (ten minutes slow: a ten-minute pause for every 429;
    fast: no pause at all). Its Date header corrects it."""
    when = _reset_at(NOW + 20) if key == "x-rate-limit-reset-at-utc" else _http_date(NOW + 20)
    headers = {key: when, "date": _http_date(NOW)}
    assert server_wait(headers, now=NOW + skew, cap=86400.0) == pytest.approx(wait)


def test_a_time_to_come_back_long_past_with_no_date_says_nothing() -> None:
    """Without a Date, a reset time minutes in the past most likely means our clock is fast: it
    said "retry at once" to every 429; now it says nothing and the run backs off with jitter.
    A delay in seconds needs no clock and is kept; a time just past is "now"."""
    assert server_wait({"x-rate-limit-reset-at-utc": _reset_at(NOW - 600)}, now=NOW, cap=600.0) is None
    assert server_wait({"retry-after": _http_date(NOW - 600)}, now=NOW, cap=600.0) is None
    assert server_wait({"x-rate-limit-reset-at-utc": _reset_at(NOW - 2)}, now=NOW, cap=600.0) == 0.0
    at_tolerance = _reset_at(NOW - CLOCK_TOLERANCE)  # not *more* than the tolerance in the past
    assert server_wait({"x-rate-limit-reset-at-utc": at_tolerance}, now=NOW, cap=600.0) == 0.0
    assert server_wait({"retry-after": "0"}, now=NOW, cap=600.0) == 0.0
    # Epoch seconds in the reset header are a time too, and a delay in seconds is kept, whatever
    # it says (never below 0).
    assert server_wait({"x-rate-limit-reset-at-utc": str(NOW - 600)}, now=NOW, cap=600.0) is None
    assert server_wait({"retry-after": "-600"}, now=NOW, cap=600.0) == 0.0
    # The first header that says something wins: a stale date gives way to the other.
    both = {"retry-after": _http_date(NOW - 600), "x-rate-limit-reset-at-utc": _reset_at(NOW + 9)}
    assert server_wait(both, now=NOW, cap=600.0) == pytest.approx(9.0)


@pytest.fixture
def local_zone_five_hours_west(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone is UTC-5 (no daylight saving) for the test, then back."""
    monkeypatch.setenv("TZ", "XXX+5")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("local_zone_five_hours_west")
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-rate-limit-reset-at-utc", datetime.fromtimestamp(NOW + 20, UTC).replace(tzinfo=None).isoformat()),
        ("retry-after", _http_date(NOW + 20).replace("GMT", "-0000")),
    ],
    ids=["reset-at-without-offset", "http-date-minus-0000"],
)
def test_a_time_without_a_zone_is_utc_whatever_this_machines_zone(key: str, value: str) -> None:
    """A reset time with no offset (the header says UTC), or an HTTP date in ``-0000``, is UTC.
    Read as local time, on a machine five hours west of UTC a 20 s wait was five hours (cut to
    ``rate.max_wait`` a 429), and five hours east it was none at all."""
    assert time.timezone == 5 * 3600  # the zone took: else this test could not fail
    assert server_wait({key: value}, now=NOW, cap=86400.0) == pytest.approx(20.0)
