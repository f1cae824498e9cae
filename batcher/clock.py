"""Time, passed in (after trio's ``Clock`` ABC).

Everything that waits or reads the time takes a :class:`Clock`. Production uses
:class:`SystemClock`. Tests and benchmarks share one :class:`ScaledClock` between the engine and the
emulator, so a 7-second poll interval or a 30-second ``Retry-After`` passes in milliseconds while
both sides still agree on what time it is (including the wall-clock times in rate-limit headers).
"""

from __future__ import annotations

import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """What batcher needs of time."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; only differences mean anything."""
        ...

    def wall(self) -> float:
        """The current POSIX time (UTC seconds), for ledger timestamps and HTTP dates."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...

    def loop_delay(self, seconds: float) -> float | None:
        """Event-loop seconds until ``seconds`` of this clock's time have passed, for a timer
        (None: no timer can tell, the clock moves only when told)."""
        ...


class SystemClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds))

    def loop_delay(self, seconds: float) -> float | None:
        return max(0.0, seconds)


class ScaledClock:
    """A clock that runs ``speed`` times faster than real time, from the moment it is made.

    Its wall time starts at the real wall time and then advances ``speed`` times faster, so HTTP
    dates and reset timestamps computed by one side and read by the other stay consistent.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._mono0 = time.monotonic()
        self._wall0 = time.time()

    def monotonic(self) -> float:
        return (time.monotonic() - self._mono0) * self.speed

    def wall(self) -> float:
        return self._wall0 + self.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(max(0.0, seconds) / self.speed)

    def loop_delay(self, seconds: float) -> float | None:
        return max(0.0, seconds) / self.speed
