"""Rate control under a simulated clock: paces to the budget, pauses on 429, learns the limit at
any time scale (the same policy at 5 requests a minute and at 20 a second)."""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig
from batcher.engine import ExitCode, run_batch
from batcher.ratecontrol import AdaptiveRate
from batcher.workflows import WorkflowRegistry

from .support import SPEED, Bucket, fronted_emulator, settings_for, sketch_rows, write_jsonl


def _send_all(rate: AdaptiveRate, n: int, start: float = 0.0) -> list[float]:
    """Times at which n requests go out when each is sent as soon as allowed."""
    now, times = start, []
    for _ in range(n):
        now += rate.wait_time(now)
        rate.acquire(now)
        times.append(now)
    return times


def _simulate(
    limit: float, *, requests: int, initial: float, tell: bool, seed: int = 1
) -> tuple[int, float, int]:
    """Run ``requests`` requests flat out; returns (429s, seconds taken, 429s in the second half)."""
    server = Bucket(limit, burst=max(1, int(limit)))
    rate = AdaptiveRate(initial, rng=random.Random(seed), backoff_base=1 / limit, backoff_cap=60 / limit)
    now, throttled, late, sent = 0.0, 0, 0, 0
    while sent < requests:
        now += rate.wait_time(now)
        rate.acquire(now)
        ok, reset = server.allow(now)
        if ok:
            rate.on_success(now)
            sent += 1
        else:
            throttled += 1
            late += sent >= requests // 2
            rate.on_throttled(now, reset if tell else None)
    return throttled, now, late


@pytest.mark.parametrize("tell", [True, False], ids=["headers", "no-headers"])
@pytest.mark.parametrize(
    ("limit", "initial"),
    [(20.0, 50 / 60), (5.0, 50 / 60), (5 / 60, 50 / 60), (50 / 60, 10 / 60), (5 / 60, 5.0)],
    ids=["20/s from 50/min", "5/s", "5/min from 50/min", "50/min from 10/min", "5/min from 5/s"],
)
def test_an_unknown_limit_is_learned_and_then_respected_at_any_scale(
    limit: float, initial: float, tell: bool
) -> None:
    requests = 2000
    throttled, seconds, late = _simulate(limit, requests=requests, initial=initial, tell=tell)
    best = requests / limit
    assert seconds <= 1.25 * best + 60 / limit  # close to the limit, whatever the time scale
    assert late / requests <= 0.02  # once learned, 429s are rare
    assert throttled <= 0.05 * requests


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
    assert 0.0 <= rate.wait_time(31.0) < 1.0


def test_a_429_without_a_header_backs_off_with_growing_jitter_and_keeps_cutting() -> None:
    rate = AdaptiveRate(10.0, rng=random.Random(3), backoff_base=1.0, backoff_cap=64.0)
    now, rates = 0.0, [rate.rate]
    for _ in range(6):
        resume = rate.on_throttled(now, retry_after=None)
        assert 0.0 <= resume - now <= 64.0
        now = resume
        rates.append(rate.rate)
    cuts = [after / before for before, after in itertools.pairwise(rates)]
    assert all(later < earlier for earlier, later in itertools.pairwise(cuts))  # deeper each time
    assert rates[-1] < rates[0] / 5


def test_a_server_told_wait_is_clamped_to_max_wait() -> None:
    rate = AdaptiveRate(1.0, max_wait=60.0)
    assert rate.on_throttled(0.0, retry_after=86_400.0) == 60.0


def test_a_day_named_by_the_429_of_a_request_sent_before_the_last_429_is_clamped_to_max_wait() -> None:
    """A 429 answering a request already in flight when the first 429 came still moves the pause
    to the time it names, but no further than ``max_wait``: a daily quota's "come back in a day"
    paused the whole run for a day whenever it answered such a request."""
    rate = AdaptiveRate(1.0, max_wait=60.0)
    assert rate.on_throttled(1.0, retry_after=5.0, sent_at=0.5) == 6.0
    assert rate.on_throttled(1.2, retry_after=86_400.0, sent_at=0.9) == pytest.approx(61.2)


def test_requests_saved_up_before_a_429_are_not_sent_in_a_burst_when_the_pause_ends() -> None:
    """A 429 says the server's allowance is spent: tokens the client had saved up (a burst of 5)
    must not all go out the instant the reset time comes, into the same 429 again."""
    rate = AdaptiveRate(10.0, burst=5)
    assert rate.wait_time(0.0) == 0.0  # five requests could go now
    resume = rate.on_throttled(0.0, retry_after=0.1)
    times = _send_all(rate, 3, start=resume)
    assert times[0] >= resume  # nothing before the reset time
    assert times[1] > times[0] and times[2] > times[1]  # then paced, one at a time


def test_a_later_reset_time_in_the_429_of_a_request_sent_earlier_still_pauses_the_run() -> None:
    """A 429 answering a request sent before the last 429 was known is not new evidence about the
    rate (no second cut), but the reset time it carries is the server's word: the pause must last
    until then, not end at the first 429's earlier reset into more 429s."""
    rate = AdaptiveRate(10.0, burst=5)
    assert rate.on_throttled(1.0, retry_after=5.0, sent_at=0.9) == 6.0
    cut = rate.rate
    assert rate.on_throttled(1.2, retry_after=30.0, sent_at=0.95) == 31.2
    assert rate.rate == cut  # the same event: not cut twice
    assert rate.wait_time(10.0) >= 21.2 - 1e-9


