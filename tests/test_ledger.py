"""The ledger survives crashes: torn tails repaired at every byte, one run per ledger, replay."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import json.encoder
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from batcher import ledger, runsahead
from batcher.appendlog import AppendLog
from batcher.errors import LedgerError, LedgerLockedError, LedgerWriteError
from batcher.ledger import Ledger, parse_iso, read_records, utc_iso
from batcher.runsahead import RunsAhead, run_ends
from batcher.state import JobState, LedgerState, Next, replay, replay_file

from .ledger_builder import LedgerBuilder, marks_of, one_big_run
from .support import traced_peak


def _write(path: Path, records: list[dict[str, object]]) -> bytes:
    with Ledger.open(path) as ledger:
        for rec in records:
            ledger.event(
                rec["job_id"],
                rec["status"],
                1_800_000_000.0,
                **{  # type: ignore[arg-type]
                    k: v for k, v in rec.items() if k not in ("job_id", "status")
                },
            )
    return path.read_bytes()


RECORDS: list[dict[str, object]] = [
    {"job_id": "a", "status": "submitting", "workflow": "sketch"},
    {
        "job_id": "a",
        "status": "submitted",
        "request_id": "r" * 32,
        "poll_url": "http://h/workflows/request/x",
    },
    {"job_id": "b", "status": "submitting", "workflow": "blog-image"},
    {"job_id": "a", "status": "generated", "outputs": [{"key": "img", "url": "http://h/o.png"}]},
    {
        "job_id": "a",
        "status": "completed",
        "outputs": [{"key": "img", "path": "o/a/img.png", "sha256": "0" * 64}],
    },
]


def test_every_line_is_one_json_record_with_ts_job_id_and_status(tmp_path: Path) -> None:
    data = _write(tmp_path / "l.jsonl", RECORDS)
    lines = data.decode().splitlines()
    assert len(lines) == len(RECORDS)
    for line in lines:
        rec = json.loads(line)
        assert {"ts", "job_id", "status"} <= rec.keys()
        assert rec["ts"].endswith("Z")


def test_a_ledger_cut_at_every_byte_of_its_last_record_reopens_clean(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    full = _write(path, RECORDS)
    last_start = full.rstrip(b"\n").rfind(b"\n") + 1
    for cut in range(last_start, len(full) + 1):
        path.write_bytes(full[:cut])
        with Ledger.open(path) as ledger:
            expected_cut = cut - last_start if cut < len(full) else 0
            assert ledger.repaired_bytes == expected_cut, cut
            records = list(ledger.records())
            ledger.event("c", "submitting", 1_800_000_000.0)
        data = path.read_bytes()
        assert data.endswith(b"\n")
        assert all(json.loads(line) for line in data.splitlines())  # nothing torn propagated
        assert len(records) == len(RECORDS) - (1 if cut < len(full) else 0)
        state = replay(read_records(path))
        want = "completed" if cut == len(full) else "generated"
        assert state.jobs["a"].status == want
        assert state.jobs["c"].status == "submitting"


def test_a_zero_filled_tail_from_a_power_cut_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    full = _write(path, RECORDS)
    path.write_bytes(full + b"\0" * 4096 + b"\n" + b"\0" * 100)
    with Ledger.open(path) as ledger:
        assert ledger.repaired_bytes == 4096 + 1 + 100
    assert path.read_bytes() == full


def test_a_ledger_torn_in_its_first_record_or_zeroed_reopens_empty(tmp_path: Path) -> None:
    """A run killed (or a machine cut off) while writing the ledger's very first line: a torn
    first record, or only zeros, is a ledger with nothing in it, not a stranger's file."""
    path = tmp_path / "l.jsonl"
    full = _write(path, RECORDS[:1])
    for torn in [full[:cut] for cut in range(1, len(full) - 1)] + [b"\0" * 4096, b"\0" * 10 + b"\n"]:
        path.write_bytes(torn)
        with Ledger.open(path) as ledger:
            assert ledger.repaired_bytes == len(torn), torn
            assert list(ledger.records()) == []
            ledger.event("a", "submitting", 1_800_000_000.0)
        assert [r["job_id"] for r in read_records(path)] == ["a"]


def test_a_bad_line_in_the_middle_is_skipped_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    full = _write(path, RECORDS)
    lines = full.splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2]) + b"{not json\n" + b"".join(lines[2:]))
    with Ledger.open(path) as ledger:
        assert ledger.repaired_bytes == 0
        assert len(list(ledger.records())) == len(RECORDS)


def test_a_file_that_is_not_a_ledger_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "manifest.jsonl"
    content = b'{"id": "x", "input": {"input_image": "http://e/x.png"}}\n{"id": "y", "inp'
    path.write_bytes(content)
    with pytest.raises(LedgerError, match="is not a batcher ledger"):
        Ledger.open(path)
    assert path.read_bytes() == content


