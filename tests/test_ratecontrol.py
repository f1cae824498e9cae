"""Rate control under a simulated clock: paces to the budget, pauses the run on 429, learns."""

from __future__ import annotations

import random

from batcher.ratecontrol import AdaptiveRate


def _send_all(rate: AdaptiveRate, n: int, start: float = 0.0) -> list[float]:
    """Times at which n requests go out when each is sent as soon as allowed."""
    now, times = start, []
    for _ in range(n):
        now += rate.wait_time(now)
        rate.acquire(now)
        times.append(now)
    return times


def test_a_known_limit_is_never_exceeded_even_after_successes() -> None:
    rate = AdaptiveRate(5.0, ceiling=5.0, burst=1)
    times = _send_all(rate, 101)
    for _ in range(1000):
        rate.on_success(0.0)
    assert rate.rate == 5.0
    assert times[-1] - times[0] >= 100 / 5.0 - 1e-9


def test_a_429_pauses_every_request_until_the_reset_time() -> None:
    rate = AdaptiveRate(10.0, burst=5)
    assert rate.wait_time(0.0) == 0.0
    resume = rate.on_throttled(1.0, retry_after=30.0)
    assert resume == 31.0
    assert rate.wait_time(1.0) >= 30.0
    assert rate.wait_time(20.0) >= 11.0
    assert rate.wait_time(31.0) >= 0.0 and rate.wait_time(31.0) < 1.0


def test_a_429_without_a_header_backs_off_with_growing_jitter() -> None:
    rate = AdaptiveRate(10.0, rng=random.Random(3), backoff_base=1.0, backoff_cap=64.0)
    pauses = []
    now = 0.0
    for _ in range(6):
        resume = rate.on_throttled(now, retry_after=None)
        pauses.append(resume - now)
        now = resume
    assert all(0.0 <= p <= 64.0 for p in pauses)
    assert rate.rate < 10.0 * 0.5**5 + 1e-9


def test_aimd_halves_on_429_and_climbs_back_on_successes() -> None:
    rate = AdaptiveRate(8.0)
    rate.on_throttled(0.0, retry_after=0.0)
    assert rate.rate == 4.0
    for _ in range(2000):
        rate.on_success(0.0)
    assert rate.rate > 4.0


def test_a_server_told_wait_is_clamped_to_max_wait() -> None:
    rate = AdaptiveRate(1.0, max_wait=60.0)
    assert rate.on_throttled(0.0, retry_after=86_400.0) == 60.0
