"""Rate control: when may the next request (submit or poll, one shared budget) go out?

A small strategy object (after aiometer's meters and Netflix concurrency-limits' ``AIMDLimit``):
the scheduler asks :meth:`RateController.wait_time`, calls :meth:`acquire` as it sends, and
reports each answer. Time is an argument, never read here, so policies are testable as tables
and runnable under a simulated clock.
"""

from __future__ import annotations

import random
from typing import Protocol

from .backoff import full_jitter


class RateController(Protocol):
    """The run's request budget."""

    def wait_time(self, now: float) -> float:
        """Seconds until the next request may be sent (0: now)."""
        ...

    def acquire(self, now: float) -> None:
        """A request is being sent now."""
        ...

    def on_success(self, now: float) -> None:
        """An answer that was not a 429 arrived."""
        ...

    def on_throttled(self, now: float, retry_after: float | None) -> float:
        """A 429 arrived; ``retry_after`` is what the server said, if anything. Returns the
        time until which the whole run pauses."""
        ...

    @property
    def rate(self) -> float:
        """The current target, in requests per second."""
        ...


class AdaptiveRate:
    """A token bucket whose rate adapts by AIMD, pausing the whole run after a 429.

    - Below a known ``ceiling`` (the plan's documented limit) it never goes faster.
    - A 429 halves the rate (multiplicative decrease) and pauses every request until the server's
      reset time, or for an exponentially growing, fully jittered wait when it gave none.
    - Each success adds ``increase / rate`` requests/s, about ``increase`` per second of traffic
      (additive increase), so an unknown limit is found from below and then probed gently.
    """

    def __init__(
        self,
        initial: float,
        *,
        ceiling: float | None = None,
        floor: float = 1 / 120,
        burst: int = 1,
        increase: float | None = None,
        decrease: float = 0.5,
        backoff_base: float = 2.0,
        backoff_cap: float = 120.0,
        max_wait: float = 900.0,
        rng: random.Random | None = None,
    ) -> None:
        self._rate = min(initial, ceiling) if ceiling else initial
        self._ceiling = ceiling
        self._floor = floor
        self._burst = float(burst)
        self._tokens = float(burst)
        self._stamp: float | None = None
        self._increase = increase if increase is not None else max(self._rate * 0.02, floor)
        self._decrease = decrease
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_wait = max_wait
        self._rng = rng or random.Random()
        self.paused_until = 0.0
        self.throttles = 0
        self._streak = 0  # consecutive 429s, for the no-header backoff

    @property
    def rate(self) -> float:
        return self._rate

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
            return
        elapsed = max(0.0, now - self._stamp)
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        self._stamp = now

    def wait_time(self, now: float) -> float:
        self._refill(now)
        pause = max(0.0, self.paused_until - now)
        if self._tokens >= 1.0:
            return pause
        return max(pause, (1.0 - self._tokens) / self._rate)

    def acquire(self, now: float) -> None:
        self._refill(now)
        self._tokens -= 1.0

    def on_success(self, now: float) -> None:
        self._streak = 0
        self._rate += self._increase / self._rate
        if self._ceiling:
            self._rate = min(self._rate, self._ceiling)

    def on_throttled(self, now: float, retry_after: float | None) -> float:
        self.throttles += 1
        self._streak += 1
        self._rate = max(self._floor, self._rate * self._decrease)
        if retry_after is None:
            wait = full_jitter(self._streak, base=self._backoff_base, cap=self._backoff_cap, rng=self._rng)
        else:
            wait = min(retry_after, self._max_wait)
        self.paused_until = max(self.paused_until, now + wait)
        self._tokens = min(self._tokens, 0.0)
        return self.paused_until
