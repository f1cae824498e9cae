"""check_compatible: a ledger is refused for other manifest files or other workflow settings,
never for a manifest that grew."""

from __future__ import annotations

from typing import Any

import pytest

from batcher.errors import LedgerMismatchError
from batcher.ledger_match import check_compatible
from batcher.state import replay

NIGHTLY = "/data/nightly.jsonl"
SKETCH = {"sketch": "f39e439d060f00d3", "blog-image": "1c5a765741340cd9"}
TEMPLATES = {"blog-image": "d5e0693d645f4a38"}


def run_line(manifests: list[str], workflows: Any = SKETCH, templates: Any = TEMPLATES) -> dict[str, Any]:
    return {"ts": "2026-11-21T04:35:42.123Z", "job_id": None, "status": "run", "manifests": manifests,
            "workflows": workflows, "templates": templates}  # fmt: skip


def job_line(job_id: str, workflow: str) -> dict[str, Any]:
    return {"ts": "2026-11-21T04:35:43.000Z", "job_id": job_id, "status": "submitting", "workflow": workflow}


def check(
    records: list[dict[str, Any]], manifests: list[str], workflows: Any = SKETCH, templates: Any = TEMPLATES
) -> None:
    check_compatible(replay(records), manifests, workflows, templates, ledger="ledger.jsonl")


def test_a_new_ledger_fits_any_manifest() -> None:
    check([], ["/anything.csv"], {"sketch": "other"})


def test_the_same_manifest_and_settings_fit_whatever_rows_were_appended() -> None:
    # Rows appended change neither the file set nor a fingerprint: nothing to refuse.
    check([run_line([NIGHTLY]), job_line("a", "sketch")], [NIGHTLY])


def test_another_manifest_file_is_refused_with_what_to_do() -> None:
    with pytest.raises(LedgerMismatchError) as caught:
        check([run_line([NIGHTLY]), job_line("a", "sketch")], ["/data/other.jsonl"])
    message = str(caught.value)
    assert "written for manifest(s) /data/nightly.jsonl, not /data/other.jsonl" in message
    assert "--ledger" in message and "--force" in message


def test_the_file_set_of_any_earlier_run_fits_after_one_forced_run_with_another() -> None:
    records = [run_line([NIGHTLY]), job_line("a", "sketch"), run_line(["/data/once.jsonl"])]
    check(records, [NIGHTLY])
    check(records, ["/data/once.jsonl"])
    with pytest.raises(LedgerMismatchError):
        check(records, ["/data/third.jsonl"])


@pytest.mark.parametrize(
    ("ran", "changed", "refused"),
    [
        ("sketch", "sketch", True),  # its jobs may mean other jobs now
        ("sketch", "blog-image", False),  # a workflow this ledger never ran
        ("blog-image", "blog-image", True),
    ],
)
def test_changed_workflow_settings_are_refused_only_for_workflows_with_jobs(
    ran: str, changed: str, refused: bool
) -> None:
    records = [run_line([NIGHTLY]), job_line("a", ran)]
    now = {**SKETCH, changed: "0000000000000000"}
    if refused:
        with pytest.raises(LedgerMismatchError, match=f"different settings for workflow\\(s\\) {changed}"):
            check(records, [NIGHTLY], now)
    else:
        check(records, [NIGHTLY], now)


def test_a_changed_compose_template_is_refused_since_every_row_without_an_id_would_be_paid_again() -> None:
    records = [run_line([NIGHTLY]), job_line("a", "blog-image")]
    with pytest.raises(LedgerMismatchError, match="compose template of workflow\\(s\\) blog-image changed"):
        check(records, [NIGHTLY], SKETCH, {"blog-image": "ffffffffffffffff"})
    check(records, [NIGHTLY], SKETCH, TEMPLATES)


def test_the_last_runs_fingerprints_count_and_a_ledger_without_them_fits() -> None:
    old = {**SKETCH, "sketch": "0000000000000000"}
    # Settings changed once under --force: the last run's fingerprints are the ones compared.
    check([run_line([NIGHTLY], old), job_line("a", "sketch"), run_line([NIGHTLY])], [NIGHTLY])
    with pytest.raises(LedgerMismatchError):
        check([run_line([NIGHTLY]), job_line("a", "sketch"), run_line([NIGHTLY], old)], [NIGHTLY])
    # Written before fingerprints were recorded: nothing to compare.
    check([run_line([NIGHTLY], None, None), job_line("a", "sketch")], [NIGHTLY], old, {"blog-image": "x"})


def test_a_done_job_counts_as_a_job_of_its_workflow() -> None:
    done = [
        {"ts": "2026-11-21T04:35:44.000Z", "job_id": "a", "status": "completed", "outputs": []},
        {"ts": "2026-11-21T04:35:45.000Z", "job_id": None, "status": "run_end"},
    ]
    records = [run_line([NIGHTLY]), job_line("a", "sketch"), *done]
    state = replay(records)
    assert state.job("a") is not None and "a" not in state.jobs  # settled into the done table
    with pytest.raises(LedgerMismatchError):
        check(records, [NIGHTLY], {**SKETCH, "sketch": "0000000000000000"})
