"""The rate and poll policies at the real scale, on a simulated clock.

The benchmark (bench/throughput.py) runs them time-scaled against the emulator; these tests run
the very same policy objects through the scheduler's dispatch rule (due polls first, then
submissions within the concurrency limit, or a freed slot first when slots are what is scarce;
every request through the rate controller) at the
provider's real scale: jobs of 10-120 s, 5-50 requests a minute. Hours pass in milliseconds,
and the outcome is a pure function of the seed.
"""

from __future__ import annotations

import heapq
import math
import random
import statistics
from collections import deque
from dataclasses import dataclass

import pytest

from batcher.durations import DurationModel
from batcher.pollpolicy import AdaptivePolls
from batcher.pressure import BudgetPressure
from batcher.ratecontrol import AdaptiveRate
from batcher.scheduler import SLOTS_FIRST

from .support import Bucket


@dataclass
class Outcome:
    makespan: float
    bound: float
    requests_per_job: float
    throttled: int
    requests: int
    median_delay_share: float


def simulate(durations: list[float], *, limit: float, concurrency: int, seed: int = 0) -> Outcome:
    n = len(durations)
    rate = AdaptiveRate(50 / 60, rng=random.Random(seed), backoff_base=2.0, backoff_cap=120.0)
    model = DurationModel()
    budget = BudgetPressure()
    polls = AdaptivePolls(model, guess=7.0, pressure=lambda: budget.value)
    server = Bucket(limit, burst=max(1, int(limit * 10)))
    pending = deque(range(n))
    heap: list[tuple[float, int, int, str]] = []
    seq = 0
    submitted: dict[int, float] = {}
    unfinished: dict[int, float] = {}
    count: dict[int, int] = {}
    delays: list[float] = []
    now, in_flight, finished, requests, throttled = 0.0, 0, 0, 0, 0
    while finished < n:
        due = bool(heap) and heap[0][0] <= now
        can_submit = bool(pending) and in_flight < concurrency
        slots_full = bool(pending) and in_flight >= concurrency
        if not due and not can_submit:
            budget.observe(now, waiting=False, rate=rate.rate, slots_full=slots_full)
            now = heap[0][0]
            continue
        wait = rate.wait_time(now)
        budget.observe(now, waiting=can_submit and wait > 0, rate=rate.rate, slots_full=slots_full)
        if wait > 0:
            now += max(wait, 1e-6)  # a wait below float resolution at this "now" would stall
            continue
        rate.acquire(now)
        requests += 1
        if due and not (can_submit and budget.slots > SLOTS_FIRST):
            _, _, job, action = heapq.heappop(heap)
        else:
            job, action = pending.popleft(), "submit"
            in_flight += 1
        ok, reset = server.allow(now)
        if not ok:
            throttled += 1
            resume = rate.on_throttled(now, reset, now)
            seq += 1
            heapq.heappush(heap, (resume, seq, job, action))
            continue
        rate.on_success(now)
        seq += 1
        if action == "submit":
            submitted[job], unfinished[job], count[job] = now, 0.0, 0
            heapq.heappush(heap, (now + polls.first_delay("wf"), seq, job, "poll"))
            continue
        elapsed = now - submitted[job]
        count[job] += 1
        if count[job] == 1:
            polls.first_polled("wf", elapsed >= durations[job])
        if elapsed >= durations[job]:
            model.observe("wf", unfinished[job], elapsed)
            delays.append((elapsed - durations[job]) / durations[job])
            finished += 1
            in_flight -= 1
        else:
            unfinished[job] = elapsed
            heapq.heappush(heap, (now + polls.next_delay("wf", elapsed, count[job]), seq, job, "poll"))
    mean = statistics.fmean(durations)
    bound = max(2 * n / limit, n * mean / concurrency) + mean
    return Outcome(now, bound, requests / n, throttled, requests, statistics.median(delays))


def tail_bound(durations: list[float], *, limit: float, concurrency: int) -> float:
    """The issue's bound with the tail no client can avoid: it adds the 95th-percentile job
    instead of the mean one (with 10-120 s jobs, one of the last jobs submitted is likely a long
    one, and every client has to wait for it; the benchmark reports the issue's bound as is)."""
    n = len(durations)
    p95 = sorted(durations)[int(0.95 * n)]
    return max(2 * n / limit, n * statistics.fmean(durations) / concurrency) + p95


