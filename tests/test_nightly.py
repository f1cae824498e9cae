"""What a nightly cron user meets in an appended-to manifest: input files archived after their jobs
ran, and rows edited in place under the same id.

Real sockets against the emulator, through :func:`run_batch` (shared :class:`ScaledClock`) or the
command line (a subprocess), as a user runs it.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.status import ledger_status
from batcher.status_text import render_status_text
from batcher.summary import render_summary
from batcher.workflows import WorkflowRegistry

from .support import (
    SPEED,
    blog_rows,
    ledger_lines,
    png_bytes,
    png_data_uri,
    run,
    run_cli,
    settings_for,
    sketch_rows,
    write_jsonl,
)

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}
CLI_FAST = ["--poll-interval", "0.1", "--rate-limit", "60000"]


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(seed))


def _local_rows(folder: Path) -> list[dict[str, Any]]:
    """Three sketch rows naming local files under ``folder`` (relative to the manifest): one
    without an id (its id is the hash of its inputs), two with ids."""
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        _png(folder / name, i)
    rel = folder.name
    return [
        {"input_image": f"{rel}/a.png"},
        {"id": "b", "workflow": "sketch", "input": {"input_image": f"{rel}/b.png"}},
        {"id": "c", "input_image": f"./{rel}/c.png"},
    ]


def _loud(caplog: pytest.LogCaptureFixture) -> list[str]:
    """batcher's warnings and errors."""
    return [r.getMessage() for r in caplog.records if r.name == "batcher" and r.levelno >= logging.WARNING]


# --- local input files archived after their jobs ran ------------------------------------------------


async def test_rows_whose_jobs_completed_are_skipped_quietly_after_their_local_files_are_archived(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Done rows need their files no more (with or without an id: none counts as an edit), while a
    row still to submit whose file is missing is still refused with the clear message."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", _local_rows(tmp_path / "imgs"))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert first.exit_code is ExitCode.OK and first.stats.outcomes == {"completed": 3}
        shutil.move(tmp_path / "imgs", tmp_path / "archive")
        lines_before = len(ledger_lines(ledger))
        with caplog.at_level(logging.WARNING, logger="batcher"):
            second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 3
        assert _loud(caplog) == []
        assert second.exit_code is ExitCode.OK
        assert second.stats.invalid == 0 and second.stats.skipped == 3 and second.stats.submitted == 0
        assert render_summary(second).startswith("Nothing to do: every job is already complete (3 jobs).")
        statuses = [r["status"] for r in ledger_lines(ledger)[lines_before:]]
        assert statuses == ["run", "run_end"]  # no invalid line
        # Tonight's new row names a file that is not there: it still has to be sent, so it is refused.
        write_jsonl(manifest, [{"id": "d", "input_image": "imgs/d.png"}], append=True)
        third = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 3
    assert third.exit_code is ExitCode.FAILED
    assert third.stats.invalid == 1 and third.stats.skipped == 3
    invalid = [r for r in ledger_lines(ledger) if r["status"] == "invalid"]
    assert [(r["row_id"], r["line"], r["field"]) for r in invalid] == [("d", 4, "input_image")]
    assert invalid[0]["error"] == "local file not found: imgs/d.png"


async def test_a_job_in_flight_is_re_attached_after_its_local_file_is_archived(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A job whose poll_url is known is only polled and downloaded, never sent again: its row
    needs no file either."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", _local_rows(tmp_path / "imgs")[1:2])
    stuck = EmulatorConfig(render="placeholder", duration_median=1e7, duration_spread=0.0)
    async with run_emulator(stuck, clock=clock) as emu:
        first = await run(
            settings_for(emu.base_url, tmp_path, **{"poll.give_up_after": 30.0}), [manifest], registry, clock
        )
        assert first.stats.gave_up_polling == 1
        shutil.move(tmp_path / "imgs", tmp_path / "archive")
        emu.state.reconfigure(duration_median=1.0)
        second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 1
    assert second.exit_code is ExitCode.OK and second.stats.invalid == 0
    assert second.stats.attached == 1 and second.stats.outcomes == {"completed": 1}


