"""Where the append log's fsync runs: on the loop's thread after a streak of fast fsyncs, in a
worker thread otherwise; and that an fsync keeps every guarantee in either place."""

from __future__ import annotations

import errno
import math
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from batcher.appendlog import AppendLog, open_locked
from batcher.syncplace import INLINE_LIMIT, WINDOW, SyncPlacement

FAST, SLOW = INLINE_LIMIT / 4, INLINE_LIMIT * 3


def placements(durations: list[float], **kwargs: float) -> list[bool]:
    """Where each fsync of a run whose fsyncs took ``durations`` ran (True: on the loop)."""
    placement = SyncPlacement(**kwargs)  # type: ignore[arg-type]
    where = []
    for seconds in durations:
        where.append(placement.inline())
        placement.observe(seconds)
    return where


@pytest.mark.parametrize(
    ("durations", "inline"),
    [
        # Nothing known of the disk: the first WINDOW in a thread, then on the loop.
        ([FAST] * (WINDOW + 2), [False] * WINDOW + [True, True]),
        # A disk whose fsyncs take milliseconds: never on the loop.
        ([SLOW] * (WINDOW * 3), [False] * (WINDOW * 3)),
        # One slow fsync on the loop sends the next WINDOW to a thread again.
        (
            [FAST] * WINDOW + [FAST, SLOW] + [FAST] * (WINDOW + 1),
            [False] * WINDOW + [True, True] + [False] * WINDOW + [True],
        ),
        # A slow one among the first resets the count.
        ([FAST] * 3 + [SLOW] + [FAST] * (WINDOW + 1), [False] * (WINDOW + 4) + [True]),
        # Exactly at the limit counts as fast.
        ([INLINE_LIMIT] * (WINDOW + 1), [False] * WINDOW + [True]),
    ],
)
def test_an_fsync_runs_on_the_loop_only_after_a_streak_of_fast_ones(
    durations: list[float], inline: list[bool]
) -> None:
    assert placements(durations) == inline


def test_the_fixed_placements() -> None:
    assert placements([SLOW] * 3, limit=math.inf, window=0) == [True] * 3  # always on the loop
    assert placements([0.0] * (WINDOW * 2), limit=-1) == [False] * (WINDOW * 2)  # never
    with pytest.raises(ValueError, match="window"):
        SyncPlacement(window=-1)


def scripted(durations: list[float]) -> Iterator[float]:
    """A timer whose successive fsyncs take ``durations`` (read twice each: start, end)."""
    now = 0.0
    for seconds in durations:
        yield now
        now += seconds
        yield now


@pytest.mark.anyio
async def test_the_log_times_each_fsync_and_moves_it_to_the_loop_and_back(tmp_path: Path) -> None:
    """Through AppendLog: fsyncs timed (by the timer passed in) in the worker thread and on the
    loop alike; each sync still covers every line appended before it."""
    durations = [FAST] * WINDOW + [FAST, SLOW] + [FAST] * WINDOW + [FAST]
    ticks = scripted(durations)
    threads: list[bool] = []

    def timer() -> float:
        threads.append(threading.current_thread() is threading.main_thread())
        return next(ticks)

    path = tmp_path / "log.jsonl"
    log = AppendLog(path, open_locked(path, mode=0o644, locked=RuntimeError), 0, timer=timer)
    try:
        for i in range(len(durations)):
            log.append_line(b'{"n": %d}\n' % i)
            await log.sync()
            assert log._synced == log._written == i + 1
        # Where each fsync ran, by the thread that read the timer for it.
        on_loop = threads[::2]
        assert on_loop == [False] * WINDOW + [True, True] + [False] * WINDOW + [True]
        assert log.fsyncs == len(durations) and log.inline_fsyncs == 3
        assert path.read_bytes().count(b"\n") == len(durations)
    finally:
        log.close()


@pytest.mark.anyio
@pytest.mark.parametrize("inline", [True, False], ids=["on the loop", "in a thread"])
async def test_a_log_deleted_under_the_writer_is_put_back_wherever_the_fsync_runs(
    tmp_path: Path, inline: bool
) -> None:
    path = tmp_path / "log.jsonl"
    placement = SyncPlacement(limit=math.inf, window=0) if inline else SyncPlacement(limit=-1)
    log = AppendLog(path, open_locked(path, mode=0o644, locked=RuntimeError), 0, placement=placement)
    try:
        log.append_line(b'{"n": 1}\n')
        await log.sync()
        log.append_line(b'{"n": 2}\n')
        path.unlink()
        with pytest.raises(OSError) as caught:
            await log.sync()
        assert caught.value.errno == errno.ESTALE
        assert "deleted while this run was writing it; its lines are put back" in str(caught.value)
        assert path.read_bytes() == b'{"n": 1}\n{"n": 2}\n'
        assert log.failed is not None and log.inline_fsyncs == (
            1 if inline else 0
        )  # the failed one not counted
        with pytest.raises(OSError):  # nothing more is written or synced
            log.append_line(b'{"n": 3}\n')
    finally:
        log.close()


@pytest.mark.anyio
async def test_tasks_appending_while_an_fsync_runs_in_a_thread_are_covered_by_the_next(
    tmp_path: Path,
) -> None:
    """The group commit in a thread (the loop runs on meanwhile) and on the loop (it does not):
    every sync returns only once its own line is durable."""
    for placement in (SyncPlacement(limit=math.inf, window=0), SyncPlacement(limit=-1)):
        path = tmp_path / f"log-{placement.limit}.jsonl"
        log = AppendLog(path, open_locked(path, mode=0o644, locked=RuntimeError), 0, placement=placement)
        try:

            async def submit(i: int, log: AppendLog = log) -> None:
                await anyio.lowlevel.checkpoint()
                log.append_line(b'{"n": %d}\n' % i)
                mine = log._written
                await log.sync()
                assert log._synced >= mine

            async with anyio.create_task_group() as tg:
                for i in range(40):
                    tg.start_soon(submit, i)
            assert log._synced == log._written == 40
        finally:
            log.close()
