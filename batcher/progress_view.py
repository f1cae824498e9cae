"""What a running batch's progress is, and how it reads: a :class:`Snapshot` of the run's
counters, the recent rates a :class:`Window` of snapshots gives, the ETA, and the three ways a
snapshot is written out (:func:`format_plain_line`, :func:`snapshot_json`, :func:`rich_panel`).

Pure functions of snapshots: rates see only the snapshots' own elapsed times, so they are
tested as tables of numbers. Showing them every few seconds is :mod:`batcher.progress`'s.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from .ledger import utc_iso
from .stats import RunStats
from .status_text import human_duration, money, plural

#: Rates (jobs/s, requests/s, 429s) are measured over this many recent seconds.
WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Snapshot:
    """The run's counters at one moment (this run only; ``skipped`` were finished by earlier runs)."""

    elapsed: float
    total: int | None = None  # manifest rows, when the caller knows them
    by_state: Mapping[str, int] = field(default_factory=dict)
    skipped: int = 0
    invalid: int = 0
    in_flight: int = 0
    submitted: int = 0
    spend_usd: float = 0.0
    credits: float | None = None
    submit_requests: int = 0
    poll_requests: int = 0
    throttled: int = 0
    rate: float | None = None  # the rate controller's target, requests per second
    wall: float | None = None  # when it was taken: the run's wall clock (POSIX seconds)

    @property
    def finished(self) -> int:
        """Jobs this run brought to a final state."""
        return sum(self.by_state.values())

    @property
    def done(self) -> int:
        """Manifest rows settled: finished now, finished earlier, or refused as invalid."""
        return self.finished + self.skipped + self.invalid

    @property
    def requests(self) -> int:
        return self.submit_requests + self.poll_requests


def snapshot_from(
    stats: RunStats,
    *,
    now: float,
    total: int | None = None,
    in_flight: int | None = None,
    rate: float | None = None,
    wall: float | None = None,
) -> Snapshot:
    """A snapshot of ``stats`` at ``now`` (the run's clock.monotonic()); ``wall`` is the same
    moment on its wall clock (clock.wall()), the ``ts`` of a JSON update.

    ``in_flight`` and ``rate`` are not kept in RunStats while a run is going (the scheduler knows
    them: ``sched.in_flight`` and ``sched.rate.rate``); pass them when you have them.
    """
    return Snapshot(
        elapsed=max(0.0, now - stats.started),
        total=total,
        by_state=dict(stats.outcomes),
        skipped=stats.skipped,
        invalid=stats.invalid,
        in_flight=stats.in_flight if in_flight is None else in_flight,
        submitted=stats.submitted,
        spend_usd=stats.spend_usd,
        credits=stats.credits,
        submit_requests=stats.requests["submit"],
        poll_requests=stats.requests["poll"],
        throttled=stats.throttled,
        rate=rate,
        wall=wall,
    )


# --- rates and ETA -----------------------------------------------------------------------


@dataclass(frozen=True)
class Rates:
    """What the last :data:`WINDOW_SECONDS` looked like."""

    jobs_per_s: float | None  # jobs finished per second (None: too early to say)
    requests_per_s: float | None
    throttled_recent: int


class Window:
    """Recent rates from a stream of snapshots (only their ``elapsed`` is used as time)."""

    def __init__(self, seconds: float = WINDOW_SECONDS) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, int, int, int]] = deque()

    def observe(self, snap: Snapshot) -> Rates:
        samples = self._samples
        samples.append((snap.elapsed, snap.finished, snap.requests, snap.throttled))
        while len(samples) > 2 and snap.elapsed - samples[1][0] >= self.seconds:
            samples.popleft()  # keep one sample at least a window old, for a full-window rate
        t0, finished0, requests0, throttled0 = samples[0]
        span = snap.elapsed - t0
        if span <= 0:
            # One sample: the run's average so far is the best guess.
            if snap.elapsed <= 0:
                return Rates(None, None, snap.throttled)
            return Rates(snap.finished / snap.elapsed, snap.requests / snap.elapsed, snap.throttled)
        return Rates(
            (snap.finished - finished0) / span,
            (snap.requests - requests0) / span,
            snap.throttled - throttled0,
        )


def eta_seconds(snap: Snapshot, jobs_per_s: float | None) -> float | None:
    """Seconds until every known job is settled at the current pace; None when it cannot be told."""
    if snap.total is None:
        return None
    remaining = max(0, snap.total - snap.done)
    if remaining == 0:
        return 0.0
    if not jobs_per_s or jobs_per_s <= 0:
        return None
    return remaining / jobs_per_s


def _per_minute(per_s: float | None) -> str:
    return "-" if per_s is None else f"{per_s * 60:,.1f}/min"


def _states(snap: Snapshot) -> str:
    parts = [f"{name} {n:,}" for name, n in sorted(snap.by_state.items(), key=lambda kv: (-kv[1], kv[0]))]
    if snap.skipped:
        parts.append(f"done earlier {snap.skipped:,}")
    if snap.invalid:
        parts.append(f"invalid {snap.invalid:,}")
    return ", ".join(parts) if parts else "none finished yet"