async def test_dry_run_and_status_agree_with_the_run_after_local_files_are_archived(tmp_path: Path) -> None:
    """``--dry-run`` counts the archived rows as done (exit 0, no invalid row), the run does too,
    and ``batcher status`` shows no invalid row afterwards."""
    write_jsonl(tmp_path / "m.jsonl", _local_rows(tmp_path / "imgs"))
    common = ["m.jsonl", "--ledger", "l.jsonl", "--out", "out"]
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.1)) as emu:
        first = await anyio.to_thread.run_sync(
            lambda: run_cli("run", *common, *CLI_FAST, cwd=tmp_path, base_url=emu.base_url)
        )
        assert first.returncode == 0, first.stderr
        shutil.move(tmp_path / "imgs", tmp_path / "archive")
        dry = await anyio.to_thread.run_sync(lambda: run_cli("run", *common, "--dry-run", cwd=tmp_path))
        again = await anyio.to_thread.run_sync(
            lambda: run_cli("run", *common, *CLI_FAST, cwd=tmp_path, base_url=emu.base_url)
        )
        assert emu.stats()["submissions"] == 3
    assert dry.returncode == 0, dry.stderr
    assert "3 valid jobs, 0 invalid" in dry.stdout and "3 done" in dry.stdout
    assert "Would submit 0 jobs" in dry.stdout
    assert again.returncode == 0, again.stderr
    assert "not found" not in again.stderr
    status = run_cli("status", "l.jsonl", cwd=tmp_path)
    assert status.returncode == 0 and "Invalid" not in status.stdout


# --- rows edited in place under the same id -----------------------------------------------------------


def _edit_rows() -> list[dict[str, Any]]:
    return [
        {"id": "cat", "workflow": "sketch", "input": {"input_image": png_data_uri(1)}},
        {"id": "dog", "workflow": "sketch", "input": {"input_image": png_data_uri(2)}},
        {"input_image": png_data_uri(3)},  # no id: its id is the hash of its inputs
    ]


async def test_a_row_edited_under_the_same_id_is_not_run_again_but_warned_about_every_run(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """Same id, other input: not paid for again, one warning per row and run naming the file,
    line, id and fix, counted in the summary (exit 1). An edited row without an id is simply a new
    job. A ledger written before the inputs' hash was recorded has nothing to compare: no warning."""
    clock = ScaledClock(SPEED)
    rows = _edit_rows()
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert first.exit_code is ExitCode.OK
        rows[1]["input"]["input_image"] = png_data_uri(20)  # the typo fixed, the id kept
        rows[2]["input_image"] = png_data_uri(30)
        write_jsonl(manifest, rows)
        results = []
        for _ in range(2):
            caplog.clear()
            with caplog.at_level(logging.WARNING, logger="batcher"):
                results.append(await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock))
            warned = _loud(caplog)
            assert len(warned) == 1, warned
            assert warned[0].startswith(f"{manifest}:2: id 'dog': ")
            assert "other inputs" in warned[0] and "give the row a new id" in warned[0]
        assert emu.stats()["submissions"] == 4  # the id-less edit is a new job; 'dog' is not sent again
        second, third = results
        # A ledger from before the hash was recorded: nothing to compare, nothing said.
        records = ledger_lines(ledger)
        for rec in records:
            rec.pop("inputs_hash", None)
        ledger.write_text("".join(json.dumps(r) + "\n" for r in records))
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="batcher"):
            old = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert _loud(caplog) == []
    assert second.stats.submitted == 1 and second.stats.edited == 1 and second.stats.skipped == 2
    assert second.exit_code is ExitCode.FAILED
    summary = render_summary(second)
    assert "1 edited row not run" in summary
    assert "Edited: 1 row has the id of a job that ran with other inputs" in summary
    assert third.stats.submitted == 0 and third.stats.edited == 1 and third.exit_code is ExitCode.FAILED
    assert "Nothing to do" not in render_summary(third)
    assert old.exit_code is ExitCode.OK and old.stats.edited == 0 and old.stats.skipped == 3


