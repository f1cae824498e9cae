"""Everything one emulator instance remembers, and the introspection numbers tests assert on."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

from aiohttp import web

from ..clock import Clock
from .config import EmulatorConfig
from .faults import RateLimiter
from .jobs import JobStore


class EmulatorState:
    """The job store, the rate limiter, the request sequence and the counters of one emulator.

    Tests reach it as ``running.state`` to look inside; :meth:`snapshot` is what
    ``GET /_emulator/stats`` answers.
    """

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.store = JobStore(config)
        self.limiter = RateLimiter(config)
        self._sequence = itertools.count()
        #: Answers sent, by (request kind, status or "dropped").
        self.requests: Counter[tuple[str, str]] = Counter()
        #: Counters of notable events (429s, injected faults, downloads...).
        self.events: Counter[str] = Counter()

    def reconfigure(self, **changes: Any) -> EmulatorConfig:
        """Change settings while serving (e.g. ``slow_rate=0.0`` after a client was killed).

        Checked like any config. Request faults and the budget follow at once (budgets start
        full again); unfinished jobs take new draws (see :meth:`JobStore.reconfigure`).
        """
        config = dataclasses.replace(self.config, **changes)
        self.config = config
        self.store.reconfigure(config, self.clock.monotonic())
        self.limiter = RateLimiter(config)
        return config

    def next_sequence(self) -> int:
        """The number of the next API request (0, 1, 2...): what request faults are drawn from."""
        return next(self._sequence)

    def record(self, kind: str, status: int | str) -> None:
        """Count one answer (or a dropped connection) of a request of ``kind``."""
        self.requests[(kind, str(status))] += 1

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON-ready data (see the keys below; all numbers)."""
        now = self.clock.monotonic()
        store = self.store
        store.settle(now)
        by_kind: dict[str, dict[str, int]] = {}
        for (kind, status), count in sorted(self.requests.items()):
            by_kind.setdefault(kind, {})[status] = count
        per_input = store.submissions_per_input
        balance = store.balance(now)
        return {
            # Answers by request kind ("submit", "poll", "output", "asset", "other") and status.
            "requests": by_kind,
            "api_requests": sum(c for (k, _), c in self.requests.items() if k in ("submit", "poll")),
            # Jobs accepted (billed when they complete), in total and per canonical input.
            "submissions": len(store),
            "submissions_per_input": per_input,
            "inputs_submitted_more_than_once": sum(1 for c in per_input.values() if c > 1),
            "rate_limited": self.events["rate_limited"],
            "server_errors": self.events["server_error"],
            # Submits accepted but answered 502, and connections closed without an answer.
            "lost_responses": self.events["lost"],
            "dropped_connections": self.events["dropped"],
            "dropped_after_accept": self.events["dropped_after_accept"],
            "slow_responses": self.events["slow"],
            "jobs": store.counts(now),
            "charged_usd": round(store.charged, 6),
            "credits_remaining": None if balance is None else round(balance, 6),
            "output_downloads": self.events["output_download"],
            "output_downloads_with_credentials": self.events["output_download_with_credentials"],
        }


#: Where an app keeps its :class:`EmulatorState`.
STATE: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
