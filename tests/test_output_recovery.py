"""Output files are flushed once per run, not fsynced one by one: a run that did not end in order
(no ``run_end`` line) has its saved files checked by the next run, which fetches lost ones again
without paying; a run that ended in order is trusted (a file moved away afterwards stays away)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.workflows import WorkflowRegistry

from .support import SPEED, ledger_lines, run, settings_for, sketch_rows, write_jsonl

pytestmark = pytest.mark.anyio

FAST = EmulatorConfig(duration_median=3.0, duration_spread=0.4, render="placeholder")


def _saved(ledger: Path) -> dict[str, dict[str, object]]:
    """job id → its first saved output, from the last ``completed`` line of each job."""
    return {r["job_id"]: r["outputs"][0] for r in ledger_lines(ledger) if r["status"] == "completed"}


def _crash_before_run_end(ledger: Path) -> None:
    """The ledger as a machine that died before the run's final flush would leave it."""
    lines = ledger.read_text().splitlines(keepends=True)
    assert json.loads(lines[-1])["status"] == "run_end"
    ledger.write_text("".join(lines[:-1]))


async def test_files_lost_before_the_run_ended_are_fetched_again_without_paying(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        saved = _saved(ledger)
        _crash_before_run_end(ledger)
        gone, short, kept = (
            Path(str(saved[j]["path"])) for j in ("sketch-0000", "sketch-0001", "sketch-0002")
        )
        gone.unlink()
        short.write_bytes(b"")  # a power cut can leave an empty file under the final name
        kept_mtime = kept.stat().st_mtime_ns
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert result.stats.outputs_refetched == 2 and result.stats.submitted == 0
    assert after["submissions"] == before["submissions"] == 3
    assert after["output_downloads"] - before["output_downloads"] == 2
    for path, job in ((gone, "sketch-0000"), (short, "sketch-0001")):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == saved[job]["sha256"]
    assert kept.stat().st_mtime_ns == kept_mtime  # an intact file is not touched
    assert ledger_lines(ledger)[-1]["status"] == "run_end"


async def test_a_file_longer_than_recorded_after_a_crash_is_fetched_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A file under an output's name that is longer than the one the ledger recorded (bytes
    left after its end, another file written in its place) is not that output: fetched again,
    free. Taken for intact for being at least as long, it would stay broken for good (the run
    ends in order, and later runs trust its files)."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        saved = _saved(ledger)["sketch-0000"]
        _crash_before_run_end(ledger)
        grown = Path(str(saved["path"]))
        grown.write_bytes(grown.read_bytes() + b"\0" * 512)
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK
    assert result.stats.outputs_refetched == 1 and after["submissions"] == before["submissions"] == 1
    assert hashlib.sha256(grown.read_bytes()).hexdigest() == saved["sha256"]


async def test_files_of_a_run_that_ended_in_order_are_not_checked_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A user may move outputs away after a run; the next run must not fetch them back."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        moved = Path(str(_saved(ledger)["sketch-0000"]["path"]))
        moved.unlink()
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outputs_refetched == 0
    assert after["output_downloads"] == before["output_downloads"] and not moved.exists()


async def test_a_lost_file_without_a_url_is_recovered_by_polling_again(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """An inline output (data: URI or text) has no URL to fetch: the job's poll_url is asked
    once more (free), and the answer's outputs are saved again."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        _crash_before_run_end(ledger)
        lines = ledger_lines(ledger)
        for rec in lines:  # as if the provider had answered with the image inline
            if rec["status"] == "completed":
                rec["outputs"][0]["url"] = None
                path = Path(rec["outputs"][0]["path"])
        ledger.write_text("".join(json.dumps(r) + "\n" for r in lines))
        path.unlink()
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outputs_refetched == 1
    assert result.stats.attached == 1 and after["submissions"] == before["submissions"] == 1
    assert path.exists()


async def test_a_killed_run_resumed_from_another_folder_finds_the_files_it_saved(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Started in one folder with a relative ``--out``, resumed from another: the ledger's paths
    must name the same files (they were recorded relative to the first folder, and the resumed
    run took all of them for lost, fetched them again, and failed them once the provider had
    expired them)."""
    clock = ScaledClock(SPEED)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        monkeypatch.chdir(first)
        await run(
            settings_for(emu.base_url, tmp_path, **{"output.out_dir": Path("out")}),
            [manifest],
            registry,
            clock,
        )
        _crash_before_run_end(ledger)
        monkeypatch.chdir(second)
        before = emu.stats()
        spelled_from_here = Path("..") / "first" / "out"
        result = await run(
            settings_for(emu.base_url, tmp_path, **{"output.out_dir": spelled_from_here}),
            [manifest],
            registry,
            clock,
        )
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outputs_refetched == 0
    assert after["output_downloads"] == before["output_downloads"]
    assert all(Path(str(out["path"])).is_absolute() for out in _saved(ledger).values())


async def test_relative_paths_of_older_ledgers_are_found_from_the_ledgers_folders(
    tmp_path: Path, registry: WorkflowRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older versions recorded paths as given (``runs/out/x.png`` from the project folder); a
    resumed run elsewhere looks for them under the ledger's folder and the folders above it."""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    runs = tmp_path / "runs"
    ledger = runs / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        settings = settings_for(emu.base_url, runs, **{"ledger.path": ledger})
        await run(settings, [manifest], registry, clock)
        _crash_before_run_end(ledger)
        lines = ledger_lines(ledger)
        for rec in lines:  # as an older version run from tmp_path wrote them
            for out in rec.get("outputs") or []:
                if out.get("path"):
                    out["path"] = str(Path(out["path"]).relative_to(tmp_path))
        ledger.write_text("".join(json.dumps(r) + "\n" for r in lines))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        before = emu.stats()
        result = await run(settings, [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outputs_refetched == 0
    assert after["output_downloads"] == before["output_downloads"]


async def test_files_a_later_run_downloaded_for_an_earlier_runs_failed_download_are_checked_after_a_crash(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Run 1's download failed (``download_failed``, then its ``run_end``); run 2 fetched the files
    (a ``completed`` line with no ``generated`` before it in that run) and the machine died before
    its ``run_end``: run 3 checks those files like any other of run 2, and fetches a lost one again
    without paying. (Dating the job's completion by an earlier line of it, before run 1's
    ``run_end``, passed every other test and left the file lost.)"""
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(FAST, clock=clock) as emu:
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        lines = ledger_lines(ledger)
        run_line, completed, run_end = lines[0], lines[-2], lines[-1]
        assert (run_line["status"], completed["status"], run_end["status"]) == ("run", "completed", "run_end")
        generated = next(r for r in lines if r["status"] == "generated")
        failed = {
            **completed,
            "status": "download_failed",
            "outputs": generated["outputs"],
            "retryable": True,
        }
        history = [*lines[:-2], failed, run_end, run_line, completed]  # run 2: no run_end
        ledger.write_text("".join(json.dumps(r) + "\n" for r in history))
        path = Path(str(completed["outputs"][0]["path"]))
        path.unlink()
        before = emu.stats()
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        after = emu.stats()
    assert result.exit_code is ExitCode.OK and result.stats.outputs_refetched == 1
    assert after["submissions"] == before["submissions"] == 1
    assert hashlib.sha256(path.read_bytes()).hexdigest() == completed["outputs"][0]["sha256"]