def test_successes_below_the_target_rate_do_not_raise_it() -> None:
    """Application-limited (RFC 7661): a run sending slower than its target learns nothing about
    the limit; growing anyway would leave a target far above it for the next burst."""
    rate = AdaptiveRate(1.0, burst=1)
    now = 0.0
    for _ in range(200):
        now += 2.0  # a request every 2 s against a target of 1 a second: it never waits
        assert rate.wait_time(now) == 0.0
        rate.acquire(now)
        rate.on_success(now)
    assert rate.rate == 1.0
    for _ in range(10):  # requests that wait for tokens: slow start goes on
        now += rate.wait_time(now)
        rate.acquire(now)
        rate.on_success(now)
    assert rate.rate > 2.0


@pytest.mark.parametrize("tell", [True, False], ids=["headers", "no-headers"])
def test_a_burst_of_429s_does_not_leave_the_run_slow_for_good(tell: bool) -> None:
    """A provider answering only 429s for half a minute (an incident, or its limit lowered for
    a while) drove the learned bound down with the cut rate, from 50 a minute to 6 in four 429s;
    the probe above the bound then climbed 0.02% a request, and the run crawled at about 40
    requests in 5 minutes instead of 250 for the rest of its life."""
    limit = 50 / 60
    server = Bucket(limit, burst=50)
    rate = AdaptiveRate(limit, rng=random.Random(1))
    now, done_late = 0.0, 0
    while now < 3600.0:
        now += rate.wait_time(now)
        rate.acquire(now)
        if 600.0 <= now < 630.0:  # the incident: everything refused, come back in 2 s
            rate.on_throttled(now, 2.0 if tell else None, now)
            continue
        ok, reset = server.allow(now)
        if ok:
            rate.on_success(now)
            done_late += now >= 3000.0
        else:
            rate.on_throttled(now, reset if tell else None, now)
    assert done_late >= 0.9 * limit * 600  # the last ten minutes: back near the limit


# --- which request a 429 answers, in a run against the emulator -------------------------------

#: The run's starting rate (requests/s) in the engine tests below: no success comes before the
#: first 429, so it is the rate the first burst of POSTs is sent at.
START = 50.0


async def _refused_run(tmp: Path, registry: WorkflowRegistry, refused: set[int]) -> AdaptiveRate:
    """Six jobs in four slots; the provider holds its first four POSTs until all four are in and
    refuses them together (one burst of 429s, "Retry-After: 1"), and refuses the POSTs numbered
    in ``refused`` (counting from 1) too. Returns the run's rate controller, after the run."""
    clock = ScaledClock(SPEED)
    posts = 0
    burst_in = asyncio.Event()

    async def front(kind: str | None, request: web.Request, handler: Handler) -> web.StreamResponse:
        nonlocal posts
        if kind != "submit":
            return await handler(request)
        posts += 1
        if posts <= 4:
            if posts == 4:
                burst_in.set()
            await burst_in.wait()
        if posts <= 4 or posts in refused:
            refusal = {"message": "Too many requests"}
            return web.json_response(refusal, status=429, headers={"Retry-After": "1"})
        return await handler(request)

    config = EmulatorConfig(render="placeholder", duration_median=2.0, duration_spread=0.0)
    async with fronted_emulator(clock, config, front) as (base, _):
        settings = settings_for(base, tmp, concurrency=4, **{"rate.initial_per_minute": START * 60})
        rate = AdaptiveRate(START, rng=random.Random(0))
        manifest = write_jsonl(tmp / "m.jsonl", sketch_rows(6))
        result = await run_batch(settings, [manifest], registry=registry, clock=clock, rate=rate)
    assert result.exit_code is ExitCode.OK and result.stats.outcomes["completed"] == 6
    return rate


@pytest.mark.anyio
async def test_one_burst_of_429s_for_requests_sent_together_cuts_the_rate_once(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Four POSTs on the wire together, refused by one 429 each: one piece of evidence that the
    run was sending too fast, not four. Dated by when the answers came (or not dated at all),
    each counted as a 429 in a row: the rate fell to a thirtieth and the bound the run climbs
    back to fell from 0.95x to 0.81x the rate it had been sending at, for the rest of the run."""
    rate = await _refused_run(tmp_path, registry, refused=set())
    assert rate.learned is not None and rate.learned >= 0.95 * START * (1 - 1e-9)


@pytest.mark.anyio
async def test_a_429_for_a_request_sent_after_the_last_429_was_known_is_new_evidence(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """After the burst, a retried POST sent after the pause is refused again: the rate it was
    sent at is too fast too, and the bound must come down again. With every request dated
    before the first 429 (no send time kept), each later 429 was taken for an echo of the first
    one, and a run kept probing at a rate the provider had refused."""
    rate = await _refused_run(tmp_path, registry, refused={8})
    assert rate.learned is not None and rate.learned < 0.95 * START * 0.99
