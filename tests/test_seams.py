"""Rows joined to a manifest's last row (it had no line break) are found on the next run, not paid for."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from batcher.clock import ScaledClock
from batcher.dryrun import dry_run
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.engine import ExitCode
from batcher.seams import Seam, recorded_seams, survey
from batcher.state import replay
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


async def test_a_row_appended_onto_a_csv_record_with_a_line_break_in_a_cell_is_reported_not_paid(
    tmp_path: Path, registry: WorkflowRegistry
) -> None:
    """A CSV whose last record has a quoted cell over two lines, and no line break at its end: a
    row appended later lands on that record's last line. It was read as part of the record (the
    title glued into the description, and the record a new job, paid for; the appended row never
    ran); now the line is named, with the byte where the break goes, and nothing is sent. Once
    the break is there, the appended row runs, alone."""
    clock = ScaledClock(SPEED)
    manifest = tmp_path / "posts.csv"
    manifest.write_text('title,description\nBread,"Lower air pressure.\nThirsty flour."')
    async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
        first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert first.stats.submitted == 1
        with manifest.open("a") as fh:
            fh.write("Bikes\n")  # joins line 3
        again = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert again.exit_code is ExitCode.FAILED
        assert again.stats.submitted == 0 and again.stats.invalid == 1
        [invalid] = _invalid(tmp_path / "ledger.jsonl")
        assert invalid["line"] == 3
        assert str(invalid["error"]).startswith(
            "holds two rows joined together (in the row that begins on line 2)"
        )
        column = len('Thirsty flour."')
        assert invalid["fix"] == f"put a line break after byte {column} of this line, then run again"
        manifest.write_text('title,description\nBread,"Lower air pressure.\nThirsty flour."\nBikes\n')
        fixed = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
        assert emu.stats()["submissions"] == 2
    assert fixed.exit_code is ExitCode.OK
    assert fixed.stats.submitted == 1 and fixed.stats.skipped == 1


class _Writer(logging.Handler):
    """A writer still appending to the manifest when the run starts: it writes ``text`` as the
    run sends its first POST (by then the run has read only the first rows: it reads ahead
    only as far as its queue of rows to submit)."""

    def __init__(self, manifest: Path, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.manifest, self.text = manifest, text

    def emit(self, record: logging.LogRecord) -> None:
        if self.text and "submitting recorded" in record.getMessage():
            with self.manifest.open("a") as fh:
                fh.write(self.text)
            self.text = ""


@pytest.fixture
def debug_log() -> Iterator[logging.Logger]:
    logger = logging.getLogger("batcher")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    yield logger
    logger.setLevel(level)


async def test_a_row_still_being_written_when_the_run_starts_is_left_whole_for_the_next_run(
    tmp_path: Path, registry: WorkflowRegistry, debug_log: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    """cron starts the run while a writer is still appending: the list ends in the middle of a
    URL. The run reads the list as it was when it started, and sends neither that half-written
    URL nor the rows appended while it runs; the next run reads them whole and sends them. The
    half line's seam was recorded and the line then finished by its writer, which the next run
    took for a row appended onto it: that line was refused as two rows joined, every night,
    with a fix (a line break inside the URL) that would have paid for two broken URLs."""
    clock = ScaledClock(SPEED)
    manifest = tmp_path / "nightly.txt"
    rows = 200  # more than a run reads ahead of its first POST
    manifest.write_text("".join(f"{_url(i)}\n" for i in range(rows)) + _url(rows)[:-4])
    writer = _Writer(manifest, f".png\n{_url(rows + 1)}\n")
    debug_log.addHandler(writer)
    try:
        async with run_emulator(EmulatorConfig(**FAST), clock=clock) as emu:  # type: ignore[arg-type]
            first = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
            report = dry_run(settings_for(emu.base_url, tmp_path), [manifest], registry)
            second = await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
            submissions = emu.stats()["submissions"]
    finally:
        debug_log.removeHandler(writer)
    assert not writer.text  # the writer did write during the first run
    assert second.exit_code is ExitCode.OK, _invalid(tmp_path / "ledger.jsonl")
    assert second.stats.submitted == 2 and second.stats.invalid == 0 and second.stats.skipped == rows
    assert first.exit_code is ExitCode.OK and first.stats.submitted == rows
    said = f"{manifest}:{rows + 1}: this row was still being written when the run started"
    assert any(r.getMessage().startswith(said) for r in caplog.records)
    assert report.invalid == 0 and sum(report.to_submit.values()) == 2  # the dry run agrees
    assert submissions == rows + 2
    sent = [
        r["inputs"]["input_image"]
        for r in ledger_lines(tmp_path / "ledger.jsonl")
        if r["status"] == "submitting"
    ]
    assert sorted(sent) == sorted(_url(i) for i in range(rows + 2))


def test_an_unfinished_row_is_noted_under_the_run_that_met_it_not_an_earlier_one() -> None:
    """The ledger's state files an ``unfinished`` line under the last ``run`` line before it, so
    that run's seam at the cut is no seam: the next run reads the finished line as the row it is.
    Filed under an earlier run (a mutant that passed the suite, whose ledgers had one run), a
    nightly manifest with runs behind it had that row refused as two rows joined, every night."""
    name = "/srv/batcher/nightly.txt"
    state = replay(
        [
            {"job_id": None, "status": "run", "manifests": [name]},
            {"job_id": None, "status": "run", "manifests": [name], "seams": {name: [[120, 3, 40, "ab"]]}},
            {
                "job_id": None,
                "status": "unfinished",
                "manifest": name,
                "source": "nightly.txt",
                "line": 3,
                "at": 120,
            },
        ]
    )
    assert "unfinished" not in state.runs[0]
    assert recorded_seams(state.runs, name) == []
