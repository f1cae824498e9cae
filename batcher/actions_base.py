"""What every answer handler of :mod:`batcher.actions` shares: the run's parts it touches, the
ledger line, the end of a job, the backoff, a 429. What each answer means is in
:mod:`batcher.actions_submit` and :mod:`batcher.actions_poll`.
"""

from __future__ import annotations

import random
from typing import Any

from .api import SegmindAPI
from .backoff import full_jitter
from .clock import Clock
from .collect import DownloadTask
from .config import Settings
from .durations import DurationModel
from .errors import InsufficientCredits, RateLimited, RemoteError
from .handoff import Handoff
from .ledger import Ledger
from .pollpolicy import PollPolicy
from .scheduler import Scheduler
from .stats import RunStats
from .work import Action, Job
from .workflows import WorkflowRegistry


class ActionsBase:
    """The run's parts an answer touches, and the steps every answer shares."""

    def __init__(
        self,
        *,
        api: SegmindAPI,
        ledger: Ledger,
        scheduler: Scheduler,
        polls: PollPolicy,
        durations: DurationModel,
        settings: Settings,
        registry: WorkflowRegistry,
        stats: RunStats,
        downloads: Handoff[DownloadTask],
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.api = api
        self.ledger = ledger
        self.sched = scheduler
        self.polls = polls
        self.durations = durations
        self.settings = settings
        self.registry = registry
        self.stats = stats
        self.downloads = downloads
        self.clock = clock
        self.rng = rng

    def dispatched(self, job: Job, action: Action) -> None:
        """Count a request the moment it is dispatched (the budget guard reads this)."""
        self.stats.requests[action] += 1
        if action == "submit":
            self.stats.committed_usd += job.price or 0.0  # until an answer proves it was not billed

    # --- helpers ---------------------------------------------------------------------

    def _event(self, job: Job, status: str, **fields: Any) -> None:
        self.ledger.event(job.job_id, status, self.clock.wall(), **fields)

    def _end(self, job: Job, outcome: str) -> None:
        self.stats.outcomes[outcome] += 1
        self.sched.finish(job)

    def _backoff(self, job: Job) -> float:
        r = self.settings.retry
        return full_jitter(job.errors, base=r.base_delay, cap=r.max_delay, rng=self.rng)

    def _throttled(self, job: Job, exc: RateLimited, action: Action) -> None:
        self.stats.throttled += 1
        now = self.clock.monotonic()
        resume = self.sched.rate.on_throttled(now, exc.retry_after, job.sent_at)
        # Spread the retries after the pause a little, so they do not all land at once.
        self.sched.schedule(job, action, resume + self.rng.uniform(0.0, 0.001))


def refusal_reason(exc: RemoteError) -> str:
    """Why a 406 stops submissions. The provider answers 406 for insufficient credits, a team
    spend limit, or a wrong Content-Type: "insufficient credits" only when it says so (an
    operator told so tops up an account that a spend limit, or a bug, is holding back)."""
    said = str(exc)
    if (isinstance(exc, InsufficientCredits) and exc.balance is not None) or "credit" in said.lower():
        return f"insufficient credits ({said})"
    return f"the provider refuses new jobs ({said})"
