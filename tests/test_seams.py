"""Rows joined to a manifest's last row (it had no line break) are found on the next run, not paid for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.dryrun import dry_run
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.seams import Seam, survey
from batcher.workflows import WorkflowRegistry

from .support import SPEED, ledger_lines, run, settings_for, sketch_rows

pytestmark = pytest.mark.anyio

FAST = {"duration_median": 3.0, "duration_spread": 0.4, "render": "placeholder"}


def _url(i: int) -> str:
    return f"https://example.com/i/{i}.png"


def _invalid(ledger: Path) -> list[dict[str, object]]:
    return [r for r in ledger_lines(ledger) if r["status"] == "invalid"]


async def test_a_url_appended_to_a_list_without_a_final_line_break_is_reported_not_paid(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """``echo URL >> list.txt`` on a list whose last line had no line break makes one odd URL;
    the next run names the line and the byte where the break goes, sends nothing for it, and
    keeps saying so until the line break is added; then the appended URL runs, alone."""
    clock = ScaledClock(SPEED)
    manifest = tmp_path / "nightly.txt"
    manifest.write_text(f"{_url(0)}\n{_url(1)}")  # no line break at the end
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert first.stats.submitted == 2
        with manifest.open("a") as fh:
            fh.write(_url(2) + "\n")  # joins line 2
        for _ in range(2):  # reported again by a run that changed nothing
            again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
            assert again.exit_code is ExitCode.FAILED
            assert again.stats.submitted == 0 and again.stats.invalid == 1 and again.stats.skipped == 1
        assert emu.stats()["submissions"] == 2
        invalid = _invalid(ledger)
        assert len(invalid) == 2 and invalid[-1]["line"] == 2
        assert "two rows joined" in str(invalid[-1]["error"])
        fix = f"put a line break after byte {len(_url(1))} of this line, then run again"
        assert invalid[-1]["fix"] == fix
        report = dry_run(settings_for(emu.base_url, tmp_path), [manifest], registry)
        assert report.invalid == 1 and sum(report.to_submit.values()) == 0

        manifest.write_text(f"{_url(0)}\n{_url(1)}\n{_url(2)}\n")  # the line break added
        fixed = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    assert fixed.exit_code is ExitCode.OK
    assert fixed.stats.submitted == 1 and fixed.stats.skipped == 2 and fixed.stats.invalid == 0
    assert "seams" not in ledger_lines(ledger)[-6]  # the last run line: nothing left to check
    runs = [r for r in ledger_lines(ledger) if r["status"] == "run"]
    assert [bool(r.get("seams")) for r in runs] == [True, True, True, False]


async def test_a_joined_jsonl_row_is_named_as_joined_rather_than_as_bad_json(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    clock = ScaledClock(SPEED)
    manifest = tmp_path / "m.jsonl"
    first, second = (json.dumps(r) for r in sketch_rows(2))
    manifest.write_text(first)
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        with manifest.open("a") as fh:
            fh.write(second + "\n")
        result = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    [invalid] = _invalid(tmp_path / "ledger.jsonl")
    assert result.stats.invalid == 1 and invalid["line"] == 1
    assert "two rows joined" in str(invalid["error"]) and "JSON" not in str(invalid["error"])


async def test_no_seam_is_reported_for_a_list_left_alone_rewritten_or_appended_after_a_break(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """Only a file that still holds the old bytes, with more glued right after them, is joined."""
    clock = ScaledClock(SPEED)
    alone, rewritten, spaced = (tmp_path / f"{n}.txt" for n in ("alone", "rewritten", "spaced"))
    for i, path in enumerate((alone, rewritten, spaced)):
        path.write_text(_url(10 * i))
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        manifests = [alone, rewritten, spaced]
        await run(settings_for(emu.base_url, tmp_path), manifests, registry, clock)
        rewritten.write_text(f"{_url(11)}{_url(12)}\n")  # not the bytes the seam was recorded after
        with spaced.open("a") as fh:
            fh.write(f"\n{_url(21)}\n")
        result = await run(settings_for(emu.base_url, tmp_path), manifests, registry, clock)
    assert result.stats.invalid == 0 and result.stats.submitted == 2


def test_a_seam_recorded_by_hand_or_by_another_version_is_ignored_not_trusted(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"{_url(0)}{_url(1)}\n")
    name = str(manifest.resolve())
    good = Seam(len(_url(0)), 1, len(_url(0)), "0" * 16).to_json()
    bad: list[object] = [[0, 1, 1, "x"], [5, 1, 5], "5,1,5,x", [5, True, 5, "x"], [5.0, 1, 5, "x"]]
    runs = [{"manifests": [name], "seams": {name: [*bad, good]}}]
    found = survey([manifest], runs)
    assert found.joined == {}  # the good one's hash does not match the file: not joined
    assert found.record == {}
