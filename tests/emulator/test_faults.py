"""The request budget and the fault draws, as pure functions of time and seed."""

from __future__ import annotations

from collections import Counter

import pytest

from batcher.emulator import EmulatorConfig
from batcher.emulator.faults import (
    RateLimiter,
    RequestFaults,
    TokenBucket,
    draw_request_faults,
    rate_limit_headers,
    server_error_body,
)

WALL = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def test_token_bucket_table() -> None:
    """2 tokens, refilled at 1 per second: (time of the request, seconds it is told to wait)."""
    bucket = TokenBucket(capacity=2.0, rate=1.0, tokens=2.0, updated=0.0)
    steps = [
        (0.0, 0.0),
        (0.0, 0.0),
        (0.0, 1.0),
        (0.5, 0.5),
        (1.0, 0.0),
        (1.0, 1.0),
        (4.0, 0.0),
        (4.0, 0.0),
        (4.0, 1.0),
    ]
    assert [bucket.take(now) for now, _ in steps] == pytest.approx([wait for _, wait in steps])


def test_each_key_has_its_own_budget() -> None:
    limiter = RateLimiter(EmulatorConfig(rate_limit=5, rate_period=60.0))
    assert [limiter.check("a", 0.0) for _ in range(6)] == [0.0] * 5 + [pytest.approx(12.0)]
    assert limiter.check("b", 0.0) == 0.0
    assert limiter.check("a", 12.0) == 0.0


def test_burst_defaults_to_the_limit_rounded_up() -> None:
    assert EmulatorConfig(rate_limit=2.5).burst == 3
    assert EmulatorConfig(rate_limit=50, rate_burst=1).burst == 1


def test_unlimited_never_waits() -> None:
    limiter = RateLimiter(EmulatorConfig())
    assert not limiter.enabled
    assert {limiter.check("k", 0.0) for _ in range(1000)} == {0.0}


@pytest.mark.parametrize(
    ("style", "wait", "headers"),
    [
        ("retry-after-seconds", 11.2, {"Retry-After": "12"}),
        ("retry-after-seconds", 0.01, {"Retry-After": "1"}),
        ("retry-after-date", 11.2, {"Retry-After": "Tue, 14 Nov 2023 22:13:32 GMT"}),
        ("reset-at-utc", 11.2, {"x-rate-limit-reset-at-utc": "2023-11-14T22:13:31.200Z"}),
        ("none", 11.2, {}),
    ],
)
def test_rate_limit_headers_round_up(style: str, wait: float, headers: dict[str, str]) -> None:
    assert rate_limit_headers(style, wait, WALL) == headers


def test_no_rates_no_faults() -> None:
    config = EmulatorConfig()
    faults = {draw_request_faults(config, n) for n in range(500)}
    assert {RequestFaults(drop_after_accept=f.drop_after_accept) for f in faults} == faults
    assert all(f.error_status is None and not (f.drop or f.slow or f.lost) for f in faults)


def test_certain_faults_always_happen() -> None:
    config = EmulatorConfig(error_rate=1, lost_rate=1, slow_rate=1, drop_rate=1, odd_status_rate=1)
    for n in range(100):
        f = draw_request_faults(config, n)
        assert f.drop and f.slow and f.lost and f.odd_status and f.error_status in (500, 502, 503, 504)


def test_fault_shares_follow_the_rates_and_all_5xx_codes_appear() -> None:
    config = EmulatorConfig(seed=3, error_rate=0.3, drop_rate=0.1)
    draws = [draw_request_faults(config, n) for n in range(3000)]
    codes = Counter(f.error_status for f in draws)
    assert 800 < sum(c for code, c in codes.items() if code) < 1000
    assert set(codes) == {None, 500, 502, 503, 504}
    assert 240 < sum(f.drop for f in draws) < 360


def test_faults_depend_on_seed_and_sequence_only() -> None:
    config = EmulatorConfig(seed=1, error_rate=0.5, slow_rate=0.5)
    first = [draw_request_faults(config, n) for n in range(50)]
    assert first == [draw_request_faults(config, n) for n in range(50)]
    other = EmulatorConfig(seed=2, error_rate=0.5, slow_rate=0.5)
    assert first != [draw_request_faults(other, n) for n in range(50)]


def test_changing_one_rate_does_not_shift_another() -> None:
    errors_only = EmulatorConfig(error_rate=0.5)
    with_slow = EmulatorConfig(error_rate=0.5, slow_rate=0.5)
    assert [draw_request_faults(errors_only, n).error_status for n in range(200)] == [
        draw_request_faults(with_slow, n).error_status for n in range(200)
    ]


def test_502_is_a_gateway_html_page_and_the_others_json() -> None:
    content_type, body = server_error_body(502)
    assert content_type == "text/html" and "<h1>502 Bad Gateway</h1>" in body
    for status in (500, 503, 504):
        content_type, body = server_error_body(status)
        assert content_type == "application/json" and body.startswith('{"error": ')
