"""When the disk stops cooperating mid-run: the ledger or the output folder fills up (a file size
limit, RLIMIT_FSIZE, stands in for a full disk: it applies to root too), or the ledger is deleted
or cut short under a running batcher. One clear line and a documented exit code, never a
traceback; nothing the ledger acknowledged is lost; the next run pays for nothing twice."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from batcher.appendlog import AppendLog, open_locked
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.emulator.server import RunningEmulator
from batcher.ledger import read_records

from .ledger_builder import LedgerBuilder
from .support import StderrLines, blog_rows, cli_env, run_command, sketch_rows, write_jsonl

FAST = ["--poll-interval", "0.1", "--rate-limit", "60000"]


def _capped(limit: int, command: list[str]) -> list[str]:
    """``python -m batcher ...`` with every file it writes capped at ``limit`` bytes: a write past
    it fails with EFBIG (SIGXFSZ ignored), as a write to a full disk fails with ENOSPC."""
    assert command[1:3] == ["-m", "batcher"]
    code = (
        "import resource, runpy, signal, sys; "
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "runpy.run_module('batcher', run_name='__main__', alter_sys=True)"
    )
    return [sys.executable, "-c", code, *command[3:]]


def _cap_now(process: Process, limit: int) -> None:
    """The running process's files capped at ``limit`` bytes from now on (prlimit(2))."""
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (limit, limit))


async def _run(tmp: Path, base_url: str, command: list[str]) -> tuple[int, str, str]:
    with anyio.fail_after(60):
        done = await anyio.run_process(command, cwd=tmp, env=cli_env(base_url), check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


def _assert_clean(ledger: Path) -> list[dict[str, object]]:
    """Every line of the ledger is a whole record: nothing torn was left, nothing glued."""
    data = ledger.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def _ledger_failure_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if "cannot write to ledger" in line]
    assert len(errors) == 1, stderr
    return errors[0]


def _line_sizes(ledger: Path) -> list[int]:
    return [len(line) for line in ledger.read_bytes().splitlines(keepends=True)]


@pytest.mark.anyio
@pytest.mark.parametrize(("torn", "posts"), [("submitting", 0), ("submitted", 1)])
async def test_a_ledger_that_fills_up_mid_line_stops_the_run_with_exit_74_and_the_next_pays_nothing_twice(
    tmp_path: Path, torn: str, posts: int
) -> None:
    """The ledger's file fills up 40 bytes before the end of the first job's ``submitting`` line
    (then it is never POSTed), or of its ``submitted`` line (the provider accepted it, but its
    poll_url could not be recorded: the log names the request, and the next run counts that
    POST as of unknown outcome, sent again and said so, never as a fresh job). Either way: exit
    74, one clear line naming the ledger and the cause, no traceback, the torn part cut off,
    nothing else sent; the next run runs the rest once."""
    # Where the cap falls is measured on an unhindered run of the same rows in a folder whose
    # path has the same length: its lines (run, submitting, submitted) have the same sizes.
    ref, run = tmp_path / "ref", tmp_path / "run"
    for folder in (ref, run):
        folder.mkdir()
        write_jsonl(folder / "m.jsonl", sketch_rows(3))
    command = run_command(*FAST, "--concurrency", "1")
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.05)) as emu:
        code, _, stderr = await _run(ref, emu.base_url, command)
        assert code == 0, stderr
        statuses = [r["status"] for r in read_records(ref / "l.jsonl")]
        assert statuses[:3] == ["run", "submitting", "submitted"]
        index = statuses.index(torn)
        cap = sum(_line_sizes(ref / "l.jsonl")[: index + 1]) - 40
        before = emu.stats()["submissions"]

        code, stdout, stderr = await _run(run, emu.base_url, _capped(cap, command))
        records = _assert_clean(run / "l.jsonl")
        assert code == 74, stderr
        message = _ledger_failure_line(stderr)
        assert "cannot write to ledger l.jsonl: file too large. The run stopped" in message
        assert emu.stats()["submissions"] - before == posts
        assert [r["status"] for r in records] == ["run", "submitting"][:index]
        if torn == "submitted":
            assert "sketch-0000: accepted by the provider as request" in stderr
            assert "1 job accepted but not recorded by the ledger" in stdout

        code, stdout, stderr = await _run(run, emu.base_url, command)
        sent = emu.stats()["submissions"] - before
    assert code == 0, stderr
    assert sent == 3 + posts  # the unrecorded POST is sent again; nothing else twice
    assert ("earlier POST of unknown outcome had to be sent again" in stdout) == (torn == "submitted")