def test_a_second_holder_is_refused_with_ledger_locked(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _write(path, RECORDS)
    before = path.read_bytes()
    with Ledger.open(path), pytest.raises(LedgerLockedError, match="in use by another batcher run"):
        Ledger.open(path)
    assert path.read_bytes() == before


def test_the_lock_is_held_across_processes_and_released_by_death(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _write(path, RECORDS)
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom batcher.ledger import Ledger\n"
        "l = Ledger.open(Path(sys.argv[1]))\nprint('locked', flush=True)\nsys.stdin.read()\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
            with pytest.raises(LedgerLockedError):
                Ledger.open(path)
        finally:
            holder.kill()  # SIGKILL: the kernel drops the flock with the process
            holder.wait()
    with Ledger.open(path) as ledger:
        assert ledger.repaired_bytes == 0


@pytest.mark.anyio
async def test_group_commit_syncs_every_record_appended_before_the_call(tmp_path: Path) -> None:
    import anyio

    with Ledger.open(tmp_path / "l.jsonl") as ledger:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                ledger.event(f"j{i}", "submitting", 1_800_000_000.0)
                tg.start_soon(ledger.sync)
        assert ledger._synced == ledger._written == 50


@pytest.mark.anyio
async def test_a_wave_of_submissions_dispatched_together_shares_one_fsync(tmp_path: Path) -> None:
    """Like the request workers that one pass of the scheduler wakes: each appends its own
    ``submitting`` line and then waits for it to be durable. The first to sync must not start
    the fsync before the others have appended (that took two fsyncs for any wave)."""
    import anyio

    with Ledger.open(tmp_path / "l.jsonl") as ledger:

        async def submit(i: int) -> None:
            ledger.event(f"j{i}", "submitting", 1_800_000_000.0)
            await ledger.sync()
            assert ledger._synced > i  # its own line is on disk before the POST

        async with anyio.create_task_group() as tg:
            for i in range(16):
                tg.start_soon(submit, i)
        assert ledger._synced == ledger._written == 16
        assert ledger.fsyncs == 1


@pytest.mark.anyio
async def test_lines_appended_during_the_commit_delay_share_its_fsync(tmp_path: Path) -> None:
    """With a commit delay, the first sync waits before its fsync starts, and the lines that tasks
    not due in its pass append meanwhile ride along: one fsync for five submissions (without the
    delay, the test below makes two for two). A sync with nothing to write waits for nothing."""
    import anyio
    import anyio.lowlevel

    waited: list[float] = []
    appended = 0
    all_in = anyio.Event()

    async def sleep(seconds: float) -> None:  # the delay ends when the test says so
        waited.append(seconds)
        await all_in.wait()

    with Ledger.open(tmp_path / "l.jsonl", commit_delay=0.002, sleep=sleep) as ledger:

        async def submit(job: str, after: int) -> None:
            nonlocal appended
            for _ in range(after):  # later passes of the loop than the first sync's
                await anyio.lowlevel.checkpoint()
            ledger.event(job, "submitting", 1_800_000_000.0)
            appended += 1
            if appended == 5:
                all_in.set()
            await ledger.sync()
            assert ledger._synced >= ledger._written  # its line (and every other) is on disk

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "a", 0)
            for i in range(4):
                tg.start_soon(submit, f"b{i}", 3 + i)
        assert ledger._synced == ledger._written == 5
        assert ledger.fsyncs == 1
        assert waited == [0.002]
        await ledger.sync()  # nothing new: no delay, no fsync
        assert waited == [0.002] and ledger.fsyncs == 1


@pytest.mark.anyio
async def test_a_line_written_while_an_fsync_runs_waits_for_the_next_fsync(tmp_path: Path) -> None:
    """A submission whose ``submitting`` line is written after another's fsync has taken what it
    covers (and is running in its thread) must not go ahead on that fsync: its POST waits for one
    that covers its own line (one that took "everything written by the time it ended" let a POST
    out whose line was in no fsync, lost to a power cut: the job paid again)."""
    import anyio
    import anyio.lowlevel

    # No commit delay: the second line is to come while the fsync runs, not before it starts.
    with Ledger.open(tmp_path / "l.jsonl", commit_delay=0.0) as ledger:

        async def first() -> None:
            ledger.event("a", "submitting", 1_800_000_000.0)
            await ledger.sync()

        async def second() -> None:
            await anyio.lowlevel.checkpoint()  # first's sync lets the rest of its wave append
            await anyio.lowlevel.checkpoint()  # first has handed its fsync to a thread
            ledger.event("b", "submitting", 1_800_000_000.0)
            await ledger.sync()

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)
        assert ledger._synced == ledger._written == 2
        assert ledger.fsyncs == 2


