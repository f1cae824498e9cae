"""The live progress display: pure formatting, windowed rates and ETA, and the update loop on a fake clock."""

from __future__ import annotations

import io
import json
from collections import Counter

import anyio
import anyio.lowlevel
import pytest
from rich.console import Console

from batcher.progress import (
    Display,
    JsonDisplay,
    PlainDisplay,
    QuietDisplay,
    RichDisplay,
    make_display,
    resolve_mode,
    run_progress,
)
from batcher.progress_view import (
    Snapshot,
    Window,
    eta_seconds,
    format_plain_line,
    rich_panel,
    snapshot_from,
    snapshot_json,
)
from batcher.stats import RunStats


class FakeClock:
    """Time that moves only when someone sleeps: a loop of hours runs in microseconds."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_795_219_200.0 + self.now

    async def sleep(self, seconds: float) -> None:
        await anyio.lowlevel.checkpoint()  # a cancelled sleep takes no time
        self.slept.append(seconds)
        self.now += seconds

    def loop_delay(self, seconds: float) -> float | None:
        return None


def _snap(**changes: object) -> Snapshot:
    base: dict[str, object] = {
        "elapsed": 725.0,
        "total": 5000,
        "by_state": {"completed": 1200, "failed": 20},
        "skipped": 14,
        "invalid": 0,
        "in_flight": 16,
        "submitted": 1236,
        "spend_usd": 123.45,
        "credits": 876.0,
        "submit_requests": 1300,
        "poll_requests": 9000,
        "throttled": 17,
        "rate": 2.5,
    }
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_a_snapshot_copies_the_run_counters_and_takes_live_numbers_from_the_caller() -> None:
    stats = RunStats(started=100.0)
    stats.outcomes.update({"completed": 7, "failed": 1})
    stats.skipped, stats.invalid, stats.submitted, stats.spend_usd = 3, 2, 9, 0.9054
    stats.requests.update({"submit": 10, "poll": 40})
    stats.throttled, stats.credits = 4, 55.5
    snap = snapshot_from(stats, now=160.0, total=20, in_flight=5, rate=1.5)
    assert snap == Snapshot(
        elapsed=60.0,
        total=20,
        by_state={"completed": 7, "failed": 1},
        skipped=3,
        invalid=2,
        in_flight=5,
        submitted=9,
        spend_usd=0.9054,
        credits=55.5,
        submit_requests=10,
        poll_requests=40,
        throttled=4,
        rate=1.5,
    )
    assert (snap.finished, snap.done, snap.requests) == (8, 13, 50)
    stats.outcomes["completed"] += 1
    assert snap.by_state["completed"] == 7  # a snapshot does not move with the run


def test_the_plain_line_says_everything_on_one_printable_ascii_line() -> None:
    snap = _snap()
    line = format_plain_line(snap, Window().observe(snap))
    assert line == (
        "batcher: 12m 05s | 1,234/5,000 done (24.7%) | completed 1,200, failed 20, done earlier 14 | "
        "16 in flight | 101.0/min jobs | ETA 37m 18s | spent $123.45 on 1,236 submissions, "
        "credits left $876.00 | 14.21 req/s (target 2.50) | 429s 17 recent, 17 total"
    )
    assert line.isascii() and line.isprintable()


def test_the_plain_line_leaves_out_what_is_not_known() -> None:
    snap = _snap(total=None, credits=None, rate=None, by_state={}, skipped=0, elapsed=0.0)
    line = format_plain_line(snap)
    assert line == (
        "batcher: 0s | 0 done | none finished yet | 16 in flight | - jobs | "
        "spent $123.45 on 1,236 submissions | - req/s | 429s 17 recent, 17 total"
    )


@pytest.mark.parametrize(("n", "words"), [(1, "1 submission"), (2, "2 submissions")])
def test_the_plain_line_and_the_panel_count_one_submission_in_the_singular(n: int, words: str) -> None:
    snap = _snap(submitted=n, spend_usd=0.1 * n, credits=None)
    assert f"| spent ${0.1 * n:.2f} on {words} |" in format_plain_line(snap)
    console = Console(record=True, width=110, file=io.StringIO(), color_system=None)
    console.print(rich_panel(snap))
    assert f"${0.1 * n:.2f} for {words}" in console.export_text()


@pytest.mark.parametrize(
    ("total", "done", "per_s", "eta"),
    [
        (None, 10, 1.0, None),  # no total: no ETA
        (100, 100, None, 0.0),  # all settled
        (100, 120, 1.0, 0.0),  # more settled than the caller's total (appended rows)
        (100, 40, 0.5, 120.0),
        (100, 40, 0.0, None),  # nothing finishing: no honest ETA
        (100, 40, None, None),
    ],
)
def test_eta_is_remaining_jobs_over_the_recent_pace(
    total: int | None, done: int, per_s: float | None, eta: float | None
) -> None:
    snap = _snap(total=total, by_state={"completed": done}, skipped=0)
    assert eta_seconds(snap, per_s) == eta


def test_rates_follow_the_last_minute_not_the_whole_run() -> None:
    window = Window(60.0)
    # A slow first ten minutes (1 job/min), then 10 jobs/min with 429s.
    first = window.observe(_snap(elapsed=0.0, by_state={}, submit_requests=0, poll_requests=0, throttled=0))
    assert (first.jobs_per_s, first.requests_per_s) == (None, None)
    rates = None
    for minute in range(1, 11):
        rates = window.observe(
            _snap(
                elapsed=60.0 * minute,
                by_state={"completed": minute},
                poll_requests=5 * minute,
                submit_requests=0,
            )
        )
    assert rates is not None and rates.jobs_per_s == pytest.approx(1 / 60)
    for step in range(1, 7):
        rates = window.observe(
            _snap(
                elapsed=600.0 + 10 * step,
                by_state={"completed": 10 + 10 * step // 6},
                poll_requests=50 + 20 * step,
                submit_requests=0,
                throttled=17 + step,
            )
        )
    assert rates is not None
    assert rates.jobs_per_s == pytest.approx((20 - 10) / 60)
    assert rates.requests_per_s == pytest.approx(120 / 60)
    assert rates.throttled_recent == 6


def test_json_updates_are_plain_data() -> None:
    data = json.loads(json.dumps(snapshot_json(_snap())))
    assert data["done"] == 1234 and data["total"] == 5000
    assert data["requests"] == {"submit": 1300, "poll": 9000}
    assert data["throttled"] == {"total": 17, "recent": 17}
    assert data["rate"]["target_per_s"] == 2.5
    assert data["eta_seconds"] == pytest.approx(3766 / (1220 / 725), abs=0.1)


def test_the_rich_panel_shows_states_pace_spend_credits_and_429s() -> None:
    console = Console(record=True, width=110, file=io.StringIO(), color_system=None)
    console.print(rich_panel(_snap()))
    text = console.export_text()
    for part in (
        "batcher run",
        "1,234/5,000 done (24.7%)",
        "completed 1,200, failed 20, done earlier 14",
        "16 in flight · 101.0/min jobs · ETA 37m 18s · elapsed 12m 05s",
        "$123.45 for 1,236 submissions · credits left $876.00",
        "submit 1,300 · poll 9,000 · 14.21 req/s (target 2.50) · 429s 17 recent / 17 total",
    ):
        assert part in text, part


@pytest.mark.parametrize(
    ("mode", "tty", "resolved"),
    [("auto", False, "plain"), ("auto", True, "rich"), ("json", True, "json"), ("quiet", False, "quiet")],
)
def test_auto_mode_is_rich_on_a_terminal_and_plain_elsewhere(
    mode: str, tty: bool, resolved: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "xterm-256color")

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    assert resolve_mode(mode, Stream()) == resolved


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown progress mode 'fancy'"):
        resolve_mode("fancy", io.StringIO())


def test_displays_are_made_by_mode() -> None:
    out = io.StringIO()
    assert isinstance(make_display("plain", out), PlainDisplay)
    assert isinstance(make_display("json", out), JsonDisplay)
    assert isinstance(make_display("quiet", out), QuietDisplay)
    assert isinstance(make_display("auto", out), PlainDisplay)


async def _drive(
    mode: str,
    updates: int,
    interval: float | None = None,
    *,
    out: io.StringIO | None = None,
    display: Display | None = None,
) -> tuple[str, FakeClock]:
    """Run the progress loop on a fake clock until ``updates`` snapshots were read, then cancel it
    (with ``display``, a display made beforehand as ``batcher run`` makes it, writing to ``out``)."""
    clock = FakeClock()
    out = io.StringIO() if out is None else out
    stats = RunStats(started=clock.monotonic())
    reads = 0

    async with anyio.create_task_group() as tg:

        def read() -> Snapshot:
            nonlocal reads
            reads += 1
            stats.outcomes["completed"] += 2
            stats.requests["poll"] += 7
            if reads == updates:
                tg.cancel_scope.cancel()  # the batch is done
            now = clock.monotonic()
            return snapshot_from(stats, now=now, total=100, in_flight=4, rate=2.0, wall=clock.wall())

        tg.start_soon(
            lambda: run_progress(read, clock=clock, mode=mode, interval=interval, stream=out, display=display)
        )
    return out.getvalue(), clock


@pytest.mark.anyio
async def test_plain_mode_writes_one_line_per_interval_and_the_final_numbers() -> None:
    text, clock = await _drive("plain", updates=4)
    lines = text.splitlines()
    assert clock.slept == [30.0, 30.0, 30.0]  # the default for plain; no real time passed
    assert len(lines) == 5  # four updates, then the final numbers on the way out
    assert [line.split(" | ")[1] for line in lines] == [f"{n}/100 done ({n}.0%)" for n in (2, 4, 6, 8, 10)]
    assert all(line.isprintable() and "\x1b" not in line for line in lines)


@pytest.mark.parametrize("tty", [False, True], ids=["not-a-terminal", "terminal"])
@pytest.mark.parametrize(("kind", "every"), [(JsonDisplay, 10.0), (PlainDisplay, 30.0), (QuietDisplay, 60.0)])
@pytest.mark.anyio
async def test_a_display_made_before_the_run_updates_at_its_own_pace_on_a_terminal_or_not(
    kind: type[JsonDisplay | PlainDisplay | QuietDisplay], every: float, tty: bool
) -> None:
    """``batcher run`` makes its display first and hands it to the loop without a mode, so the
    loop took its pace from ``auto`` resolved against stderr: ``--log-format json`` in cron
    (not a terminal) wrote a progress event every 30 s, not the 10 s the README promises, and
    ``--progress plain`` or ``json`` on a terminal one every half second (the rich panel's
    pace), flooding the screen. Each display now has its own pace, whatever stderr is."""

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    out = Stream()
    _, clock = await _drive("auto", updates=4, out=out, display=kind(out))
    assert clock.slept == [every] * 3


@pytest.mark.anyio
async def test_json_mode_writes_one_object_a_line() -> None:
    text, _ = await _drive("json", updates=3, interval=5.0)
    objects = [json.loads(line) for line in text.splitlines()]
    assert [o["elapsed"] for o in objects] == [0.0, 5.0, 10.0, 10.0]
    assert objects[-1]["by_state"] == {"completed": 8}


@pytest.mark.anyio
async def test_json_updates_are_timestamped_progress_events_and_the_last_says_final() -> None:
    """With ``--log-format json`` the updates share stderr with the log's events, which carry
    ``ts``, ``level`` and ``event``; the updates had none of them (no time at all but ``elapsed``),
    so a log shipper could neither tell them apart by a field nor place them in time, and nothing
    marked the numbers the run ended with. Each update now opens as a log event does, with the
    wall time the run's clock gives, and the one shown on the way out is ``"final": true``."""
    text, _ = await _drive("json", updates=3, interval=5.0)
    objects = [json.loads(line) for line in text.splitlines()]
    assert [(o["level"], o["event"], o["final"]) for o in objects] == [
        ("info", "progress", False),
        ("info", "progress", False),
        ("info", "progress", False),
        ("info", "progress", True),
    ]
    assert [o["ts"] for o in objects] == [
        "2026-11-21T00:16:40.000Z",
        "2026-11-21T00:16:45.000Z",
        "2026-11-21T00:16:50.000Z",
        "2026-11-21T00:16:50.000Z",
    ]
    assert list(objects[0])[:5] == ["ts", "level", "event", "message", "final"]
    assert objects[-1]["message"].startswith("batcher: 10s | 8/100 done (8.0%) | completed 8 |")


@pytest.mark.anyio
async def test_quiet_mode_writes_nothing() -> None:
    text, clock = await _drive("quiet", updates=3)
    assert text == "" and len(clock.slept) == 2


def test_the_rich_display_redraws_in_place_and_leaves_the_final_panel() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=110, color_system=None)
    display = RichDisplay(buf, console=console)
    display.start()
    display.update(_snap(by_state={"completed": 10}))
    display.finish(_snap(by_state={"completed": 4986}, skipped=14, in_flight=0))
    out = buf.getvalue()
    assert "\x1b[" in out  # cursor movement: the panel is redrawn, not appended
    assert out.replace("\x1b[?25h", "").rstrip().endswith("╯")  # the final panel stays, cursor back
    assert "5,000/5,000 done (100.0%)" in out and "ETA 0s" in out
    assert Counter(out)["╭"] >= 2
