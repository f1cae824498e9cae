"""``batcher status``: what a ledger says, read in one pass without the lock, agreeing with the engine."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from batcher import runsahead
from batcher.cli_inspect import add_status_parser, main_status
from batcher.errors import LedgerError
from batcher.fold import LedgerFold, fold_ledger
from batcher.ledger import Ledger, read_records
from batcher.report import _latest
from batcher.report_data import Page
from batcher.report_html import render_page
from batcher.runsahead import RunsAhead
from batcher.state import LedgerState
from batcher.status import FAILURE_STATUSES, IN_FLIGHT_CAP, ledger_status, normalise_error, summarize
from batcher.status_text import human_duration, price, render_status_text, status_json

from .ledger_builder import PRICES, T0, LedgerBuilder, marks_of, one_big_run
from .support import traced_peak

IMG = {"input_image": "https://images.example.com/cat.jpg"}
BLOG = {"Blog_title_and_description": "Title: Hello\n\nDescription: World\n"}


def _mixed() -> LedgerBuilder:
    """Two runs: completions, failures, an unknown outcome, in-flight jobs, invalid rows in each run."""
    b = LedgerBuilder().run()
    b.invalid(
        "old-row", 9, "input_image", "local file not found: a.png", "give an existing image file or a URL"
    )
    for i in range(3):
        job = f"sketch-{i}"
        b.tick(1).submit(job, "sketch", IMG).tick(30).generated(job).tick(1).completed(
            job, {"image": f"o/{job}.png"}
        )
    b.tick(1).submit("blog-0", "blog-image", BLOG).tick(40).generated("blog-0").tick(1).completed(
        "blog-0", {"image": "o/blog-0.png"}
    )
    b.tick(1).submit("sketch-f1", "sketch", IMG).tick(5)
    b.failed("sketch-f1", f"the provider reported FAILED: request {b.request_ids['sketch-f1']} NSFW content")
    b.tick(1).submit("sketch-f2", "sketch", IMG).tick(5)
    b.failed("sketch-f2", f"the provider reported FAILED: request {b.request_ids['sketch-f2']} NSFW content")
    b.tick(1).submitting("sketch-u", "sketch", IMG).tick(60).line(
        "sketch-u", "submit_unknown", error="HTTP 502"
    )
    b.tick(3600).run()  # second run: resubmits the unknown one, leaves two in flight
    b.invalid("row-7", 7, "title", "is missing or empty", "give title")
    b.tick(1).submit("sketch-u", "sketch", IMG)
    b.tick(1).submit("blog-1", "blog-image", BLOG).tick(2).line("blog-1", "polled", remote_status="STARTING")
    b.tick(1).submit("raw-0", "66cec9a38aeef98f887211f1-v2", {"x": 1})
    b.tick(1).submitting("sketch-d", "sketch", IMG).tick(1).line(
        "sketch-d", "deferred", error="HTTP 429", retryable=True
    )
    return b


def _status(tmp_path: Path, b: LedgerBuilder, now: float | None = None, **kw: Any) -> Any:
    path = b.write(tmp_path / "ledger.jsonl")
    return ledger_status(path, prices=PRICES, now=now if now is not None else b.now, **kw)


def test_counts_are_by_each_jobs_last_line(tmp_path: Path) -> None:
    report = _status(tmp_path, _mixed())
    assert dict(report.by_state) == {"completed": 4, "failed": 2, "submitted": 2, "polled": 1, "deferred": 1}
    assert report.jobs == 10


def test_spend_is_billed_submissions_times_price_and_unknown_prices_are_reported_apart(
    tmp_path: Path,
) -> None:
    report = _status(tmp_path, _mixed())
    by_wf = {s.workflow: (s.submissions, s.price_usd) for s in report.spend}
    # sketch-u was POSTed twice but only answered once: one billed submission.
    assert by_wf == {
        "sketch": (6, 0.1006),
        "blog-image": (2, 0.4363),
        "66cec9a38aeef98f887211f1-v2": (1, None),
    }
    assert report.spend_usd == pytest.approx(6 * 0.1006 + 2 * 0.4363)
    assert report.unpriced_submissions == 1
    assert report.unknown_outcomes == 1


def test_in_flight_jobs_are_listed_oldest_first_with_their_age(tmp_path: Path) -> None:
    b = _mixed()
    report = _status(tmp_path, b, now=b.now + 100)
    assert [f.job_id for f in report.in_flight] == ["sketch-u", "blog-1", "raw-0"]
    assert report.in_flight_total == 3
    ages = [f.age_seconds for f in report.in_flight]
    assert ages == sorted(ages, reverse=True)
    assert ages[-1] == pytest.approx(100 + 2.0, abs=0.01)  # raw-0 was submitted 2 s before the end


def test_the_in_flight_list_is_capped_but_the_total_is_not(tmp_path: Path) -> None:
    b = LedgerBuilder().run()
    for i in range(IN_FLIGHT_CAP + 15):
        b.tick(1).submit(f"job-{i:03d}", "sketch", IMG)
    report = _status(tmp_path, b)
    assert report.in_flight_total == IN_FLIGHT_CAP + 15
    assert [f.job_id for f in report.in_flight] == [f"job-{i:03d}" for i in range(IN_FLIGHT_CAP)]


def test_failures_differing_only_in_request_ids_are_one_reason(tmp_path: Path) -> None:
    report = _status(tmp_path, _mixed())
    assert report.failed_jobs == 2
    assert len(report.failures) == 1
    group = report.failures[0]
    assert group.count == 2 and group.statuses == ("failed",) and group.retryable == 0
    assert group.message == "the provider reported FAILED: request … NSFW content"
    assert group.examples == ("sketch-f1", "sketch-f2")


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        (
            "HTTP 500 on poll: request 4f1c0c7e9a3b4d2e8f6a5b4c3d2e1f00 failed",
            "HTTP 500 on poll: request … failed",
        ),
        ("gateway id 123e4567-e89b-12d3-a456-426614174000", "gateway id …"),
        ("retry after 12.5 s", "retry after N s"),
        ("gave up after 5 tries:\n  HTTP 502", "gave up after 5 tries: HTTP 502"),
        (None, "(no error message)"),
        ("   ", "(no error message)"),
        ("x" * 400, "x" * 299 + "…"),
    ],
)
def test_error_messages_are_normalised_for_grouping(raw: str | None, normalised: str) -> None:
    assert normalise_error(raw) == normalised


def test_failures_that_name_each_jobs_url_are_one_reason_naming_the_host(tmp_path: Path) -> None:
    """A provider that cannot fetch the inputs says so once per job, with that job's URL: 3,000
    such failures read as 3,000 reasons of one job each (20 shown), and an address in them was
    cut down to "N.N" as if it were a timing. The URL keeps its origin; the rest is elided."""
    b = LedgerBuilder().run()
    for i in range(30):
        job = f"sketch-{i:02d}"
        b.tick(1).submit(job, "sketch", {"input_image": f"https://cdn.example.com/p/{i}.jpg"}).tick(5)
        b.failed(
            job,
            "the provider reported FAILED: Failed to process input_image: could not fetch input_image "
            f"from https://cdn.example.com/p/{i}.jpg?sig=a{i}b: cannot connect to "
            f"http://10.0.0.7:8080/img/{i}.jpg (Connect call failed ('10.0.0.7', 8080)); "
            f"input data:image/png;base64,iVBORw0KGgo{i:04d}AAAANSUhEUgAA.",
        )
    report = _status(tmp_path, b)
    assert (report.failed_jobs, report.failure_reasons) == (30, 1)
    assert report.failures[0].count == 30
    assert report.failures[0].message == (
        "the provider reported FAILED: Failed to process input_image: could not fetch input_image "
        "from https://cdn.example.com/…: cannot connect to http://10.0.0.7:8080/… "
        "(Connect call failed ('10.0.0.7', 8080)); input data:…"
    )


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("HTTP 404 from https://x.example/a/b.png.", "HTTP 404 from https://x.example/…."),
        (
            "no answer from http://127.0.0.1:9/p within 300 s",
            "no answer from http://127.0.0.1:9/… within 300 s",
        ),
        ("see https://docs.segmind.com (api 2.1.0)", "see https://docs.segmind.com (api 2.1.0)"),
        (
            "CUDA out of memory. Tried to allocate 2.00 GiB (v1.2.3)",
            "CUDA out of memory. Tried to allocate N GiB (v1.2.3)",
        ),
    ],
)
def test_urls_lose_their_path_and_dotted_numbers_that_are_not_timings_are_kept(
    raw: str, normalised: str
) -> None:
    assert normalise_error(raw) == normalised


def test_more_failure_reasons_than_are_shown_are_counted_everywhere(tmp_path: Path) -> None:
    """With more than 20 distinct reasons, status said "20 reasons shown" (and the report's tile
    "20 distinct reasons"): nothing told that more reasons and more failed jobs were left out."""
    b = LedgerBuilder().run()
    words = [f"reason {chr(ord('a') + i)}" for i in range(25)]
    for i, word in enumerate(words):
        for k in range(2 if i < 20 else 1):  # the 20 commonest fail twice, the last 5 once
            job = f"job-{i:02d}-{k}"
            b.tick(1).submit(job, "sketch", IMG).tick(5).failed(job, f"the provider reported FAILED: {word}")
    report = _status(tmp_path, b)
    assert (report.failed_jobs, report.failure_reasons, len(report.failures)) == (45, 25, 20)
    lines = render_status_text(report).splitlines()
    assert "Failures  45 jobs did not complete, for 25 reasons, the 20 commonest shown" in lines
    assert lines[-1] == "  ... and 5 more reasons (5 jobs)"
    data = status_json(report)
    assert data["failures"]["reasons"] == 25 and len(data["failures"]["groups"]) == 20
    page = render_page(
        Page(title="t", generated="g", status=report, cards=(), completed_total=0, failed=(), durations=[])
    )
    assert ">25 distinct reasons<" in page
    assert "The 20 commonest of 25 reasons; 5 more reasons (5 jobs) not shown." in page


def test_only_the_last_runs_invalid_rows_are_shown(tmp_path: Path) -> None:
    report = _status(tmp_path, _mixed())
    assert report.invalid_total == 1
    assert [(r.row_id, r.line, r.field) for r in report.invalid_rows] == [("row-7", 7, "title")]


def test_next_run_counts_what_each_job_needs(tmp_path: Path) -> None:
    report = _status(tmp_path, _mixed())
    # 3 in flight → attach; sketch-d deferred → submit; failures are permanent.
    assert dict(report.next_run) == {"attach": 3, "download": 0, "unknown": 0, "submit": 1}
    again = _status(tmp_path, _mixed(), retry_failed=True)
    assert dict(again.next_run) == {"attach": 3, "download": 0, "unknown": 0, "submit": 3}


def test_first_and_last_times_runs_and_active_time(tmp_path: Path) -> None:
    b = _mixed()
    report = _status(tmp_path, b)
    assert report.first_ts == "2026-11-21T00:00:00.000Z"
    assert report.last_ts == b.records[-1]["ts"]
    assert len(report.runs) == 2
    first, second = report.runs
    assert first.seconds == pytest.approx(
        sum([1, 0.3, 30, 1] * 3, 0) + 1 + 0.3 + 40 + 1 + 2 * (1 + 0.3 + 5) + 1 + 60
    )
    assert second.submissions == 3 and first.submissions == 6
    assert report.active_seconds == pytest.approx(first.seconds + second.seconds)


def test_status_reads_a_ledger_a_running_batch_holds_locked_and_ignores_its_torn_tail(tmp_path: Path) -> None:
    path = _mixed().write(tmp_path / "ledger.jsonl")
    with Ledger.open(path):
        with path.open("ab") as fh:
            fh.write(b'{"ts":"2026-11-21T02:00:00.000Z","job_id":"sketch-0","status":"fai')  # mid-write
        report = ledger_status(path, prices=PRICES, now=T0)
    assert report.by_state["completed"] == 4


def test_a_missing_ledger_or_a_file_that_is_not_one_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="ledger not found"):
        ledger_status(tmp_path / "nope.jsonl", prices=PRICES, now=T0)
    with pytest.raises(LedgerError, match="not a ledger file"):
        ledger_status(tmp_path, prices=PRICES, now=T0)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\nworld\n")
    with pytest.raises(LedgerError, match="not a batcher ledger"):
        ledger_status(notes, prices=PRICES, now=T0)


def test_an_empty_ledger_is_an_empty_report(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    path.touch()
    report = ledger_status(path, prices=PRICES, now=T0)
    assert report.jobs == 0 and report.lines == 0 and report.runs == ()
    assert "Jobs      0" in render_status_text(report)


def test_text_is_aligned_and_ledger_text_cannot_send_terminal_escapes(tmp_path: Path) -> None:
    b = LedgerBuilder().run().submit("evil\x1b[2J", "sketch", IMG).tick(2)
    b.failed("evil\x1b[2J", "boom \x1b]0;pwned\x07 <script>alert(1)</script>")
    text = render_status_text(_status(tmp_path, b))
    assert "\x1b" not in text and "\x07" not in text
    assert "boom ?]0;pwned? <script>alert(1)</script>" in text
    assert "Spend     $0.10 at list prices for 1 billed submission" in text.splitlines()
    assert "  sketch  1  x $0.1006 = $0.10" in text.splitlines()


def test_the_text_has_every_section_with_its_numbers_in_one_column(tmp_path: Path) -> None:
    text = render_status_text(_status(tmp_path, _mixed()))
    lines = text.splitlines()
    for expected in (
        "Lines     37 in 2 runs, 2026-11-21 00:00:00 UTC to 2026-11-21 01:03:40 UTC (active 3m 41s)",
        "Jobs      10",
        "  completed                              4   40.0%",
        "Spend     $1.48 at list prices for 9 billed submissions",
        "  sketch                                 6  x $0.1006 = $0.60",
        "  66cec9a38aeef98f887211f1-v2            1  (price unknown)",
        "  POST outcome unknown                   1  (may have been billed)",
        "Next run  4 known jobs would run",
        "  re-attach (poll again, never re-POST)  3",
        "In flight 3 submitted, not finished",
        "  sketch-u  sketch                       submitted 2026-11-21 01:03:34 UTC  age 7s",
        "Failures  2 jobs did not complete, 1 reason shown",
        "  2  failed: the provider reported FAILED: request … NSFW content",
        "Invalid   1 manifest row refused by the last run",
        "  /data/jobs.jsonl:7  title: is missing or empty (give title)",
    ):
        assert expected in lines, expected


@pytest.mark.parametrize(
    ("ts", "shown"),
    [
        ("yesterday", "'yesterday' (not a time)"),
        ("bad", "'bad' (not a time)"),
        (5, "-"),  # not text: the line has no time
        ("", "-"),
        ("2026-11-21T05:00:00+05:00", "2026-11-21 00:00:00 UTC"),  # another offset, shown in UTC
        ("2026-11-21T00:00:07", "2026-11-21 00:00:07 UTC"),  # no offset: the ledger's times are UTC
        ("0001-01-01T00:00:00+05:00", "'0001-01-01T00:00:00+05:00' (not a time)"),  # before year 1 in UTC
        ("\x1b]0;pwned\x07" + "9" * 40, "'\\x1b]0;pwned\\x07" + "9" * 21 + "…' (not a time)"),  # escaped, cut
    ],
)
def test_a_hand_edited_time_is_shown_as_it_is_never_as_a_utc_time(
    tmp_path: Path, ts: object, shown: str
) -> None:
    """A ``ts`` that is not a time was shown with UTC after it ("yesterday UTC", "bad UTC"), and one
    with another offset as if it were UTC (05:00:00 UTC for 00:00:00 UTC)."""
    b = LedgerBuilder().run().submit("sketch-a", "sketch", IMG)
    for record in b.records[1:]:
        record["ts"] = ts
    lines = render_status_text(_status(tmp_path, b, now=T0)).splitlines()
    assert lines[-1].startswith(f"  sketch-a  sketch  submitted {shown}  age "), lines
    last = shown if isinstance(ts, str) else "2026-11-21 00:00:00 UTC"  # else the run line's
    assert lines[1].startswith(f"Lines     3 in 1 run, 2026-11-21 00:00:00 UTC to {last}"), lines
    text = "\n".join(lines)
    assert "\x1b" not in text and "\x07" not in text
    for word in re.findall(r"(\S+) UTC", text):  # "UTC" follows a time, and nothing else
        assert re.fullmatch(r"\d\d:\d\d:\d\d", word), word


def test_json_is_plain_data_with_every_number(tmp_path: Path) -> None:
    data = status_json(_status(tmp_path, _mixed()))
    again = json.loads(json.dumps(data))
    assert again["jobs"] == 10
    assert again["spend"]["submissions"] == 9 and again["spend"]["unpriced_submissions"] == 1
    assert again["next_run"] == {
        "total": 4,
        "retry_failed": False,
        "attach": 3,
        "download": 0,
        "unknown": 0,
        "submit": 1,
    }
    assert again["in_flight"]["total"] == 3 and again["in_flight"]["oldest"][0]["job_id"] == "sketch-u"
    assert again["failures"]["groups"][0]["count"] == 2
    assert again["invalid"]["rows"][0]["row_id"] == "row-7"
    assert again["runs"]["count"] == 2


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0, "0s"),
        (59.4, "59s"),
        (61, "1m 01s"),
        (3600 * 5 + 120, "5h 02m"),
        (86400 * 2 + 3 * 3600, "2d 03h"),
    ],
)
def test_durations_read_like_a_person_would_write_them(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("usd", "text"),
    [(0.1006, "$0.1006"), (0.4363, "$0.4363"), (2, "$2.00"), (0.5, "$0.50"), (None, "unknown")],
)
def test_unit_prices_keep_their_tenths_of_a_cent(usd: float | None, text: str) -> None:
    assert price(usd) == text


STATUSES = [
    "submitting",
    "submitted",
    "submit_unknown",
    "deferred",
    "polled",
    "generated",
    "completed",
    "download_failed",
    "failed",
    "expired",
    "newer-status",
    "run",
    "run_end",
]


@st.composite
def _records(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 40))):
        status = draw(st.sampled_from(STATUSES))
        rec: dict[str, Any] = {
            "ts": "2026-11-21T00:00:00.000Z",
            "job_id": None if status in ("run", "run_end") else draw(st.sampled_from("abcde")),
            "status": status,
        }
        if status == "submitting":
            rec["workflow"] = draw(st.sampled_from(["sketch", "blog-image"]))
        if status == "submitted" and draw(st.booleans()):
            rec["poll_url"] = "https://api.segmind.com/workflows/request/x"
        if draw(st.booleans()):
            rec["retryable"] = draw(st.booleans())
            rec["error"] = "boom"
        out.append(rec)
    return out


@settings(max_examples=300, deadline=None)
@given(_records(), st.booleans(), st.booleans())
def test_the_lean_fold_agrees_with_the_engines_replay_on_every_jobs_next_step(
    records: list[dict[str, Any]], retry_failed: bool, read_ahead: bool
) -> None:
    """Also when both read ahead where each run ends (:func:`~batcher.runsahead.run_ends`), as
    ``status`` and ``run`` do: both then settle a job at its ``completed`` line."""
    ahead = marks_of(records) if read_ahead else ()
    state = LedgerState(ahead=RunsAhead(ahead))
    for rec in records:
        state.apply(rec)
    fold = LedgerFold(ahead=RunsAhead(ahead))
    for rec in records:
        fold.apply(rec)
    fold.finish()
    report = summarize(fold, ledger="l", prices=PRICES, now=T0, retry_failed=retry_failed)
    expected: dict[str, int] = {"attach": 0, "download": 0, "unknown": 0, "submit": 0}
    statuses = {}
    for job_id in "abcde":  # every id the records use (done jobs are kept by hash, not listed)
        job = state.job(job_id)
        if job is None:
            continue
        statuses[job_id] = job.status
        step = job.next_step(retry_failed=retry_failed).value
        if step != "nothing":
            expected[step] += 1
    assert dict(report.next_run) == expected
    assert sum(report.by_state.values()) == state.known == len(statuses)
    assert statuses == {j: fold.status_of(j) for j in "abcde" if fold.status_of(j) is not None}


_KILLED_THEN_MENTIONED = [
    {"ts": "2026-11-21T00:00:00.000Z", "job_id": None, "status": "run"},
    {"ts": "2026-11-21T00:00:01.000Z", "job_id": "a", "status": "submitting", "workflow": "sketch"},
    {"ts": "2026-11-21T00:00:02.000Z", "job_id": "a", "status": "submitted", "poll_url": "https://x/p"},
    {"ts": "2026-11-21T00:00:03.000Z", "job_id": "a", "status": "completed"},
    {"ts": "2026-11-21T00:00:04.000Z", "job_id": None, "status": "run"},
    {"ts": "2026-11-21T00:00:05.000Z", "job_id": "a", "status": "polled"},
]

_KILLED_THEN_ENDED_THEN_MENTIONED = [
    *_KILLED_THEN_MENTIONED[:5],
    {"ts": "2026-11-21T00:00:05.000Z", "job_id": None, "status": "run_end"},
    {**_KILLED_THEN_MENTIONED[5], "ts": "2026-11-21T00:00:06.000Z"},
]


@settings(max_examples=300, deadline=None)
@given(_records(), st.booleans())
@example(_KILLED_THEN_MENTIONED, False)
@example(_KILLED_THEN_ENDED_THEN_MENTIONED, False)
def test_a_killed_runs_completed_jobs_held_by_offsets_fold_as_held_whole(
    records: list[dict[str, Any]], retry_failed: bool
) -> None:
    """``status`` and ``report`` fold a ledger file holding the completed jobs of runs that did not
    end in order by the offsets of their lines; the same records folded without offsets hold
    them whole. Both must show the same: the report's counts, next steps, jobs in flight (their
    submission times: a held job mentioned again comes back with its own), failures, latest
    jobs and durations. (The examples: a job completed in a killed run, polled by the next; and
    polled after the next run ended, when it is done for good and no poll_url is kept.)
    The latest jobs are asked for beyond every line (50): with fewer kept, a job mentioned again
    after it was settled (or held) may leave the gallery a job short, as ``latest_done`` says."""
    # Each line its own time, so that a wrong line read shows.
    records = [{**r, "ts": f"2026-11-21T00:{i // 60:02d}:{i % 60:02d}.000Z"} for i, r in enumerate(records)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.jsonl"
        path.write_text("".join(json.dumps(rec) + "\n" for rec in records))
        held = fold_ledger(path, durations=True, lines=True, latest_done=50)
    whole = LedgerFold(durations=True, lines=True, latest_done=50, ahead=RunsAhead(marks_of(records)))
    for rec in records:
        whole.apply(rec)
    whole.finish()
    assert whole.reader is None and held.reader is not None

    def shown(fold: LedgerFold) -> tuple[Any, ...]:
        report = summarize(fold, ledger="l", prices=PRICES, now=T0, retry_failed=retry_failed)
        # Which jobs a failure group names (three) and in what order follow the order jobs were
        # first mentioned, which holding changes: a held job mentioned again is new to the fold
        # (as a done one is). The same for jobs in flight of the same time.
        failures = tuple(
            dataclasses.replace(f, examples=tuple(sorted(f.examples)) if f.count <= 3 else ("…",))
            for f in report.failures
        )
        flights = tuple(sorted(report.in_flight, key=lambda f: f.job_id))
        return (
            dataclasses.replace(report, failures=failures, in_flight=flights),
            _latest(fold, ("completed",), 50),
            _latest(fold, FAILURE_STATUSES, 50),
            fold.durations,
            [(fold.status_of(j), fold.workflow_of(j)) for j in "abcde"],
        )

    assert shown(held) == shown(whole)


def test_status_and_report_keep_the_jobs_of_runs_that_ended_as_hashes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``status`` of a million done jobs held each as an object (330 MB for 100 runs of 10,000,
    400 MB for one run of a million, measured; the report 410 MB): a job completed in a run that
    ended in order is now kept by the hash of its id, as the run keeps it, and from its
    ``completed`` line on when the run is read ahead. What status shows of them is a count; the
    report shows the latest (its gallery), which the fold keeps aside."""
    path = one_big_run(tmp_path / "ledger.jsonl", 2_000, ended=True)
    monkeypatch.setattr(runsahead, "_SCAN_BLOCK", 64 * 1024)  # as in a big file: not the file at once
    fold, peak = traced_peak(lambda: fold_ledger(path))
    assert not fold.jobs and len(fold.done) == 2_000 and fold.status_of("job-00007") == "completed"
    assert peak / 2_000 < 200, peak / 2_000  # bytes a job at the peak: 100 (310 as objects)
    report = summarize(fold, ledger="l", prices=PRICES, now=T0)
    assert (report.jobs, dict(report.by_state)) == (2_000, {"completed": 2_000})
    assert not any(report.next_run.values())
    for_report, peak = traced_peak(lambda: fold_ledger(path, lines=True, latest_done=3))
    assert not for_report.jobs and peak / 2_000 < 200, peak / 2_000
    assert for_report.latest_done() == [(8_001, "job-01999"), (7_997, "job-01998"), (7_993, "job-01997")]