def lognormal(n: int, median: float, sigma: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [median * math.exp(rng.gauss(0.0, sigma)) for _ in range(n)]


def bimodal(n: int, short: float, long: float, share: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [(long if rng.random() < share else short) * math.exp(rng.gauss(0, 0.15)) for _ in range(n)]


RATE_BOUND = [
    ("Pro plan 50/min, 45 s jobs", lognormal(400, 45.0, 0.3, 1), 50 / 60),
    ("Pro plan, wide 10-120 s jobs", lognormal(1000, 35.0, 0.8, 2), 50 / 60),
    ("Pro plan, bimodal 15 s / 120 s", bimodal(400, 15.0, 120.0, 0.25, 3), 50 / 60),
    ("free plan 5/min, 45 s jobs", lognormal(120, 45.0, 0.3, 4), 5 / 60),
]


@pytest.mark.parametrize(("name", "durations", "limit"), RATE_BOUND, ids=[r[0] for r in RATE_BOUND])
def test_rate_bound_runs_approach_the_bound_at_real_scale(
    name: str, durations: list[float], limit: float
) -> None:
    out = simulate(durations, limit=limit, concurrency=200)
    assert out.makespan <= 1.15 * tail_bound(durations, limit=limit, concurrency=200), (name, out)
    assert out.requests_per_job <= 2.3, (name, out)
    assert out.throttled <= 10 + 0.02 * out.requests, (name, out)


SLOT_BOUND = [
    ("4 slots, 60 s jobs", lognormal(80, 60.0, 0.3, 5), 2.0, 4),
    ("4 slots, wide 10-120 s", lognormal(80, 40.0, 0.8, 6), 2.0, 4),
    ("4 slots, bimodal 15 s / 120 s", bimodal(80, 15.0, 120.0, 0.25, 7), 2.0, 4),
    # 2 s and 60 s jobs need a poll every 0.2 s of a short job's life and some 35 polls per long
    # one to be noticed within 10%: 120 a minute is binding for that, 300 a minute is not.
    ("4 slots, bimodal 2 s / 60 s", bimodal(80, 2.0, 60.0, 0.3, 8), 5.0, 4),
    ("8 slots, bimodal 2 s / 60 s", bimodal(80, 2.0, 60.0, 0.3, 9), 5.0, 8),
]


@pytest.mark.parametrize(("name", "durations", "limit", "slots"), SLOT_BOUND, ids=[r[0] for r in SLOT_BOUND])
def test_slot_bound_runs_notice_jobs_within_a_tenth_of_their_duration(
    name: str, durations: list[float], limit: float, slots: int
) -> None:
    """Budget not binding (a custom plan's 120 or 300 a minute): jobs are noticed within ~10%."""
    out = simulate(durations, limit=limit, concurrency=slots)
    bound = tail_bound(durations, limit=limit, concurrency=slots)
    assert out.makespan <= 1.15 * bound, (name, out)
    assert out.median_delay_share <= 0.10, (name, out)


@pytest.mark.parametrize("seed", range(6))
def test_a_run_contested_from_its_start_still_learns_its_durations(seed: int) -> None:
    """Under pressure, learning polls come at twice a job's age, and a due poll then waits its
    turn for the budget, so brackets come out 2.1-2.4x wide. When only brackets within 2.05x
    counted, a run contested from its first request learned nothing for minutes and paid
    2.15-2.20 requests a job on 30 s jobs (2.11-2.13 with them counted)."""
    out = simulate(lognormal(240, 30.0, 0.25, seed), limit=0.4, concurrency=64, seed=seed)
    assert out.requests_per_job <= 2.14, out


def test_a_slow_first_wave_does_not_hide_short_jobs() -> None:
    """Jobs done by their first poll give no tight bracket. When the first jobs are the long ones
    (a cold start: 2 s and 60 s jobs, four 60 s ones first), the first poll must still come
    down to the short jobs (the tracked first poll and the "done by" bounds), not stay near
    60 s. 120 a minute binds here, so the delay target is looser than 10%. Before the first
    poll was tracked: 1.9-3.1x the bound, jobs noticed 8-29 durations late. A single seed's
    delay moves by +-0.05 with a one-bit change in any delay (the loop is chaotic), so the
    target is on the mean of twelve seeds (0.21 today), with a looser cap on each (0.4; 0.28
    at most today)."""
    delays = []
    for seed in range(12):
        mixed = bimodal(80, 2.0, 60.0, 0.3, 100 + seed)
        first = [d for d in mixed if d > 10.0][:4]
        durations = first + [d for d in mixed if d not in first]
        out = simulate(durations, limit=2.0, concurrency=4, seed=seed)
        assert out.makespan <= 1.15 * tail_bound(durations, limit=2.0, concurrency=4), (seed, out)
        assert out.median_delay_share <= 0.4, (seed, out)
        delays.append(out.median_delay_share)
    assert statistics.fmean(delays) <= 0.25, delays


@pytest.mark.parametrize("seed", range(6))
def test_when_slots_and_budget_both_bind_a_freed_slot_is_refilled_before_due_polls(seed: int) -> None:
    """4 slots of 15 s / 90 s jobs at 40 a minute: the polls that notice jobs within ~10% use
    most of the budget, so a submission into a freed slot would queue behind them, idling the
    slot a token or more. Polls first: 1.10-1.15x the tail bound; a freed slot first: 1.04-1.09x."""
    durations = bimodal(120, 15.0, 90.0, 0.2, 20 + seed)
    out = simulate(durations, limit=40 / 60, concurrency=4, seed=seed)
    assert out.makespan <= 1.10 * tail_bound(durations, limit=40 / 60, concurrency=4), out


def test_when_polls_alone_would_exhaust_the_budget_they_thin_out_instead_of_throttling() -> None:
    """Pro plan, 4 slots of wide jobs: dense polling would need more than 50 a minute."""
    durations = lognormal(80, 40.0, 0.8, 6)
    out = simulate(durations, limit=50 / 60, concurrency=4)
    assert out.makespan <= 1.25 * tail_bound(durations, limit=50 / 60, concurrency=4), out
    assert out.throttled <= 10 + 0.02 * out.requests, out


def test_the_simulation_is_a_pure_function_of_the_seed() -> None:
    durations = lognormal(100, 30.0, 0.5, 9)
    assert simulate(durations, limit=1.0, concurrency=50, seed=3) == simulate(
        durations, limit=1.0, concurrency=50, seed=3
    )