def _progress(snap: Snapshot) -> str:
    if snap.total:
        return f"{snap.done:,}/{snap.total:,} done ({100 * min(snap.done, snap.total) / snap.total:.1f}%)"
    return f"{snap.done:,} done"


def format_plain_line(snap: Snapshot, rates: Rates | None = None) -> str:
    """One line, ASCII separators, no control characters: for logs, cron mail and CI."""
    rates = rates or Window().observe(snap)
    eta = eta_seconds(snap, rates.jobs_per_s)
    parts = [
        f"batcher: {human_duration(snap.elapsed)}",
        _progress(snap),
        _states(snap),
        f"{snap.in_flight:,} in flight",
        f"{_per_minute(rates.jobs_per_s)} jobs",
    ]
    if snap.total is not None:
        parts.append(f"ETA {human_duration(eta)}")
    spend = f"spent {money(snap.spend_usd)} on {plural(snap.submitted, 'submission')}"
    if snap.credits is not None:
        spend += f", credits left {money(snap.credits)}"
    parts.append(spend)
    req = f"{rates.requests_per_s:.2f} req/s" if rates.requests_per_s is not None else "- req/s"
    if snap.rate is not None:
        req += f" (target {snap.rate:.2f})"
    parts.append(req)
    parts.append(f"429s {rates.throttled_recent:,} recent, {snap.throttled:,} total")
    return " | ".join(parts)


def snapshot_json(snap: Snapshot, rates: Rates | None = None, *, final: bool = False) -> dict[str, Any]:
    """One update as JSON-able data (``--progress json``). It opens with the fields every
    ``--log-format json`` line has (``ts``, ``level``, ``event``), so a reader of stderr tells a
    progress update from a log line by ``event``; ``final`` marks the run's last numbers."""
    rates = rates or Window().observe(snap)
    eta = eta_seconds(snap, rates.jobs_per_s)
    return {
        "ts": None if snap.wall is None else utc_iso(snap.wall),
        "level": "info",
        "event": "progress",
        "message": format_plain_line(snap, rates),
        "final": final,
        "elapsed": round(snap.elapsed, 3),
        "total": snap.total,
        "done": snap.done,
        "by_state": dict(snap.by_state),
        "skipped": snap.skipped,
        "invalid": snap.invalid,
        "in_flight": snap.in_flight,
        "submitted": snap.submitted,
        "spend_usd": round(snap.spend_usd, 6),
        "credits": snap.credits,
        "requests": {"submit": snap.submit_requests, "poll": snap.poll_requests},
        "throttled": {"total": snap.throttled, "recent": rates.throttled_recent},
        "rate": {
            "target_per_s": snap.rate,
            "requests_per_s": None if rates.requests_per_s is None else round(rates.requests_per_s, 4),
            "jobs_per_s": None if rates.jobs_per_s is None else round(rates.jobs_per_s, 4),
        },
        "eta_seconds": None if eta is None else round(eta, 1),
    }


def rich_panel(snap: Snapshot, rates: Rates | None = None) -> RenderableType:
    """The live terminal panel for one snapshot."""
    rates = rates or Window().observe(snap)
    eta = eta_seconds(snap, rates.jobs_per_s)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold cyan", no_wrap=True)
    grid.add_column()
    if snap.total:
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=snap.total, completed=min(snap.done, snap.total), width=40), _progress(snap)
        )
        grid.add_row("Progress", bar)
    else:
        grid.add_row("Progress", _progress(snap))
    states = Text()
    colours = {"completed": "green", "failed": "red", "expired": "dark_orange", "download_failed": "yellow"}
    for i, (name, n) in enumerate(sorted(snap.by_state.items(), key=lambda kv: (-kv[1], kv[0]))):
        states.append(", " if i else "")
        states.append(f"{name} {n:,}", style=colours.get(name, "white"))
    if snap.skipped:
        states.append(f"{', ' if len(states) else ''}done earlier {snap.skipped:,}", style="dim")
    if snap.invalid:
        states.append(f"{', ' if len(states) else ''}invalid {snap.invalid:,}", style="magenta")
    grid.add_row("Jobs", states if len(states) else Text("none finished yet", style="dim"))
    pace = f"{snap.in_flight:,} in flight · {_per_minute(rates.jobs_per_s)} jobs"
    if snap.total is not None:
        pace += f" · ETA {human_duration(eta)}"
    grid.add_row("Pace", f"{pace} · elapsed {human_duration(snap.elapsed)}")
    spend = f"{money(snap.spend_usd)} for {plural(snap.submitted, 'submission')}"
    if snap.credits is not None:
        spend += f" · credits left {money(snap.credits)}"
    grid.add_row("Spend", spend)
    req = Text(f"submit {snap.submit_requests:,} · poll {snap.poll_requests:,}")
    if rates.requests_per_s is not None:
        req.append(f" · {rates.requests_per_s:.2f} req/s")
    if snap.rate is not None:
        req.append(f" (target {snap.rate:.2f})")
    req.append(" · 429s ")
    req.append(f"{rates.throttled_recent:,} recent", style="bold red" if rates.throttled_recent else "")
    req.append(f" / {snap.throttled:,} total")
    grid.add_row("Requests", req)
    return Panel(Group(grid), title="[bold]batcher run[/]", border_style="blue", expand=False)