async def _start(tmp: Path, base_url: str, *extra: str) -> Process:
    return await anyio.open_process(run_command("-v", *FAST, *extra), cwd=tmp, env=cli_env(base_url))


async def _until_submitted(lines: StderrLines, count: int) -> None:
    """Read the run's log until ``count`` jobs have their poll_url in the ledger."""
    with anyio.fail_after(30):
        await lines.wait_for("submitted as request", count)


async def _rest(process: Process, lines: StderrLines) -> tuple[int, str]:
    """Wait for the process to end; its exit code and the rest of its log."""
    with anyio.fail_after(30):
        rest = await lines.rest()
        return await process.wait(), "\n".join(rest)


async def _three_in_flight_then(
    tmp_path: Path, emu: RunningEmulator, act: Callable[[Process], None]
) -> tuple[int, str]:
    """Run three jobs until each has its poll_url in the ledger, call ``act`` (to the ledger or
    the process), then let the jobs finish: the run's exit code and the rest of its log."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    (tmp_path / "c.yaml").write_text("poll:\n  policy: fixed\n")
    process = await _start(tmp_path, emu.base_url, "--concurrency", "3", "--config", "c.yaml")
    async with process:
        lines = StderrLines(process)
        await _until_submitted(lines, 3)
        act(process)
        emu.state.reconfigure(duration_median=0.0)
        return await _rest(process, lines)


#: Jobs that stay in flight until the test lets them finish (``duration_median=0``).
_HELD = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)


@pytest.mark.anyio
async def test_a_ledger_that_fills_up_with_jobs_in_flight_leaves_them_to_be_re_attached(
    tmp_path: Path,
) -> None:
    """Three jobs submitted and recorded, then the ledger's disk fills up (with room for part of
    a line) before they finish: the run stops at once with exit 74 and one clear line; the next
    run re-attaches all three by their poll_urls and POSTs none of them again."""
    async with run_emulator(_HELD) as emu:
        # Polls of unfinished jobs write nothing: the ledger stays as it is until they finish.
        code, stderr = await _three_in_flight_then(
            tmp_path, emu, lambda process: _cap_now(process, (tmp_path / "l.jsonl").stat().st_size + 40)
        )
        _assert_clean(tmp_path / "l.jsonl")
        assert code == 74, stderr
        assert "cannot write to ledger l.jsonl: file too large" in _ledger_failure_line(stderr)
        assert emu.stats()["submissions"] == 3

        code, stdout, stderr = await _run(tmp_path, emu.base_url, run_command(*FAST))
        stats = emu.stats()
    assert code == 0, stderr
    assert "3 jobs re-attached" in stdout
    assert stats["submissions"] == 3 and stats["inputs_submitted_more_than_once"] == 0


@pytest.mark.anyio
async def test_a_full_output_folder_fails_downloads_at_once_and_stops_submitting(tmp_path: Path) -> None:
    """Outputs (blog images, about 120 KB) no longer fit while the ledger (a few KB) still does.
    Each is recorded ``download_failed``, retryable, with the folder and the cause, after one
    download: not fetched again and again with backoff in this run (that spun for minutes and
    wrote nothing). Submissions stop (exit 1, the summary says why); the next run downloads
    them, paying nothing again, and submits the rest."""
    write_jsonl(tmp_path / "m.jsonl", blog_rows(4))
    command = run_command(*FAST, "--concurrency", "1")
    async with run_emulator(EmulatorConfig(duration_median=0.05)) as emu:
        code, stdout, stderr = await _run(tmp_path, emu.base_url, _capped(64 * 1024, command))
        stats = emu.stats()
        assert code == 1, stderr
        assert "Traceback" not in stderr
        failed = [r for r in read_records(tmp_path / "l.jsonl") if r["status"] == "download_failed"]
        assert failed and all(r["retryable"] for r in failed)
        assert stats["output_downloads"] == len(failed)  # one try each
        out = tmp_path / "out"
        for r in failed:
            assert f"cannot write outputs under {out}: file too large" in r["error"]
            assert "the next run downloads it again (not paid again)" in r["error"]
        assert f"Stopped submitting: cannot write outputs under {out}: file too large" in stdout
        first = stats["submissions"]
        assert first < 4  # not every row was paid for while nothing could be saved

        code, stdout, stderr = await _run(tmp_path, emu.base_url, command)
        stats = emu.stats()
    assert code == 0, stderr
    assert f"{len(failed)} downloads retried" in stdout
    assert stats["submissions"] == 4 and stats["inputs_submitted_more_than_once"] == 0
    assert len(list(out.glob("blog-*.png"))) == 4


def test_a_report_that_does_not_fit_is_one_line_exit_74_and_leaves_no_partial_page(tmp_path: Path) -> None:
    """``batcher report`` on a full disk (pages over 4 KB cannot be written) is not the user's
    mistake: one line naming the page and the cause, exit 74 as for ``status``'s output, no
    advice to pick another path, and neither a page cut short nor its temporary file left."""
    b = LedgerBuilder().run()
    b.tick(1).submit("job", "sketch", {"prompt": "a cat"}).tick(5).failed("job", "nsfw")
    b.write(tmp_path / "l.jsonl")
    command = _capped(4096, [sys.executable, "-m", "batcher", "report", "l.jsonl", "-o", "report.html"])
    done = subprocess.run(command, cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 74, done.stderr
    assert done.stderr == "batcher: error: cannot write report report.html: File too large\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.jsonl"]


@pytest.mark.anyio
async def test_a_ledger_deleted_under_a_running_batch_is_put_back_and_the_run_stops(tmp_path: Path) -> None:
    """Someone deletes the ledger while jobs are in flight. Before, the run wrote on into the
    deleted file, ended with exit 0, and its records vanished with it: the next run paid for
    every job again. Now the next sync notices, puts the file back at its path from the open
    descriptor, and stops (exit 74); the next run resumes from it and pays for nothing twice."""
    async with run_emulator(_HELD) as emu:
        code, stderr = await _three_in_flight_then(tmp_path, emu, lambda _: (tmp_path / "l.jsonl").unlink())
        assert code == 74, stderr
        line = _ledger_failure_line(stderr)
        assert "it was deleted while this run was writing it; its lines are put back" in line
        statuses = [r["status"] for r in read_records(tmp_path / "l.jsonl")]
        assert statuses.count("submitted") == 3

        code, _, stderr = await _run(tmp_path, emu.base_url, run_command(*FAST))
        stats = emu.stats()
    assert code == 0, stderr
    assert stats["submissions"] == 3 and stats["inputs_submitted_more_than_once"] == 0


@pytest.mark.anyio
async def test_a_ledger_cut_short_under_a_running_batch_stops_the_run_and_says_what_to_do(
    tmp_path: Path,
) -> None:
    """logrotate's ``copytruncate`` (copy the file, then truncate it) on a running ledger. Before,
    the run wrote on at the start of the emptied file and ended with exit 0: the ``run``,
    ``submitting`` and ``submitted`` lines were gone from it, so the next run paid for every job
    again. Now the next sync notices the file is shorter than what the run wrote, and the run
    stops with exit 74, saying to put the copy back; with it back, nothing is paid twice."""
    ledger, copy = tmp_path / "l.jsonl", tmp_path / "l.jsonl.1"

    def copytruncate(_: Process) -> None:
        shutil.copyfile(ledger, copy)
        os.truncate(ledger, 0)

    async with run_emulator(_HELD) as emu:
        code, stderr = await _three_in_flight_then(tmp_path, emu, copytruncate)
        assert code == 74, stderr
        line = _ledger_failure_line(stderr)
        assert "it was cut short or overwritten while this run was writing it" in line
        assert "put back the copy if there is one before running again" in line

        shutil.copyfile(copy, ledger)
        code, _, stderr = await _run(tmp_path, emu.base_url, run_command(*FAST))
        stats = emu.stats()
    assert code == 0, stderr
    assert stats["submissions"] == 3 and stats["inputs_submitted_more_than_once"] == 0


def test_a_ledger_overwritten_in_place_with_as_many_bytes_is_noticed(tmp_path: Path) -> None:
    """A copy onto the ledger that leaves it as long as before (or longer) is noticed by its last
    line, not its size."""
    path = tmp_path / "log.jsonl"
    log = AppendLog(path, open_locked(path, mode=0o644, locked=RuntimeError), 0)
    log.append_line(b'{"n": 1}\n')
    log.sync_now()
    log.append_line(b'{"n": 2}\n')
    with open(path, "r+b") as other:  # not O_APPEND: rewrites the bytes in place
        other.write(b'{"x": 1}\n{"x": 2}\n{"x": 3}\n')
    with pytest.raises(OSError, match="cut short or overwritten"):
        log.sync_now()
    assert log.failed is not None
    log.close()
