"""Everything one emulator instance remembers, and the introspection numbers tests assert on."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from typing import Any

from aiohttp import web

from ..clock import Clock
from ..errors import ConfigError
from .config import EmulatorConfig
from .faults import RateLimiter
from .jobs import Job, JobStore
from .persist import StateDir
from .signing import UrlSigner


class EmulatorState:
    """The job store, the rate limiter, the request sequence and the counters of one emulator.

    Tests reach it as ``running.state`` to look inside; :meth:`snapshot` is what
    ``GET /_emulator/stats`` answers. With ``config.state_dir`` set, the store starts with every
    job an earlier emulator on that folder accepted, and writes through to it until :meth:`close`
    (see :mod:`batcher.emulator.persist`).
    """

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.store = JobStore(config)
        #: The state folder, when the emulator remembers its requests across restarts.
        self.saved: StateDir | None = None
        #: Jobs taken over from an earlier emulator on the same state folder.
        self.restored = 0
        if config.state_dir is not None:
            saved = StateDir.open(config.state_dir)
            try:
                jobs = saved.load(clock)
            except BaseException:
                saved.close()
                raise
            self.store.restore(jobs)
            self.saved, self.restored = saved, len(jobs)
        self.limiter = RateLimiter(config)
        #: The output file host's own budget (``output_rate_limit``), shared by every client.
        self.output_limiter = RateLimiter(config, output=True)
        #: Signs output URLs when they lapse (``output_url_ttl``).
        self.url_signer = UrlSigner()
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
        if config.state_dir != self.config.state_dir:
            raise ConfigError(
                "cannot change while serving", key="emulator.state_dir", fix="start a new emulator"
            )
        self.config = config
        changed = self.store.reconfigure(config, self.clock.monotonic())
        if self.saved is not None and changed:
            self.saved.record_schedules(changed)
        self.limiter = RateLimiter(config)
        self.output_limiter = RateLimiter(config, output=True)
        return config

    async def remember(self, job: Job) -> None:
        """Make an accepted job durable (a no-op without a state folder). Raises OSError."""
        if self.saved is not None:
            await self.saved.record_job(job)

    def close(self) -> None:
        """Release the state folder, if any (the emulator stops writing through). Idempotent."""
        if self.saved is not None:
            self.saved.close()

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
            # Of the submissions, those an earlier emulator on the same state_dir accepted.
            "restored": self.restored,
            "inputs_submitted_more_than_once": sum(1 for c in per_input.values() if c > 1),
            "rate_limited": self.events["rate_limited"],
            "server_errors": self.events["server_error"],
            # Submits accepted but answered 502, and connections closed without an answer.
            "lost_responses": self.events["lost"],
            # Valid submits refused with a 200 saying FAILED and no poll_url (nothing queued).
            "failed_submits": self.events["failed_submit"],
            # Polls of a completed job answered with its output string cut short.
            "garbled_outputs": self.events["garbled_output"],
            "dropped_connections": self.events["dropped"],
            "dropped_after_accept": self.events["dropped_after_accept"],
            "slow_responses": self.events["slow"],
            "jobs": store.counts(now),
            "charged_usd": round(store.charged, 6),
            "credits_remaining": None if balance is None else round(balance, 6),
            "output_downloads": self.events["output_download"],
            "output_downloads_with_credentials": self.events["output_download_with_credentials"],
            # Output downloads the file host answered 429 (``output_rate_limit``).
            "output_rate_limited": self.events["output_rate_limited"],
            # Output downloads answered 403: a signed URL past its end, or not signed by this
            # emulator (``output_url_ttl``).
            "output_urls_refused": self.events["output_url_refused"],
        }


#: Where an app keeps its :class:`EmulatorState`.
STATE: web.AppKey[EmulatorState] = web.AppKey("state", EmulatorState)