@contextlib.contextmanager
def _file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` fail in this process (RLIMIT_FSIZE: a disk that fills up; Python
    ignores SIGXFSZ, so a write past it fails with EFBIG instead of ending the process). Only the
    soft limit is lowered, so it can be raised back."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_line_the_disk_took_only_part_of_is_cut_and_nothing_is_appended_after_it(tmp_path: Path) -> None:
    """A full disk takes part of a line, then refuses the rest. The part is cut off at once, and
    the ledger takes no later line (one that did fit would be glued to the torn part: one corrupt
    line in the middle of the file, two records lost, say a poll_url, and a job paid twice)."""
    path = tmp_path / "l.jsonl"
    with Ledger.open(path) as ledger:
        ledger.event("a", "submitting", 1_800_000_000.0, workflow="sketch")
        before = path.read_bytes()
        with _file_size_limit(len(before) + 40), pytest.raises((LedgerWriteError, OSError)):
            ledger.event("a", "submitted", 1_800_000_000.0, request_id="r" * 32, poll_url="http://h/x")
        assert path.read_bytes() == before  # the 40 bytes that fitted were cut off again
        # Space again (another process freed some): still nothing lands after the failure.
        with pytest.raises(LedgerWriteError, match=f"cannot write to ledger {path}: file too large"):
            ledger.event("b", "submitting", 1_800_000_000.0, workflow="sketch")
        assert path.read_bytes() == before
    with Ledger.open(path) as reopened:
        assert reopened.repaired_bytes == 0
        assert [r["status"] for r in reopened.records()] == ["submitting"]


@pytest.mark.anyio
async def test_submitting_lines_no_sync_covered_yet_are_cut_when_the_ledger_fails(tmp_path: Path) -> None:
    """A wave of submissions appends its ``submitting`` lines, and the disk fills up on the last:
    their POSTs wait for a sync, so none went out, and their lines are cut too. The next run sees
    jobs never sent (sent once, not counted as maybe billed twice, nor failed under
    ``unknown_submit: fail``). A line a sync covered (its POST may be out) is kept."""
    path = tmp_path / "l.jsonl"
    now = 1_800_000_000.0
    with Ledger.open(path) as ledger:
        ledger.submitting("a", now, workflow="sketch")
        await ledger.sync()  # a's POST may go out from here on
        kept = path.read_bytes()
        ledger.submitting("b", now, workflow="sketch")
        ledger.submitting("c", now, workflow="sketch")
        with _file_size_limit(path.stat().st_size + 40), pytest.raises(LedgerWriteError):
            ledger.submitting("d", now, workflow="sketch")
        with pytest.raises(LedgerWriteError):
            await ledger.sync()  # b and c wait here: their POSTs never go out
        assert path.read_bytes() == kept
    state = replay(
        [{"status": "run", "job_id": None}, *read_records(path), {"status": "run", "job_id": None}]
    )
    assert set(state.jobs) == {"a"} and state.jobs["a"].next_step(retry_failed=False) is Next.UNKNOWN


@pytest.mark.anyio
async def test_after_an_fsync_fails_no_line_is_taken_and_no_sync_succeeds(tmp_path: Path) -> None:
    """An fsync that failed is never tried again (Linux may report success for the pages it
    dropped), and every later append and sync fails: a POST waits for its ``submitting`` line's
    sync, so none goes out once the ledger cannot be trusted. (A pipe's fsync always fails.)"""
    import anyio

    read_end, write_end = os.pipe()
    log = AppendLog(tmp_path / "pipe", write_end, 0)
    try:
        failures: list[BaseException] = []

        async def submit(i: int) -> None:
            log.append_line(b'{"status":"submitting"}\n')
            try:
                await log.sync()
            except OSError as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(submit, i)
        assert len(failures) == 3  # every waiter, not only the one whose fsync failed
        with pytest.raises(OSError):
            log.append_line(b'{"status":"submitting"}\n')
        assert os.read(read_end, 4096).count(b"\n") == 3  # the fourth line never went out
        with pytest.raises(OSError):
            await log.sync()
        with pytest.raises(OSError):
            log.sync_now()
        assert log.fsyncs == 0
    finally:
        log.close()  # raises nothing: the caller has the error already
        os.close(read_end)


@pytest.mark.parametrize(
    ("statuses", "extra", "retry_failed", "expected"),
    [
        (["submitting"], {}, False, Next.UNKNOWN),
        (["submitting", "submit_unknown"], {}, False, Next.UNKNOWN),
        (["submitting", "deferred"], {}, False, Next.SUBMIT),
        (["submitting", "submitted"], {}, False, Next.ATTACH),
        (["submitting", "submitted", "polled"], {}, False, Next.ATTACH),
        (["submitting", "submitted", "generated"], {}, False, Next.DOWNLOAD),
        (["submitting", "submitted", "generated", "download_failed"], {}, False, Next.DOWNLOAD),
        (["submitting", "submitted", "generated", "completed"], {}, False, Next.NOTHING),
        (["submitting", "submitted", "failed"], {"retryable": False}, False, Next.NOTHING),
        (["submitting", "submitted", "failed"], {"retryable": False}, True, Next.SUBMIT),
        (["submitting", "submitted", "failed"], {"retryable": True}, False, Next.ATTACH),
        # A POST of unknown outcome stays unknown until a `submitted`, whatever comes between:
        # giving up on it, a 429 or no connection on the way to sending it again, a kill ("run").
        (["submitting", "submit_unknown", "failed"], {"retryable": True}, False, Next.UNKNOWN),
        (
            ["submitting", "submit_unknown", "submitting", "deferred"],
            {"retryable": True},
            False,
            Next.UNKNOWN,
        ),
        (["submitting", "run", "submitting", "deferred"], {"retryable": True}, False, Next.UNKNOWN),
        (["submitting", "submit_unknown", "submitting", "submitted"], {}, False, Next.ATTACH),
        (["submitting", "submit_unknown", "submitting", "submitted", "failed"], {}, True, Next.SUBMIT),
        (["submitting", "submit_unknown", "failed"], {"retryable": False}, False, Next.NOTHING),
        (["submitting", "submit_unknown", "failed"], {"retryable": False}, True, Next.UNKNOWN),
        (["submitting", "run", "failed"], {"retryable": False}, True, Next.UNKNOWN),
        (["submitting", "failed"], {"retryable": False}, True, Next.SUBMIT),  # a 400: a definite no
        (["submitting", "run"], {}, False, Next.UNKNOWN),
        (["submitting", "submitting", "deferred"], {"retryable": True}, False, Next.UNKNOWN),
        (["submitting", "submitted", "expired"], {}, False, Next.NOTHING),
        (["submitting", "submitted", "expired"], {}, True, Next.SUBMIT),
    ],
)
def test_replay_decides_what_each_job_needs(
    statuses: list[str], extra: dict[str, object], retry_failed: bool, expected: Next
) -> None:
    state = LedgerState()
    for status in statuses:
        job_id = None if status == "run" else "j"
        rec: dict[str, object] = {"ts": "2026-11-21T00:00:00Z", "job_id": job_id, "status": status}
        if status == "submitted":
            rec.update(request_id="r" * 32, poll_url="http://h/workflows/request/r")
        if status == statuses[-1]:
            rec.update(extra)
        state.apply(rec)
    assert state.jobs["j"].next_step(retry_failed=retry_failed) is expected


def test_a_new_submitting_line_forgets_the_old_poll_url() -> None:
    state = replay(
        [
            {"job_id": "j", "status": "submitted", "poll_url": "http://h/1", "ts": "t"},
            {"job_id": "j", "status": "failed", "retryable": False, "ts": "t"},
            {"job_id": "j", "status": "submitting", "ts": "t"},
        ]
    )
    job = state.jobs["j"]
    assert job.poll_url is None and job.request_id is None and job.status == "submitting"


def test_a_replayed_ledger_keeps_little_of_each_job_that_a_run_finished_in_order(tmp_path: Path) -> None:
    """A run replays the whole ledger and holds it to its end: every job the ledger ever had,
    and a nightly ledger gains tens of thousands a night. Each was kept whole (outputs, poll_url,
    request id, times: 1.8 KB a job, 1.9 GB for a million, measured); then 260 bytes as an object
    in a dict. A job completed in a run that ended in order now keeps what a run asks of it (that
    it is done, its workflow and inputs_hash) in the done table, about 60 bytes; the jobs of a run
    that did not end in order keep their outputs, which the next run checks."""
    b = LedgerBuilder().run()
    for i in range(2_000):
        job = f"job-{i:05d}"
        b.tick(1).submitting(job, "sketch", {"input_image": f"https://img.example.com/{i}.jpg"})
        b.records[-1]["inputs_hash"] = f"{i:016x}"
        b.tick(0.3).submitted(job).tick(30).generated(job).tick(1).completed(job, {"image": f"/o/{job}.png"})
    b.line(None, "run_end", outputs_synced=True).tick(60).run()
    b.tick(1).submit("killed-0", "sketch", {"input_image": "https://img.example.com/k.jpg"}).tick(30)
    b.generated("killed-0").tick(1).completed("killed-0", {"image": "/o/killed-0.png"})  # then kill -9
    path = b.write(tmp_path / "ledger.jsonl")

    tracemalloc.start()
    try:
        state = replay(read_records(path))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert state.known == 2_001 and len(state.done) == 2_000 and set(state.jobs) == {"killed-0"}
    assert held / state.known < 120, held / state.known  # bytes a job (was 1,780, then 260)

    old = state.job("job-00007")
    assert old is not None and old.status == "completed" and old.workflow == "sketch"
    assert old.next_step(retry_failed=True) is Next.NOTHING
    assert old.sent_other_inputs(f"{8:016x}") and not old.sent_other_inputs(f"{7:016x}")
    assert old.done_line <= state.synced_upto  # never checked again
    killed = state.jobs["killed-0"]
    assert killed.done_line > state.synced_upto and killed.outputs and killed.outputs[0]["path"]
    assert killed.poll_url is not None and killed.outputs_lost()  # refetchable, never re-POSTed


def _peak_bytes_a_job(path: Path, *, read_ahead: bool) -> tuple[LedgerState, float]:
    state = LedgerState(ahead=run_ends(path) if read_ahead else RunsAhead())

    def fold() -> None:
        for rec in read_records(path):
            state.apply(rec)

    _, peak = traced_peak(fold)
    return state, peak / state.known


def test_a_run_read_ahead_to_its_run_end_never_holds_its_jobs_whole(tmp_path: Path) -> None:
    """One run of a million rows that ended in order: the next run (or dry run) held every one
    of them whole until that run's ``run_end``, the last line, and peaked at 1.8 GB
    (bench/memory.py). Read ahead (:func:`run_ends`), a job whose run ends in order is done from
    its ``completed`` line: the replay's peak is the done table's, whatever the run's size. A
    run that did not end (killed) still holds its jobs whole: the next run checks their files."""
    path = one_big_run(tmp_path / "ledger.jsonl", 2_000, ended=True)
    state, peak = _peak_bytes_a_job(path, read_ahead=True)
    assert len(state.done) == 2_000 and not state.jobs and state.synced_upto == state.lines
    assert peak < 200, peak  # bytes a job at the replay's peak (90 here)
    _, unread_peak = _peak_bytes_a_job(path, read_ahead=False)
    assert unread_peak > 1_000, unread_peak  # 1,500 here

    killed = one_big_run(tmp_path / "killed.jsonl", 50, ended=False)
    state, _ = _peak_bytes_a_job(killed, read_ahead=True)
    assert len(state.jobs) == 50 and not state.done
    assert all(j.done_line > state.synced_upto and j.outputs and j.poll_url for j in state.jobs.values())


def test_run_ends_counts_each_runs_run_end_lines_as_the_replay_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only records the replay takes for ``run`` and ``run_end`` count: not an input that says
    "run", not a torn last line, not a line that does not parse; across read blocks too."""
    b = LedgerBuilder().line(None, "run_end")  # before any run line (a hand edit): the first entry's
    b.run().submit("a", "sketch", {"input_image": "run"}).line("a", "run_end")  # a job's, not a run's
    b.line(None, "invalid", row_id="run").line(None, "running")  # no run's either
    b.line(None, "run_end").line(None, "run_end").run().run().line(None, "run_end")
    path = b.write(tmp_path / "ledger.jsonl")
    with path.open("ab") as f:
        f.write(b'{"ts":"x","job_id":null,"status":"run_end"\n')  # no closing brace: not a record
        f.write(b'{"ts":"x","job_id":null,"status":"run_end"}')  # torn: no newline yet
    runs = [r for r in read_records(path) if r["status"] == "run" and r.get("job_id") is None]
    for block in (4 * 1024 * 1024, 7, 64):
        monkeypatch.setattr(runsahead, "_SCAN_BLOCK", block)
        marks = run_ends(path).marks
        assert [m.ends for m in marks] == [1, 2, 0, 1], block
        assert [m.record for m in marks] == [None, *runs]
    assert run_ends(tmp_path / "missing.jsonl").marks == [runsahead.RunMark(None, 0)]


def test_replay_of_every_prefix_is_a_consistent_state(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    _write(path, RECORDS)
    records = list(read_records(path))
    for n in range(len(records) + 1):
        state = replay(records[:n])
        for job in state.jobs.values():
            if job.status in ("submitted", "generated", "completed"):
                assert job.poll_url is not None
            assert job.next_step(retry_failed=False) in Next


STATUSES = [
    "submitting",
    "submit_unknown",
    "deferred",
    "submitted",
    "polled",
    "generated",
    "completed",
    "download_failed",
    "failed",
    "expired",
    "invalid",
    "something_new",
    "run",
    "run_end",
]


def _record(job: str, status: str, flag: bool, n: int) -> dict[str, object]:
    """A ledger record of a generated history: ``job``'s (None for run and run_end), with the
    fields the replay reads for ``status``; ``flag`` is ``retryable`` and picks the workflow,
    ``n`` makes the inputs_hash."""
    rec: dict[str, object] = {
        "ts": "2026-11-21T00:00:00Z",
        "job_id": None if status in ("run", "run_end") else job,
        "status": status,
        "retryable": flag,
    }
    if status == "submitted":
        rec.update(request_id=f"{n:032x}", poll_url=f"https://api.segmind.com/workflows/request/{job}{n}")
    if status in ("completed", "generated"):
        rec.update(outputs=[{"key": "image", "url": f"https://cdn.example.com/{job}-{n}.png"}])
    if status == "submitting":
        rec.update(workflow="sketch" if flag else "blog-image", inputs_hash=f"{n:016x}")
    return rec


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(STATUSES), st.booleans()), max_size=40
    )
)
def test_replay_of_any_prefix_of_any_history_is_consistent(events: list[tuple[str, str, bool]]) -> None:
    """Whatever a ledger holds, every prefix replays to states that never re-POST a known poll_url."""
    records = [_record(job, status, flag, n) for n, (job, status, flag) in enumerate(events)]
    for n in range(len(records) + 1):
        state = replay(records[:n])
        for job_id in "abc":  # done jobs included (kept by the hash of their id, not listed)
            job = state.job(job_id)
            if job is None:
                continue
            step = job.next_step(retry_failed=False)
            if job.poll_url is not None and job.status not in ("completed", "generated", "download_failed"):
                assert step in (Next.ATTACH, Next.NOTHING), (job_id, job)
            if job.status in ("submitting", "submit_unknown") and job.poll_url is None:
                assert step is Next.UNKNOWN
            if job.post_unknown and job.poll_url is None:
                # A POST that may have been billed is never sent again as a plain submission:
                # ledger.unknown_submit decides, and the summary counts it.
                for retry_failed in (False, True):
                    assert job.next_step(retry_failed=retry_failed) is not Next.SUBMIT, (job_id, job)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(STATUSES), st.booleans()), max_size=40
    )
)
def test_reading_ahead_ends_in_the_state_the_run_ends_would_make(events: list[tuple[str, str, bool]]) -> None:
    """A replay told where each run ends (:func:`run_ends`) settles a job at its ``completed``
    line instead of at its run's ``run_end``: the whole ledger replays to the same state, job
    for job, as without reading ahead, for any history batcher writes (no line of a job after
    its ``completed`` in the same run: a later run may write of it again, after a ``run`` line)."""
    records = _batcher_history(events)
    ahead = marks_of(records)
    plain, read_ahead = replay(records), LedgerState(ahead=RunsAhead(ahead))
    for rec in records:
        read_ahead.apply(rec)
    assert read_ahead.ahead.marks == ahead  # every run line matched what was read ahead
    for job_id in "abc":
        assert read_ahead.job(job_id) == plain.job(job_id), job_id
    assert (read_ahead.known, read_ahead.synced_upto, read_ahead.posting) == (
        plain.known,
        plain.synced_upto,
        plain.posting,
    )


def _batcher_history(events: list[tuple[str, str, bool]]) -> list[dict[str, object]]:
    """The records of a generated history as batcher writes them: no line of a job after its
    ``completed`` in the same run (a later run may write of it again, after a ``run`` line)."""
    records: list[dict[str, object]] = []
    completed_in_this_run: set[str] = set()
    for job, status, flag in events:
        if status == "run":
            completed_in_this_run.clear()
        elif status != "run_end":
            if job in completed_in_this_run:
                continue
            if status == "completed":
                completed_in_this_run.add(job)
        records.append(_record(job, status, flag, len(records)))
    return records


def _as_plain(job: JobState | None) -> JobState | None:
    """A job without what only one way of replaying knows: where its lines are."""
    return None if job is None else dataclasses.replace(job, submitted_at=-1, done_line=0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(STATUSES), st.booleans()), max_size=40
    )
)
# A run killed after "a" completed, a run that checked it and ended, then a hand-written line of
# "a": a job done for good, mentioned again, whichever way it was held.
@example(
    [
        ("a", "run", False),
        ("a", "submitted", False),
        ("a", "completed", False),
        ("a", "run", False),
        ("a", "run_end", False),
        ("a", "failed", True),
    ]
)
# A job POSTed again after an answer (its submitting line clears that answer's request id and
# poll_url): held, it pointed at the earlier submitted line and came back with them.
@example(
    [
        ("a", "submitted", False),
        ("a", "submitting", False),
        ("a", "completed", False),
        ("a", "run", False),
        ("a", "submit_unknown", False),
    ]
)
def test_jobs_held_by_the_offsets_of_their_lines_replay_as_jobs_held_whole(
    events: list[tuple[str, str, bool]],
) -> None:
    """A job completed in a run that did not end in order (killed) was held whole, outputs,
    poll_url and all, until a later ``run_end``: 1.8 GB for a killed run of a million. Replayed
    from its file (:func:`replay_file`), it is held by the offsets of its ``completed`` and
    ``submitted`` lines. For any history batcher writes, the jobs whose files a run must check
    come out whole and the same as held whole (outputs, poll_url, request id, times), and every
    other job is the same, also when a later line mentions a held job again."""
    records = _batcher_history(events)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        plain, held = replay(records), replay_file(path)
        whole = {job_id: _as_plain(job) for job_id, job in plain.held_jobs()}
        assert {job_id: _as_plain(job) for job_id, job in held.held_jobs()} == whole
    assert all(job.outputs and job.status == "completed" for job in whole.values())
    for job_id in "abc":
        if job_id not in whole:
            assert _as_plain(held.job(job_id)) == _as_plain(plain.job(job_id)), job_id
    assert (held.known, held.synced_upto, held.posting) == (plain.known, plain.synced_upto, plain.posting)
    assert not any(job.status == "completed" for job in held.jobs.values())  # held, not whole


def test_a_killed_run_of_many_jobs_is_replayed_in_little_memory_and_checked_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run killed after its jobs completed: the next run, or a dry run, held every one of
    them whole (1.8 GB for a million, bench/memory.py). Held by the offsets of their lines, the
    replay peaks at about a hundred bytes a job; the run that checks their files reads each
    again, one at a time, with its outputs and poll_url."""
    path = one_big_run(tmp_path / "killed.jsonl", 2_000, ended=False)
    monkeypatch.setattr(runsahead, "_SCAN_BLOCK", 64 * 1024)  # its read block, not the jobs
    state, peak = traced_peak(lambda: replay_file(path))
    assert len(state.done) == 2_000 and not state.jobs
    assert peak / 2_000 < 200, peak / 2_000  # bytes a job (1,500 held whole)
    held = dict(state.held_jobs())
    whole = replay(read_records(path)).jobs  # without offsets: held whole, as before
    assert len(held) == 2_000 and {job_id: _as_plain(job) for job_id, job in held.items()} == {
        job_id: _as_plain(job) for job_id, job in whole.items()
    }
    for job_id, job in held.items():
        assert job.status == "completed" and job.outputs and job.outputs[0]["path"].endswith(f"{job_id}.png")
        assert job.poll_url and job.request_id and job.request_id in job.poll_url
    job = state.unsettle("job-00007", held["job-00007"])
    assert job.outputs_lost() and state.jobs["job-00007"].status == "generated"
    assert state.job("job-00007") is job and len(state.done) == 1_999

    # The run that checked them ends in order: its run_end settles them for good.
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"ts": "2026-11-21T00:00:00Z", "job_id": None, "status": "run"}) + "\n")
        fh.write(json.dumps({"ts": "2026-11-21T00:00:01Z", "job_id": None, "status": "run_end"}) + "\n")
    assert not list(replay_file(path).held_jobs())


def test_a_held_job_whose_line_is_gone_is_a_clear_error(tmp_path: Path) -> None:
    """The ledger is append-only, so the line a held job was found at is still there; one that
    is not (the file was replaced since the replay) is refused, not guessed at."""
    path = one_big_run(tmp_path / "killed.jsonl", 3, ended=False)
    state = replay_file(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join([*lines[:1], b"x" * 40 + b"\n", *lines[1:]]))  # everything moves
    with pytest.raises(
        LedgerError, match=r"changed while this run read it \(no completed line at byte \d+\)"
    ):
        list(state.held_jobs())


def test_a_replay_that_meets_a_run_line_not_read_ahead_stops_trusting_what_was(tmp_path: Path) -> None:
    """The file grew between the two reads (a dry run beside a live run), or holds a ``run``
    line the quick pass cannot see (hand-written with escapes): from the first ``run`` line
    that differs, jobs wait for their ``run_end`` as they come, so a killed run's completed jobs
    are still checked."""
    b = LedgerBuilder().run().submit("a", "sketch", {"input_image": "x"}).tick(30).generated("a")
    b.completed("a", {"image": "/o/a.png"}).line(None, "run_end", outputs_synced=True)
    first = b.write(tmp_path / "first.jsonl")
    ahead = run_ends(first)
    b.run().submit("k", "sketch", {"input_image": "y"}).tick(30).generated("k")
    b.completed("k", {"image": "/o/k.png"})
    b.run().line(None, "run_end", outputs_synced=True)  # the next run ends; "k"'s never did
    state = LedgerState(ahead=ahead)
    for rec in read_records(b.write(tmp_path / "grown.jsonl")):
        state.apply(rec)
    assert state.ahead.marks == ()  # the second run line was not read ahead
    assert state.job("a") is not None and "a" not in state.jobs
    assert state.job("k") == replay(read_records(tmp_path / "grown.jsonl")).job("k")

    escaped = tmp_path / "escaped.jsonl"
    text = first.read_bytes()
    run_line = text.split(b"\n")[0]
    hidden = json.loads(run_line.replace(b'"status":"run"', b'"status":"r\\u0075n"'))
    assert hidden["status"] == "run"
    hidden["ts"] = "2026-11-21T01:00:00.000Z"  # a run of its own
    escaped.write_bytes(text.replace(b'"run_end"', b'"r\\u0075n_end"') + _escaped(hidden) + text)
    marks = run_ends(escaped)
    assert [m.ends for m in marks.marks] == [0, 0, 1]  # neither escaped line was seen
    state, plain = LedgerState(ahead=marks), replay(read_records(escaped))
    for rec in read_records(escaped):
        state.apply(rec)
        if rec.get("ts") == hidden["ts"]:
            assert state.ahead.marks == ()  # at the run line the quick pass did not see
    assert state.jobs == plain.jobs and state.job("a") == plain.job("a") and state.known == plain.known


def _escaped(record: dict[str, object]) -> bytes:
    """A ledger line that spells its status with a JSON escape (a hand-written line)."""
    return json.dumps(record, separators=(",", ":")).replace('"run"', '"r\\u0075n"').encode() + b"\n"


#: 2026-11-21 00:00:00 UTC.
T0 = 1_795_219_200.0


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local time zone is UTC+9 (POSIX TZ rule: no zone files needed)."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("ts", "posix"),
    [
        ("2026-11-21T00:00:00.000Z", T0),  # what the ledger writes
        ("2026-11-21T00:00:00", T0),  # no offset: UTC, as the ledger's times are (was: local time)
        ("2026-11-21", T0),  # a date alone: its midnight, UTC
        ("2026-11-21T09:00:00+09:00", T0),  # an offset, as a later version or another tool may write
        ("2026-11-21T00:00:00.000z", T0),  # a lower-case z (RFC 3339 allows it; it read as no time)
        ("2026-11-21T00:00:00.123456Z", T0 + 0.123456),  # microseconds
        (" 2026-11-21T00:00:00Z ", T0),  # spaces a hand edit left
        ("yesterday", None),
        ("2026-13-01T00:00:00Z", None),
        ("", None),
        ("Z", None),
        (None, None),  # not text: a hand edit, a future version's number
        (T0, None),
    ],
)
def test_ledger_times_are_read_as_utc_whatever_the_machines_time_zone(
    far_from_utc: None, ts: object, posix: float | None
) -> None:
    """A ledger time without an offset was read as this machine's local time: nine hours off here
    (an in-flight job's age, a re-attached job's), and an hour differently in summer."""
    assert parse_iso(ts) == (pytest.approx(posix) if posix is not None else None)
    assert utc_iso(T0) == "2026-11-21T00:00:00.000Z"  # written in UTC whatever the zone


def _stdlib_line(record: object) -> bytes:
    """What a ledger line was before its encoder was built once: ``json.dumps`` itself."""
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    return (text + "\n").encode("utf-8", "backslashreplace")


_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and the infinities too: json writes them, and reads them back
    | st.text()  # lone surrogates too: a file name that is not UTF-8
    | st.dates()  # not JSON: written as str() writes it
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text() | st.integers(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), _JSON_VALUES, max_size=6))
def test_a_line_is_what_json_dumps_writes(record: dict[str, object]) -> None:
    """The encoder built once at import (``_C_ENCODE``, CPython's own C encoder) writes exactly
    what ``json.dumps`` with the ledger's options writes, for anything a record may hold."""
    assert ledger._C_ENCODE is not None  # CPython: the fast path is the one under test
    assert ledger.encode(record) == _stdlib_line(record)


def test_a_record_that_contains_itself_raises_what_json_dumps_raises() -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="Circular reference"):
        _stdlib_line({"inputs": looped})
    with pytest.raises(ValueError, match="Circular reference"):
        ledger.encode({"inputs": looped})


@pytest.mark.parametrize(
    "c_make_encoder",
    [
        None,  # a Python without the C encoder
        lambda *args: (_ for _ in ()).throw(TypeError("another signature")),
        lambda *args: lambda obj, level: ["{}"],  # takes the arguments, writes something else
    ],
    ids=["missing", "another-signature", "other-text"],
)
def test_without_a_c_encoder_that_writes_the_same_lines_the_stdlib_path_is_used(
    monkeypatch: pytest.MonkeyPatch, c_make_encoder: object
) -> None:
    """``c_make_encoder`` is undocumented: a Python where it is missing, or takes other
    arguments, or writes other text, gets ``json.dumps``'s own path, never wrong lines."""
    monkeypatch.setattr(json.encoder, "c_make_encoder", c_make_encoder)
    assert ledger._c_encoder() is None
    monkeypatch.undo()  # json's own path builds its encoder with c_make_encoder too
    monkeypatch.setattr(ledger, "_C_ENCODE", None)
    record = {"ts": "2026-11-21T00:00:00.000Z", "job_id": "a", "status": "submitted", "n": [1.5, None]}
    assert ledger.encode(record) == _stdlib_line(record)