def test_status_and_report_hold_a_killed_runs_completed_jobs_by_offsets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same run killed before its ``run_end``: its completed jobs were kept whole (402 MB
    for a killed million, measured); they are held by the offsets of their lines now, as the
    run's replay holds them, and show the same."""
    path = one_big_run(tmp_path / "ledger.jsonl", 2_000, ended=False)
    monkeypatch.setattr(runsahead, "_SCAN_BLOCK", 64 * 1024)
    fold, peak = traced_peak(lambda: fold_ledger(path))
    assert not fold.jobs and len(fold.done) == 2_000 and fold.status_of("job-00007") == "completed"
    assert peak / 2_000 < 200, peak / 2_000  # bytes a job at the peak (about 400 held whole)
    report = summarize(fold, ledger="l", prices=PRICES, now=T0)
    assert (report.jobs, dict(report.by_state), report.last_run_ended) == (2_000, {"completed": 2_000}, False)
    assert not any(report.next_run.values())
    for_report = fold_ledger(path, lines=True, latest_done=3)
    assert [job_id for _, job_id in for_report.latest_done()] == ["job-01999", "job-01998", "job-01997"]


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batcher")
    add_status_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["status", *argv])


def test_cli_status_prints_text_or_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _mixed().write(tmp_path / "ledger.jsonl")
    assert main_status(_cli([str(path)])) == 0
    assert "Jobs      10" in capsys.readouterr().out
    assert main_status(_cli([str(path), "--json", "--retry-failed"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["next_run"]["submit"] == 3
    assert len(list(read_records(path))) == len(_mixed().records)  # status wrote nothing


def test_cli_status_on_a_missing_ledger_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main_status(_cli([str(tmp_path / "missing.jsonl")])) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"batcher: error: ledger not found: {tmp_path / 'missing.jsonl'}\n"


def test_cli_status_on_a_manifest_says_where_its_ledger_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``batcher status nightly.jsonl``, the manifest for its ledger: the error said only that it
    is no ledger; it says where a run of it keeps its ledger by default."""
    manifest = tmp_path / "nightly.jsonl"
    manifest.write_text('{"input_image": "https://example.com/a.png"}\n')
    assert main_status(_cli([str(manifest)])) == 2
    assert capsys.readouterr().err == (
        f"batcher: error: {manifest} is not a batcher ledger (no line of it is a ledger record); give"
        " the run's ledger (a run of nightly.jsonl without --ledger keeps it in runs/nightly/ledger.jsonl)\n"
    )


@pytest.mark.parametrize("name", ["lighthouse.png", "report.html", "ledger.bak"])
def test_cli_status_on_a_file_no_manifest_gives_no_manifest_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """``batcher status lighthouse.png`` said "a run of lighthouse.png ... keeps it in
    runs/lighthouse/ledger.jsonl", as if every file were a manifest; batcher reads no such one."""
    other = tmp_path / name
    other.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\n" if name.endswith(".png") else b"<p>hi</p>\n")
    assert main_status(_cli([str(other)])) == 2
    assert capsys.readouterr().err == (
        f"batcher: error: {other} is not a batcher ledger (no line of it is a ledger record); give"
        " the run's ledger\n"
    )


@pytest.mark.parametrize("typed", ["nightly.jsonl", "nightly", "jobs/nightly.csv"])
def test_cli_status_on_a_missing_path_names_the_default_ledger_that_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, typed: str
) -> None:
    """``batcher status nightly.jsonl`` where the manifest is not, beside the runs/ folder a run of
    it made: it said only "ledger not found"; it names runs/nightly/ledger.jsonl, which is there."""
    (tmp_path / "runs" / "nightly").mkdir(parents=True)
    _mixed().write(tmp_path / "runs" / "nightly" / "ledger.jsonl")
    monkeypatch.chdir(tmp_path)  # the folder batcher is started in, where runs/ is
    assert main_status(_cli([typed])) == 2
    assert capsys.readouterr().err == (
        f"batcher: error: ledger not found: {typed} (did you mean runs/nightly/ledger.jsonl?)\n"
    )
    assert main_status(_cli(["weekly.jsonl"])) == 2  # only a ledger that is there is named
    assert capsys.readouterr().err == "batcher: error: ledger not found: weekly.jsonl\n"


def test_cli_status_on_a_run_folder_names_its_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``batcher status runs/nightly``, the folder for the file in it: the ledger it holds is named."""
    (tmp_path / "runs" / "nightly").mkdir(parents=True)
    path = _mixed().write(tmp_path / "runs" / "nightly" / "ledger.jsonl")
    assert main_status(_cli([str(path.parent)])) == 2
    assert capsys.readouterr().err == f"batcher: error: not a ledger file: {path.parent} (give {path})\n"
    assert main_status(_cli([str(tmp_path)])) == 2  # no ledger.jsonl in it: the general fix
    assert capsys.readouterr().err.endswith(f"{tmp_path} (give the ledger's .jsonl file)\n")


def test_the_next_run_of_an_unknown_post_follows_the_ledgers_unknown_submit_setting(tmp_path: Path) -> None:
    """``ledger.unknown_submit: fail`` (recorded in the run line) fails such jobs instead of
    resubmitting them; status said "resubmit" whatever the setting."""
    b = LedgerBuilder()
    b.line(
        None,
        "run",
        manifests=["/data/jobs.jsonl"],
        settings={"ledger": {"unknown_submit": "fail"}},
        version=1,
    )
    b.submitting("a", "sketch", {"input_image": "https://x/a.png"})
    path = b.write(tmp_path / "l.jsonl")
    report = ledger_status(path, prices=PRICES, now=b.now)
    assert report.next_run["unknown"] == 1 and report.unknown_submit == "fail"
    assert "POST outcome unknown (fail: ledger.unknown_submit)" in render_status_text(report)
    assert status_json(report)["unknown_submit"] == "fail"
    b.tick(60).run()  # a later run with the default setting: resubmit again
    report = ledger_status(b.write(tmp_path / "l.jsonl"), prices=PRICES, now=b.now)
    assert "POST outcome unknown (resubmit)" in render_status_text(report)


@pytest.mark.parametrize(
    ("policy", "next_words", "retried"),
    [
        ("resubmit", "POST outcome unknown (resubmit)", ", 1 retried next run"),
        ("fail", "POST outcome unknown (fail: ledger.unknown_submit)", ""),
    ],
)
def test_a_job_that_gave_up_on_posts_of_unknown_outcome_is_an_unknown_post_next_run(
    tmp_path: Path, policy: str, next_words: str, retried: str
) -> None:
    """Its last line is a retryable ``failed``, but no POST of it was answered: the next run sends it
    again as a POST of unknown outcome (and counts it), or fails it under ``unknown_submit: fail``.
    Status called it a plain "submit", "retried next run" whatever the setting."""
    b = LedgerBuilder()
    b.line(None, "run", manifests=["/data/jobs.jsonl"], settings={"ledger": {"unknown_submit": policy}})
    for _ in range(2):
        b.tick(1).submitting("a", "sketch", IMG).tick(60).line(
            "a", "submit_unknown", error="HTTP 502", retryable=True
        )
    b.failed("a", "gave up after 2 tries: HTTP 502", retryable=True)
    report = _status(tmp_path, b)
    assert dict(report.next_run) == {"attach": 0, "download": 0, "unknown": 1, "submit": 0}
    text = render_status_text(report)
    assert re.search(rf"\n  {re.escape(next_words)} +1(\n|$)", text)
    assert f"  1  failed{retried}: gave up after 2 tries: HTTP 502" in text
    assert report.failures[0].retryable == (policy == "resubmit")


def test_a_post_a_killed_run_left_unanswered_stays_unknown_until_a_submitted(tmp_path: Path) -> None:
    """A kill between ``submitting`` and the answer: the next run's ``run`` line is the proof. The
    POST may have been billed (counted as of unknown outcome), and a 429 on the way to sending it
    again does not make it a plain submission."""
    b = LedgerBuilder().run()
    b.tick(1).submitting("a", "sketch", IMG)
    b.tick(60).run()  # the first run was killed mid-POST
    b.tick(1).submitting("a", "sketch", IMG).tick(1).line("a", "deferred", error="HTTP 429", retryable=True)
    report = _status(tmp_path, b)
    assert report.unknown_outcomes == 1 and report.next_run["unknown"] == 1
    assert re.search(r"\n  POST outcome unknown +1  \(may have been billed\)\n", render_status_text(report))
    b.tick(1).submit("a", "sketch", IMG)  # answered at last: polled from now on, never re-POSTed
    report = _status(tmp_path, b)
    assert report.unknown_outcomes == 1 and dict(report.next_run)["attach"] == 1
    assert report.next_run["unknown"] == 0


@pytest.mark.anyio
async def test_the_morning_after_a_run_stopped_early_says_what_it_left_unstarted(tmp_path: Path) -> None:
    """Rows a run never got to (here, past its --budget) have no ledger line of their own, so
    status said "0 known jobs would run" and every job 100% completed: the run's ``run_end``
    now says how many it left and why, and status shows it until a run leaves none."""
    from batcher.clock import ScaledClock
    from batcher.emulator import EmulatorConfig, run_emulator
    from batcher.workflows import load_workflows

    from .support import SPEED, run, settings_for, sketch_rows, write_jsonl

    registry = load_workflows()
    clock = ScaledClock(SPEED)
    manifest = write_jsonl(tmp_path / "m.jsonl", sketch_rows(5))
    ledger = tmp_path / "ledger.jsonl"
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=1.0), clock=clock) as emu:
        budget = settings_for(emu.base_url, tmp_path, **{"limits.budget_usd": 0.25})
        first = await run(budget, [manifest], registry, clock)
        assert first.stats.left == 3
        report = ledger_status(ledger, prices=PRICES, now=T0)
        assert report.by_state == {"completed": 2} and report.next_run_total == 0
        assert report.not_started == 3 and (report.stop_reason or "").startswith("budget:")
        text = render_status_text(report)
        assert "Last run  stopped submitting: budget: " in text
        assert text.endswith("; 3 jobs not started (the next run submits them)")
        assert status_json(report)["last_run"] == {
            "not_started": 3,
            "stop_reason": report.stop_reason,
            "edited_rows": 0,
            "rows_unread": False,
            "ended": True,
        }
        await run(settings_for(emu.base_url, tmp_path), [manifest], registry, clock)
    report = ledger_status(ledger, prices=PRICES, now=T0)
    assert report.not_started == 0 and report.stop_reason is None
    assert "Last run" not in render_status_text(report)


def test_in_flight_jobs_are_ordered_by_time_whatever_format_their_time_is_written_in(tmp_path: Path) -> None:
    """Times were sorted as text: one written with an offset (a later version, another tool)
    went last although it was the oldest, and the list shown (the oldest 20) left it out."""
    b = LedgerBuilder().run()
    written = {
        "at-0000": "2026-11-21T01:00:00+01:00",  # 00:00 UTC
        "at-0010": "2026-11-21T00:10:00",  # no offset: UTC
        "at-0020": "2026-11-21T00:20:00.123456Z",  # microseconds
        "at-0030": "2026-11-21T00:30:00.000z",  # a lower-case z
    }
    for job_id in reversed(written):
        b.submit(job_id, "sketch", IMG)
        b.records[-1]["ts"] = written[job_id]
    report = _status(tmp_path, b, now=T0 + 3600)
    assert [f.job_id for f in report.in_flight] == list(written)
    assert [f.age_seconds for f in report.in_flight] == pytest.approx([3600, 3000, 2400 - 0.123456, 1800])


def test_a_job_the_ledger_says_was_submitted_in_the_future_has_no_age(tmp_path: Path) -> None:
    """The clock was set back since the job was sent (or the ledger came from a machine whose
    clock was ahead): its age read "0s", as if it had just been sent. Now it is unknown."""
    b = LedgerBuilder().run().submit("sketch-a", "sketch", IMG).tick(1).submit("sketch-b", "sketch", IMG)
    report = _status(tmp_path, b, now=T0 - 3600)
    assert [f.age_seconds for f in report.in_flight] == [None, None]
    line = render_status_text(report).splitlines()[-1]
    assert line.endswith("age -"), line
    assert status_json(report)["in_flight"]["oldest"][0]["age_seconds"] is None
    # A second ahead is the slack for two machines' clocks: that is a job just sent.
    assert _status(tmp_path, b, now=b.now - 0.5).in_flight[-1].age_seconds == 0.0


@pytest.mark.parametrize("step", [2 * 86400.0, -3600.0], ids=["stepped-forward", "stepped-back"])
def test_a_runs_duration_is_what_its_run_end_says_when_the_clock_stepped_while_it_ran(
    tmp_path: Path, step: float
) -> None:
    """A run's duration was its last line's time minus its first's: an NTP step of two days
    forward made a 90 s run "2d 00h" (and the report's active time with it); a step back made it
    unknown. ``run_end`` now records how long the run took on its monotonic clock."""
    b = LedgerBuilder().run().tick(10).submit("sketch-a", "sketch", IMG).tick(step)
    b.generated("sketch-a").tick(1).completed("sketch-a", {"image": "o/a.png"})
    b.line(None, "run_end", outputs_synced=True, seconds=90.0, not_started=0, stop_reason=None, edited_rows=0)
    b.tick(3600).run().tick(30).line(None, "run_end", outputs_synced=True, seconds=30.5)
    b.tick(3600).run().tick(20)  # killed: no run_end; its lines' times are all there is
    b.submit("sketch-b", "sketch", IMG)
    report = _status(tmp_path, b)
    # Exact, in ms: a span from two ledger times was 20.300000190734863, and `status --json`
    # printed the noise.
    assert [r.seconds for r in report.runs] == [90.0, 30.5, 20.3]
    assert report.active_seconds == 140.8
    assert status_json(report)["runs"]["active_seconds"] == 140.8
    assert "(active 2m 21s)" in render_status_text(report).splitlines()[1]


def test_json_money_is_to_the_millionth_without_float_noise(tmp_path: Path) -> None:
    """Six sketch jobs at $0.1006 printed ``"usd": 0.6035999999999999`` in ``by_workflow``
    (the total was rounded, each workflow's amount was not): a script comparing it with its own
    sum, or printing it, met the float's noise."""
    b = LedgerBuilder().run()
    for i in range(6):
        b.tick(1).submit(f"sketch-{i}", "sketch", IMG)
    b.tick(1).submit("blog-0", "blog-image", BLOG)
    path = b.write(tmp_path / "ledger.jsonl")
    text = json.dumps(status_json(ledger_status(path, prices=PRICES, now=b.now)))
    spend = json.loads(text)["spend"]
    assert [w["usd"] for w in spend["by_workflow"]] == [0.6036, 0.4363]
    assert spend["usd"] == 1.0399
    assert "0.6035999" not in text


def test_json_names_no_workflow_for_submissions_no_submitting_line_names(tmp_path: Path) -> None:
    """A ``submitted`` line without its job's ``submitting`` line (a hand edit, a ledger cut at
    its head): ``in_flight`` said ``"workflow": null`` and ``spend`` said ``"(unknown workflow)"``,
    a name no workflow has, for the same job. Both are null; the text still says it in words."""
    b = LedgerBuilder().run().submitted("orphan")
    report = _status(tmp_path, b)
    data = status_json(report)
    assert data["spend"]["by_workflow"] == [
        {"workflow": None, "submissions": 1, "price_usd": None, "usd": None}
    ]
    assert data["in_flight"]["oldest"][0]["workflow"] is None
    assert re.search(r"\n  \(unknown workflow\) +1  \(price unknown\)\n", render_status_text(report))


def test_json_times_are_utc_iso_to_the_millisecond_whatever_the_ledger_wrote(tmp_path: Path) -> None:
    """``first_ts``, ``last_ts``, an in-flight job's ``submitted`` and a run's ``started`` were the
    ledger's text as written: a time with another offset, one without (UTC to batcher, local
    time to a script's parser), or ``yesterday``. They are one form now, the ledger's own and
    ``--log-format json``'s, and null for what is not a time, as the text shows them."""
    b = LedgerBuilder().run()
    written = {
        "a": "2026-11-21T01:00:00+01:00",
        "b": "2026-11-21T00:00:01.123456",
        "c": "2026-11-21T00:00:02.5z",
        "d": "yesterday",
    }
    for job_id, ts in written.items():
        b.tick(1).submit(job_id, "sketch", IMG)
        b.records[-1]["ts"] = ts
    b.records[0]["ts"] = "2026-11-20T19:00:00-05:00"
    data = status_json(_status(tmp_path, b, now=T0 + 60))
    assert data["first_ts"] == data["runs"]["list"][0]["started"] == "2026-11-21T00:00:00.000Z"
    assert data["last_ts"] is None  # "yesterday", as the text's "'yesterday' (not a time)"
    submitted = {f["job_id"]: f["submitted"] for f in data["in_flight"]["oldest"]}
    assert submitted == {
        "a": "2026-11-21T00:00:00.000Z",
        "b": "2026-11-21T00:00:01.123Z",
        "c": "2026-11-21T00:00:02.500Z",
        "d": None,
    }


def test_json_seconds_of_a_run_are_to_the_millisecond_as_its_total(tmp_path: Path) -> None:
    """A ``run_end`` written with more digits (a hand edit, another tool) was passed through
    (``90.1234567``) beside an ``active_seconds`` rounded to the millisecond."""
    b = LedgerBuilder().run().tick(90).line(None, "run_end", outputs_synced=True, seconds=90.1234567)
    data = status_json(_status(tmp_path, b))
    assert data["runs"]["list"][0]["seconds"] == data["runs"]["active_seconds"] == 90.123


def test_a_last_run_that_wrote_no_end_is_told_from_one_that_ended_with_nothing_left(tmp_path: Path) -> None:
    """A run killed (or cut off, or still running) writes no ``run_end``: its ``last_run`` facts
    are then 0 and None, as for a run that ended in order with nothing left, and a cron check
    reading ``status --json`` could not tell the two apart. ``last_run.ended`` says which, and the
    text says so; a ledger with no run has no last run (null)."""
    b = LedgerBuilder()
    b.submit("sketch-a", "sketch", IMG)  # an older ledger: job lines, no run lines
    assert status_json(_status(tmp_path, b))["last_run"]["ended"] is None
    b.tick(1).run().tick(10).submit("sketch-b", "sketch", IMG)
    b.line(None, "run_end", outputs_synced=True, seconds=10.0, not_started=0, stop_reason=None, edited_rows=0)
    report = _status(tmp_path, b)
    assert status_json(report)["last_run"] == {
        "not_started": 0,
        "stop_reason": None,
        "edited_rows": 0,
        "rows_unread": False,
        "ended": True,
    }
    assert "Last run" not in render_status_text(report)
    b.tick(3600).run().tick(20).submit("sketch-c", "sketch", IMG)  # killed: no run_end
    report = _status(tmp_path, b)
    assert status_json(report)["last_run"]["ended"] is False
    last = "Last run  no end in the ledger: killed, cut off, or still running (the next run goes on)"
    assert last in render_status_text(report).splitlines()


@pytest.mark.parametrize(
    ("jobs", "words"),
    [
        (1, "re-attaches it by its poll_url, never POSTs it"),
        (2, "re-attaches them by their poll_url, never POSTs them"),
    ],
)
def test_jobs_a_run_gave_up_polling_are_said_to_be_re_attached_not_paid_again(
    tmp_path: Path, jobs: int, words: str
) -> None:
    """A job still PROCESSING past ``poll.give_up_after`` is paid for: status says the next run
    polls it again by its poll_url, in words that fit one job as well as many."""
    b = LedgerBuilder().run()
    for i in range(jobs):
        b.tick(1).submit(f"sketch-{i}", "sketch", IMG).tick(7200)
        b.line(
            f"sketch-{i}",
            "failed",
            error="still PROCESSING after 7200.0 s",
            retryable=True,
            gave_up_polling=True,
        )
    report = _status(tmp_path, b)
    assert report.gave_up_polling == jobs
    [line] = [line for line in render_status_text(report).splitlines() if line.startswith("Gave up")]
    assert line.startswith(
        f"Gave up   {jobs} job{'s' if jobs > 1 else ''} still unfinished when a run stopped polling"
    )
    assert line.endswith(f"paid for; the next run {words} again")


def test_a_new_run_starts_the_last_runs_facts_afresh(tmp_path: Path) -> None:
    """The last run's facts are the last run's: a night that stopped at its budget with rows
    left, then a night killed before its ``run_end``, reads as a killed night with nothing
    known left, never as the earlier night's budget stop."""
    b = LedgerBuilder().run().tick(10).submit("sketch-a", "sketch", IMG)
    b.line(
        None,
        "run_end",
        seconds=10.0,
        not_started=5,
        stop_reason="--budget reached",
        edited_rows=2,
        rows_unread=True,
    )
    assert status_json(_status(tmp_path, b))["last_run"] == {
        "not_started": 5,
        "stop_reason": "--budget reached",
        "edited_rows": 2,
        "rows_unread": True,
        "ended": True,
    }
    b.tick(3600).run().tick(20).submit("sketch-b", "sketch", IMG)  # killed: no run_end
    assert status_json(_status(tmp_path, b))["last_run"] == {
        "not_started": 0,
        "stop_reason": None,
        "edited_rows": 0,
        "rows_unread": False,
        "ended": False,
    }


def test_a_hand_edited_run_end_is_read_for_what_it_can_mean(tmp_path: Path) -> None:
    """``true`` is no count of rows and ``"yes"`` is not the flag: each reads as its default."""
    b = LedgerBuilder().run().tick(10).submit("sketch-a", "sketch", IMG)
    b.line(None, "run_end", seconds=10.0, not_started=True, edited_rows=False, rows_unread="yes")
    last = status_json(_status(tmp_path, b))["last_run"]
    assert (last["not_started"], last["edited_rows"], last["rows_unread"]) == (0, 0, False)


def test_each_run_counts_its_own_lines_and_spans_its_dated_lines(tmp_path: Path) -> None:
    """``runs[].lines`` counts a run's line and every line up to the next run's. A line without
    a time (hand-edited) counts as a line but does not end the run's span: a killed run is
    timed from its first to its last dated line."""
    b = _mixed()
    firsts = [i for i, rec in enumerate(b.records) if rec["status"] == "run"]
    report = _status(tmp_path, b)
    assert [r.lines for r in report.runs] == [firsts[1] - firsts[0], len(b.records) - firsts[1]]
    assert sum(r.lines for r in report.runs) == report.lines
    killed = LedgerBuilder().run().tick(30).submit("sketch-a", "sketch", IMG)
    killed.records.append({"job_id": "sketch-a", "status": "polled", "remote_status": "PROCESSING"})
    (run,) = _status(tmp_path, killed).runs
    assert run.lines == 4 and run.seconds == pytest.approx(30.3)


def test_a_killed_run_whose_clock_went_back_has_no_duration_never_a_negative_one(tmp_path: Path) -> None:
    """No ``run_end``, and its last line dated before its first (the clock was set back while
    it ran): how long it ran is unknown, not -3600 s; nor is a job's time to finish that the
    wall clock measured backwards (the report's durations chart)."""
    b = LedgerBuilder().run().tick(10).submit("sketch-a", "sketch", IMG)
    b.tick(-3600).generated("sketch-a")
    (run,) = _status(tmp_path, b).runs
    assert run.seconds is None
    fold = LedgerFold(durations=True)
    for rec in b.records:  # without the monotonic bracket, as a re-attached job's line or an older ledger's
        fold.apply({k: v for k, v in rec.items() if k not in ("finished_after", "finished_by")})
    fold.finish()
    assert fold.durations == []
    assert fold.runs[0].seconds is None


def test_more_invalid_rows_than_are_named_are_all_counted(tmp_path: Path) -> None:
    """The log and ``status`` name the first 50 bad rows of the last run and count the rest."""
    b = LedgerBuilder().run()
    for line in range(1, 61):
        b.invalid(f"row-{line}", line, "input_image", "is missing or empty", "give input_image")
    report = _status(tmp_path, b)
    assert report.invalid_total == 60
    assert [r.line for r in report.invalid_rows] == list(range(1, 51))


def test_expired_and_undownloadable_jobs_are_listed_with_their_own_reason(tmp_path: Path) -> None:
    """A job the provider forgot, and one whose outputs could not be fetched, fail for reasons
    of their own, which ``status`` groups and shows (with which the next run retries)."""
    b = LedgerBuilder().run()
    b.tick(1).submit("sketch-e", "sketch", IMG).tick(5)
    b.line("sketch-e", "expired", error="the provider no longer knows this request (HTTP 404)")
    b.tick(1).submit("sketch-d", "sketch", IMG).tick(5).generated("sketch-d")
    b.line("sketch-d", "download_failed", error="output image: HTTP 403 from the output host", retryable=True)
    report = _status(tmp_path, b)
    reasons = {f.statuses: (f.message, f.retryable) for f in report.failures}
    assert reasons == {
        ("expired",): ("the provider no longer knows this request (HTTP 404)", 0),
        ("download_failed",): ("output image: HTTP 403 from the output host", 1),
    }


def test_a_ledger_whose_first_line_is_still_being_written_is_an_empty_ledger(tmp_path: Path) -> None:
    """``status`` the moment a first run starts: its first line is half written. That is a ledger
    with nothing in it yet, not "not a batcher ledger"."""
    path = tmp_path / "ledger.jsonl"
    path.write_bytes(b'{"ts":"2026-11-21T00:00:00.000Z","job_id":null,"status":"ru')
    report = ledger_status(path, prices=PRICES, now=T0)
    assert report.lines == 0 and report.jobs == 0
