"""Budget pressure: how contested the request budget is (pure; time is an argument).

The poll policy slides between dense polls (a finished job is noticed quickly) and sparse ones
(each request a poll does not take is a submission made sooner) by this one number. It is the
share of recent *time* during which a submission was ready and waiting for budget:

- in a rate-bound run a submission is always ready and the budget is all that holds it back, so
  the share is close to 1;
- in a run bound by concurrency (or the provider's workers) with budget to spare, a submission
  is ready only as a slot frees, and waits at most one request interval: ``C / (R·T)`` of the
  time for C slots, R requests/s and jobs of T seconds, a few percent. A dead zone maps that to
  0, so such runs poll densely.

An earlier version counted the share of *requests* sent while a submission waited. It read about
1/7 in slot-bound runs (the submission that follows the poll that noticed a job finishing always
waits for a token), and that feedback made 4-slot runs notice jobs anywhere from 4% to 23% of
their duration late from one run to the next.

The memory is ``horizon`` request intervals at the current rate: scale-free, like every policy.
The averages are divided by the weight they have gathered so far (as Adam's moment estimates are),
so a run reads as contested from its first seconds instead of from about one horizon in: starting
the average at 0 made the first jobs of a rate-bound run poll as if requests were to spare.
"""

from __future__ import annotations

import math


class BudgetPressure:
    """0: requests to spare (or slots are what is scarce); 1: every request a poll takes delays
    a submission."""

    def __init__(self, *, horizon: float = 20.0, dead_zone: float = 0.2) -> None:
        self._horizon = horizon
        self._dead_zone = dead_zone
        self._budget = 0.0
        self._slots = 0.0
        #: The weight the averages have gathered so far (1 - e^(-t/tau)): dividing by it makes
        #: the averages unbiased from the start instead of starting from 0 (as Adam's moments).
        self._mass = 0.0
        self._state = (False, False)
        self._since: float | None = None

    def observe(self, now: float, *, waiting: bool, rate: float, slots_full: bool = False) -> None:
        """From ``now`` on, a submission is (or is not) ``waiting`` for budget, and work is (or
        is not) waiting for a concurrency slot (``slots_full``); ``rate`` is the current request
        budget (requests/s)."""
        if self._since is not None and now > self._since:
            tau = self._horizon / max(rate, 1e-9)
            weight = 1.0 - math.exp(-(now - self._since) / tau)
            budget, slots = self._state
            self._budget += weight * (float(budget) - self._budget)
            self._slots += weight * (float(slots) - self._slots)
            self._mass += weight * (1.0 - self._mass)
        self._since = now if self._since is None else max(self._since, now)
        self._state = (waiting, slots_full)

    @property
    def share(self) -> float:
        """The raw share of recent time a submission spent waiting for budget."""
        return self._budget / self._mass if self._mass > 0 else 0.0

    @property
    def slots(self) -> float:
        """The share of recent time work spent waiting for a concurrency slot."""
        return self._slots / self._mass if self._mass > 0 else 0.0

    @property
    def value(self) -> float:
        """The budget share past the dead zone, scaled to [0, 1], and discounted by the time
        slots were scarce: a poll costs a request, but noticing a job late costs its slot."""
        budget = min(1.0, max(0.0, (self.share - self._dead_zone) / (1.0 - self._dead_zone)))
        return budget * (1.0 - self.slots)
