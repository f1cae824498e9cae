"""The end-of-run summary's lines: a count of one is singular ("Submitted 1 jobs" was printed)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from batcher.engine import ExitCode, RunResult
from batcher.stats import RunStats
from batcher.summary import render_summary


def _result(n: int) -> RunResult:
    """A run where every counter of the summary is ``n``."""
    stats = RunStats(
        outcomes=Counter(completed=n),
        invalid=n,
        resubmitted_unknown=n,
        submitted=n,
        spend_usd=0.1006 * n,
        unknown_outcomes=n,
        requests=Counter(submit=n, poll=n),
        throttled=n,
        attached=n,
        downloads_resumed=n,
        polled_for_urls=n,
        outputs_refetched=n,
    )
    return RunResult(ExitCode.FAILED, stats, seconds=2.0, ledger=Path("l.jsonl"), out_dir=Path("out"))


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (
            1,
            [
                "This run: 1 completed, 1 invalid row",
                "Submitted 1 job ($0.10 at list prices); "
                "1 submit and 1 poll request, 1 rate-limited (429); 2.0 s",
                "Resumed: 1 job re-attached by poll_url (not paid again), 1 download retried, 1 job polled"
                " again for new output URLs (the ones kept no longer worked)",
                "Recovered: the files of 1 completed job were missing or short after a run that did not end "
                "in order; fetched again (not paid again)",
                "Outcome unknown: 1 POST got no clear answer this run and 1 job with an earlier POST of "
                "unknown outcome had to be sent again; each may have been billed twice",
            ],
        ),
        (
            2,
            [
                "This run: 2 completed, 2 invalid rows",
                "Submitted 2 jobs ($0.20 at list prices); "
                "2 submit and 2 poll requests, 2 rate-limited (429); 2.0 s",
                "Resumed: 2 jobs re-attached by poll_url (not paid again), 2 downloads retried, 2 jobs"
                " polled again for new output URLs (the ones kept no longer worked)",
                "Recovered: the files of 2 completed jobs were missing or short after a run that did not end "
                "in order; fetched again (not paid again)",
                "Outcome unknown: 2 POSTs got no clear answer this run and 2 jobs with an earlier POST of "
                "unknown outcome had to be sent again; each may have been billed twice",
            ],
        ),
    ],
)
def test_counts_of_one_are_singular_and_others_plural(n: int, expected: list[str]) -> None:
    lines = render_summary(_result(n)).splitlines()
    for line in expected:
        assert line in lines, (line, lines)


@pytest.mark.parametrize(
    ("earlier", "expected"),
    [
        (Counter(completed=1), "Nothing to do: every job is already complete (1 job)."),
        (Counter(completed=2), "Nothing to do: every job is already complete (2 jobs)."),
        (
            Counter(failed=1),
            "Nothing to do: 0 of 1 job complete; 1 failed (use --retry-failed to run those again).",
        ),
        (
            Counter(completed=1, failed=1),
            "Nothing to do: 1 of 2 jobs complete; 1 failed (use --retry-failed to run those again).",
        ),
    ],
)
def test_nothing_to_do_counts_the_jobs_in_singular_and_plural(earlier: Counter[str], expected: str) -> None:
    result = RunResult(ExitCode.OK, RunStats(), earlier=earlier, ledger=Path("l.jsonl"), out_dir=Path("o"))
    assert render_summary(result).splitlines()[0] == expected


def test_the_counts_of_a_big_run_have_thousands_separators() -> None:
    """A 50,000-job nightly summary read "This run: 29597 completed ... From earlier runs: 21403
    completed" beside "Submitted 29,577 jobs": every count is grouped the same way."""
    stats = RunStats(
        outcomes=Counter(completed=29_597, failed=1_234), in_flight=2_048, downloading=1_500, left=12_000
    )
    result = RunResult(
        ExitCode.FAILED,
        stats,
        earlier=Counter(completed=21_403, expired=1_001),
        ledger=Path("l.jsonl"),
        out_dir=Path("o"),
    )
    lines = render_summary(result).splitlines()
    assert lines[0] == (
        "This run: 29,597 completed, 1,234 failed, 2,048 still in flight (re-attached next run), "
        "1,500 not yet downloaded (next run fetches them, not paid again), 12,000 not started"
    )
    assert lines[1] == "From earlier runs: 21,403 completed, 1,001 expired"
    idle = RunResult(ExitCode.OK, RunStats(), earlier=Counter(completed=50_000, failed=1_500))
    assert render_summary(idle).splitlines()[0] == (
        "Nothing to do: 50,000 of 51,500 jobs complete; 1,500 failed (use --retry-failed to run those again)."
    )


@pytest.mark.parametrize(
    ("unknown", "resent", "expected"),
    [
        (1, 0, "Outcome unknown: 1 POST got no clear answer this run; each may have been billed twice"),
        (
            0,
            2,
            "Outcome unknown: 2 jobs with an earlier POST of unknown outcome had to be sent again; each may"
            " have been billed twice",
        ),
    ],
)
def test_the_unknown_outcome_line_names_only_the_counts_that_happened(
    unknown: int, resent: int, expected: str
) -> None:
    """A run whose one lost POST was sent again in the same run said "1 POST got no clear answer
    this run and 0 jobs with an earlier POST of unknown outcome had to be sent again"."""
    stats = RunStats(outcomes=Counter(completed=1), unknown_outcomes=unknown, resubmitted_unknown=resent)
    result = RunResult(ExitCode.OK, stats, ledger=Path("l.jsonl"), out_dir=Path("o"))
    assert expected in render_summary(result).splitlines()