async def test_status_and_dry_run_show_rows_edited_under_the_same_id(tmp_path: Path) -> None:
    """The morning after: ``batcher status`` says the last run left an edited row alone, and
    ``--dry-run`` warns about it as the run does (exit 1)."""
    write_jsonl(tmp_path / "m.jsonl", _edit_rows())
    common = ["m.jsonl", "--ledger", "l.jsonl", "--out", "out"]
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.1)) as emu:
        first = await anyio.to_thread.run_sync(
            lambda: run_cli("run", *common, *CLI_FAST, cwd=tmp_path, base_url=emu.base_url)
        )
        assert first.returncode == 0, first.stderr
        rows = _edit_rows()
        rows[0]["input"]["input_image"] = png_data_uri(10)
        write_jsonl(tmp_path / "m.jsonl", rows)
        dry = await anyio.to_thread.run_sync(lambda: run_cli("run", *common, "--dry-run", cwd=tmp_path))
        again = await anyio.to_thread.run_sync(
            lambda: run_cli("run", *common, *CLI_FAST, cwd=tmp_path, base_url=emu.base_url)
        )
        assert emu.stats()["submissions"] == 3
    assert dry.returncode == 1
    assert "m.jsonl:1: id 'cat': " in dry.stderr and "1 edited" in dry.stdout
    assert "Would submit 0 jobs" in dry.stdout
    assert again.returncode == 1 and "m.jsonl:1: id 'cat': " in again.stderr
    assert "Edited: 1 row" in again.stdout
    status = run_cli("status", "l.jsonl", cwd=tmp_path)
    assert status.returncode == 0
    assert "1 row edited since its job ran" in status.stdout
    assert (
        json.loads(run_cli("status", "l.jsonl", "--json", cwd=tmp_path).stdout)["last_run"]["edited_rows"]
        == 1
    )
    report = ledger_status(tmp_path / "l.jsonl", prices={}, now=time.time())
    assert report.edited_rows == 1 and report.invalid_total == 0  # an edited row is not an invalid one
    assert "1 row edited since its job ran" in render_status_text(report)


# --- many bad or edited rows ------------------------------------------------------------------------


