"""The run's strategies, built from its settings: the rate controller (:mod:`batcher.ratecontrol`)
and the poll policy (:mod:`batcher.pollpolicy`). Both modules stay pure; this is where settings
choose and configure them (a test or a benchmark passes its own instead)."""

from __future__ import annotations

import random
from collections.abc import Callable

from .config import Settings
from .durations import DurationModel
from .pollpolicy import AdaptivePolls, FixedInterval, PollPolicy
from .ratecontrol import AdaptiveRate, RateController


def make_rate(settings: Settings, rng: random.Random) -> RateController:
    """Paced at ``rate.requests_per_minute`` if known, else learned from ``initial_per_minute``."""
    r = settings.rate
    known = r.requests_per_minute / 60.0 if r.requests_per_minute else None
    return AdaptiveRate(
        known or r.initial_per_minute / 60.0,
        ceiling=known,
        burst=r.burst,
        backoff_base=settings.retry.base_delay,
        backoff_cap=settings.retry.max_delay,
        max_wait=r.max_wait,
        rng=rng,
    )


def make_polls(settings: Settings, durations: DurationModel, pressure: Callable[[], float]) -> PollPolicy:
    """``poll.policy``: fixed intervals, or polls timed from learned durations and budget pressure."""
    p = settings.poll
    if p.policy == "fixed":
        return FixedInterval(p.interval, p.first_delay)
    return AdaptivePolls(durations, guess=p.first_delay or p.interval, pressure=pressure)