async def test_many_bad_or_edited_rows_are_named_up_to_50_then_counted(
    tmp_path: Path, registry: WorkflowRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A manifest whose rows are all bad (a misspelt CSV header) named every one of them in the
    log: 50,000 identical lines in the cron log every night, and as many from --dry-run; so did
    rows edited under the id of a job that ran. The first 50 of each kind are named, then one line
    says more follow; the summary, the dry run and the ledger still count every one."""
    from batcher.dryrun import dry_run

    clock = ScaledClock(SPEED)
    good = [
        {
            "id": f"e{i:02d}",
            "workflow": "sketch",
            "input": {"input_image": f"https://img.example.com/{i}.jpg"},
        }
        for i in range(60)
    ]
    bad = [{"id": f"x{i:02d}", "workflow": "sketch", "input": {"input_image": "ftp://x"}} for i in range(70)]
    manifest = write_jsonl(tmp_path / "m.jsonl", [*good, *bad])
    ledger = tmp_path / "ledger.jsonl"

    def said(text: str) -> int:
        return sum(text in message for message in _loud(caplog))

    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="batcher"):
            first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert first.stats.invalid == 70 and first.stats.outcomes["completed"] == 60
        assert said("ftp") == 50 and said("more invalid rows follow") == 1
        assert sum(r["status"] == "invalid" for r in ledger_lines(ledger)) == 70

        for row in good:  # every good row edited in place under its id
            row["input"]["input_image"] += "?v=2"
        write_jsonl(manifest, [*good, *bad])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="batcher"):
            second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert second.stats.edited == 60 and second.stats.submitted == 0
        assert said("the ledger's job of this id was sent with other inputs") == 50
        assert said("more rows edited under the id of a job that ran follow") == 1
        assert said("ftp") == 50 and said("more invalid rows follow") == 1

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="batcher"):
            report = dry_run(settings_for(emu.base_url, tmp_path), [manifest], registry)
    assert (report.invalid, report.edited) == (70, 60)
    assert said("ftp") == 50 and said("more invalid rows follow") == 1
    assert said("other inputs") == 50 and said("more rows edited") == 1
    assert len(_loud(caplog)) == 102


# --- exports appended as they are ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("export", "nightly"),
    [
        ("\ufeffid,title,description\r\n", "id,title,description\n"),  # Excel's CSV UTF-8: BOM, CRLF
        ("title,id,description\n", "id,title,description\n"),  # its columns in another order
        ('\ufeff{"id": "p3", "title": "Kitchen garden"}\n', None),  # JSONL, behind a BOM
    ],
    ids=["csv with BOM", "columns reordered", "jsonl"],
)
async def test_an_export_appended_with_its_header_row_or_bom_runs_its_rows_and_not_its_header(
    tmp_path: Path, registry: WorkflowRegistry, export: str, nightly: str | None
) -> None:
    """Tonight's rows are an export appended to the manifest as it is (``cat export.csv >>
    nightly.csv``), header row and byte order mark included. That header row was a row of data:
    a blog post titled "title", paid for (id "\\ufeffid"), and with its columns in another order
    every row after it was read into the wrong columns. Now the header row again is no row, the
    rows after it follow it, and a JSONL line behind a BOM is read as a row, not refused as bad
    JSON."""
    clock = ScaledClock(SPEED)
    if nightly is None:
        manifest = write_jsonl(tmp_path / "m.jsonl", [{"id": "p1", "title": "Bread"}])
        added = export
    else:
        manifest = tmp_path / "m.csv"
        manifest.write_text(f"{nightly}p1,Bread,Flour and water\n", encoding="utf-8")
        header = export.lstrip("\ufeff").strip().split(",")
        end = export[len(export.rstrip()) :]
        cells = {"id": "p3", "title": "Kitchen garden", "description": "Herbs"}
        added = export + ",".join(cells[name] for name in header) + end
    with manifest.open("a", encoding="utf-8", newline="") as fh:
        fh.write(added)
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2
    assert result.exit_code is ExitCode.OK and result.stats.invalid == 0
    sent = {
        r["job_id"]: r["inputs"]["Blog_title_and_description"]
        for r in ledger_lines(tmp_path / "ledger.jsonl")
        if r["status"] == "submitting"
    }
    description = "" if nightly is None else "Herbs"
    assert sent["p3"] == f"Title: Kitchen garden\n\nDescription: {description}\n"
    assert set(sent) == {"p1", "p3"}


# --- a ledger lost between runs --------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["deleted", "emptied", "older copy put back"])
async def test_a_ledger_lost_between_runs_stops_the_run_before_anything_is_paid_again(
    tmp_path: Path, registry: WorkflowRegistry, loss: str
) -> None:
    """A ledger deleted, emptied by log rotation, or put back from an older copy between two
    nightly runs knew nothing of jobs whose outputs were on disk: the next run paid for each of
    them again (with it deleted, 7 POSTs where 2 were due). Their outputs show it: the run now stops
    at the first such row, before any POST, naming the file, the ledger and what to do; putting
    the ledger back then runs only the new rows."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        settings = settings_for(emu.base_url, tmp_path)
        assert (await run(settings, [manifest], registry, clock)).stats.outcomes == {"completed": 3}
        older = ledger.read_bytes()
        write_jsonl(manifest, sketch_rows(2, start=3), append=True)
        assert (await run(settings, [manifest], registry, clock)).stats.outcomes == {"completed": 2}
        kept = tmp_path / "ledger.kept"
        shutil.copy(ledger, kept)
        if loss == "deleted":
            ledger.unlink()
        elif loss == "emptied":
            ledger.write_bytes(b"")
        else:
            ledger.write_bytes(older)
        write_jsonl(manifest, sketch_rows(2, start=5), append=True)
        lost = await run(settings, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 5
        first_unknown = "sketch-0000" if loss != "older copy put back" else "sketch-0003"
        reason = lost.stats.stop_reason or ""
        assert str(tmp_path / "out" / f"{first_unknown}.png") in reason
        assert f"the ledger {ledger} has no record of that job" in reason
        assert "Put the ledger back" in reason and "move their old outputs away" in reason
        assert lost.exit_code is ExitCode.FAILED and lost.stats.submitted == 0
        assert lost.stats.outcomes.get("completed", 0) == 0
        # Each of the 7 rows is done (in the older copy) or left for the next run, once.
        assert lost.stats.skipped + lost.stats.left == 7
        # The fix the message gives: the ledger back, and only tonight's rows are sent.
        shutil.copy(kept, ledger)
        back = await run(settings, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 7
    assert back.exit_code is ExitCode.OK and back.stats.outcomes == {"completed": 2}


async def test_a_lost_ledger_shows_in_a_later_row_when_the_first_rows_have_no_outputs(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The first rows' outputs are not on disk (moved away, or their jobs failed) when the ledger
    is lost: the first PROBE_NEW_ROWS (64) new rows are looked at, and the run stops at the
    first whose output is there, here the 64th: no job whose output is on disk is sent again.
    Had it stopped looking sooner, it paid again for every one of them (here three)."""
    clock = ScaledClock(SPEED)
    moved = 63  # outfiles.PROBE_NEW_ROWS - 1, written out: the test must not follow a change of it
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(moved + 3))
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        settings = settings_for(emu.base_url, tmp_path)
        assert (await run(settings, [manifest], registry, clock)).stats.outcomes == {"completed": moved + 3}
        (tmp_path / "ledger.jsonl").unlink()
        for i in range(moved):
            (tmp_path / "out" / f"sketch-{i:04d}.png").unlink()
        lost = await run(settings, [manifest], registry, clock)
        submissions = emu.stats()["submissions"]
    assert str(tmp_path / "out" / f"sketch-{moved:04d}.png") in (lost.stats.stop_reason or "")
    sent = {r["job_id"] for r in ledger_lines(tmp_path / "ledger.jsonl") if r["status"] == "submitting"}
    assert sent and not sent & {f"sketch-{i:04d}" for i in range(moved, moved + 3)}, sorted(sent)
    assert submissions == (moved + 3) + len(sent) and lost.exit_code is ExitCode.FAILED


def test_a_first_run_into_an_empty_folder_stops_looking_for_old_outputs_at_once(tmp_path: Path) -> None:
    """The lost-ledger probe's first look also asks whether the output folder holds anything: a
    missing or empty one cannot hold an earlier run's output, so no later new row is looked at
    (each look is a trip to a thread). A folder holding anything, even unrelated, is looked at
    row by row as before, and the row whose output is there stops the run."""
    from batcher.outfiles import OrphanProbe

    for folder in (tmp_path / "missing", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        probe = OrphanProbe(folder, tmp_path / "ledger.jsonl")
        assert probe.due
        assert probe.look("sketch-0000", "m.jsonl, line 1") is None
        assert not probe.due
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("not an output")
    (kept / "sketch-0001.png").write_bytes(b"an earlier run's output")
    probe = OrphanProbe(kept, tmp_path / "ledger.jsonl")
    assert probe.look("sketch-0000", "m.jsonl, line 1") is None
    assert probe.due
    reason = probe.look("sketch-0001", "m.jsonl, line 2")
    assert reason is not None and str(kept / "sketch-0001.png") in reason
    assert not probe.due


async def test_rows_to_pay_for_again_run_once_their_old_outputs_are_moved_away(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """The other way out the message gives: with the old outputs moved out of the folder, a new
    ledger runs every row; and another manifest with its own ledger and ids saving into the same
    folder is no lost ledger."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    other = write_jsonl(tmp_path / "blog.jsonl", blog_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        settings = settings_for(emu.base_url, tmp_path)
        await run(settings, [manifest], registry, clock)
        blog = settings_for(emu.base_url, tmp_path, **{"ledger.path": tmp_path / "blog-ledger.jsonl"})
        assert (await run(blog, [other], registry, clock)).stats.outcomes == {"completed": 2}
        ledger.unlink()
        assert (await run(settings, [manifest], registry, clock)).stats.submitted == 0
        (tmp_path / "out").rename(tmp_path / "out.old")
        again = await run(settings, [manifest], registry, clock)
        assert emu.stats()["submissions"] == 6
    assert again.exit_code is ExitCode.OK and again.stats.outcomes == {"completed": 2}


def test_dry_run_says_a_run_would_stop_at_a_row_whose_output_is_there_without_a_ledger_record(
    tmp_path: Path,
) -> None:
    """``--dry-run`` tells before the run does (exit 1), and is quiet for rows that are new."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    (tmp_path / "out").mkdir()
    quiet = run_cli("run", "m.jsonl", "--dry-run", "--out", "out", cwd=tmp_path)
    assert quiet.returncode == 0 and "would stop" not in quiet.stdout
    (tmp_path / "out" / "sketch-0001.webp").write_bytes(b"an earlier run's output")
    said = run_cli("run", "m.jsonl", "--dry-run", "--out", "out", cwd=tmp_path)
    assert said.returncode == 1, said.stdout + said.stderr
    assert (
        "A run would stop there: out/sketch-0001.webp is already there, an output of sketch-0001"
        " (m.jsonl, line 2)" in said.stdout
    )
    assert "Traceback" not in said.stderr
