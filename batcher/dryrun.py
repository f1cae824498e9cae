"""``batcher run --dry-run``: validate every row, count what would run and what it would cost.

Sends nothing and writes nothing; reads the ledger without taking its lock (a run may hold it).
Rows are judged as the run judges them: a row whose job the ledger has done (or polls) needs no
local file, and a row edited under the id of a job that ran is warned about and not counted.
A ledger the run would refuse (written for other manifests or workflow settings) is refused here
too, with the same error, unless ``--force``.
Streams the manifests, so a million rows cost memory only for the ledger's jobs and the set of ids
seen (for duplicate detection).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import Settings, with_paths
from .download import check_out_dir
from .errors import RowError
from .ledger import check_ledger_path
from .ledger_match import check_compatible
from .manifest import Unfinished, check_manifest_paths, read_manifests
from .outfiles import OrphanProbe
from .preflight import check_default_ledger
from .rowlog import ROW_MESSAGES, RowLog
from .seams import survey
from .state import LedgerState, Next, replay_file, sends
from .status_text import plural
from .workflows import WorkflowRegistry

log = logging.getLogger("batcher")


@dataclass
class DryRunReport:
    rows: int = 0
    invalid: int = 0
    #: Rows with their own id whose job was sent with other inputs: the run would not send them.
    edited: int = 0
    #: Rows at a manifest's end still being written (left for a later run).
    unfinished: int = 0
    #: Valid jobs by workflow name.
    jobs: Counter[str] = field(default_factory=Counter)
    #: Jobs the ledger already knows, by what they need next ("nothing", "attach", ...).
    known: Counter[str] = field(default_factory=Counter)
    #: Jobs that would be submitted, by workflow, and what they would cost at list prices.
    to_submit: Counter[str] = field(default_factory=Counter)
    cost_usd: float = 0.0
    #: Jobs to submit whose workflow has no known price.
    unpriced: int = 0
    ledger: Path | None = None
    #: Why a run would stop at once: a new row's output is already on disk (a ledger lost).
    orphan: str | None = None


def dry_run(settings: Settings, manifests: Sequence[Path], registry: WorkflowRegistry) -> DryRunReport:
    check_manifest_paths(manifests)
    check_default_ledger(settings, manifests)
    settings = with_paths(settings, list(manifests))
    if settings.ledger.path is not None:
        check_ledger_path(settings.ledger.path)
    if settings.output.out_dir is not None:
        check_out_dir(settings.output.out_dir, create=False)
    report = DryRunReport(ledger=settings.ledger.path)
    state = LedgerState()
    if settings.ledger.path is not None:
        state = replay_file(settings.ledger.path)
        if not settings.ledger.force:
            names = [str(p.resolve()) for p in manifests]
            check_compatible(
                state, names, registry.fingerprints(), registry.templates(), ledger=str(settings.ledger.path)
            )
    retry_failed, unknown_submit = settings.retry_failed, settings.ledger.unknown_submit

    needs_files = functools.partial(
        state.would_send, retry_failed=retry_failed, unknown_submit=unknown_submit
    )

    found = survey(manifests, state.runs)
    say_invalid = RowLog(
        logging.ERROR,
        f"more invalid rows follow, not named here (the first {ROW_MESSAGES} are); counted below",
    )
    say_edited = RowLog(
        logging.WARNING,
        f"more rows edited under the id of a job that ran follow, not named here (the first "
        f"{ROW_MESSAGES} are); counted below",
    )
    probe = OrphanProbe(settings.output.out_dir, settings.ledger.path)
    for item in read_manifests(manifests, registry, survey=found, needs_files=needs_files):
        if isinstance(item, Unfinished):
            log.warning("%s", item)
            report.unfinished += 1
            continue
        report.rows += 1
        if isinstance(item, RowError):
            report.invalid += 1
            say_invalid(item)
            continue
        wf = item.workflow
        report.jobs[wf.name] += 1
        known = state.job(item.job_id)
        step = known.next_step(retry_failed=retry_failed) if known else Next.SUBMIT
        if known is not None:
            report.known[step.value] += 1
            if edited := item.edited_since(known, step):
                report.edited += 1
                say_edited(edited)
        if (
            known is None
            and probe.due
            and (reason := probe.look(item.job_id, f"{item.path}, line {item.line}"))
        ):
            report.orphan = reason
        if sends(step, unknown_submit=unknown_submit):
            report.to_submit[wf.name] += 1
            if wf.price_usd is None:
                report.unpriced += 1
            else:
                report.cost_usd += wf.price_usd
    return report


#: What each kind of job the ledger knows is called in the dry run's summary.
_KNOWN = {
    Next.NOTHING.value: "done",
    Next.DOWNLOAD.value: "to download",
    Next.ATTACH.value: "to re-attach",
    Next.UNKNOWN.value: "with a POST of unknown outcome",
    Next.SUBMIT.value: "to submit again",
}


def render_dry_run(report: DryRunReport) -> str:
    edited = f", {report.edited:,} edited under the id of a job that ran (not run)" if report.edited else ""
    if report.unfinished:
        edited += f", {report.unfinished:,} still being written (left for a later run)"
    lines = [
        f"Dry run: {plural(report.rows, 'row')}, {plural(sum(report.jobs.values()), 'valid job')}, "
        f"{report.invalid:,} invalid{edited}."
    ]
    for name, n in sorted(report.jobs.items()):
        lines.append(f"  {name}: {plural(n, 'job')}, {report.to_submit.get(name, 0):,} to submit")
    if report.known:
        known = ", ".join(f"{n:,} {_KNOWN.get(k, k)}" for k, n in sorted(report.known.items()))
        lines.append(f"Already in the ledger ({report.ledger}): {known}")
    total = sum(report.to_submit.values())
    # "at list prices" after the jobs with no known price read as if they had one.
    cost = f"${report.cost_usd:,.2f} at list prices"
    if report.unpriced:
        cost += f", plus {plural(report.unpriced, 'job')} of workflows with no known price"
    lines.append(f"Would submit {plural(total, 'job')}, estimated cost {cost}. Nothing was sent.")
    if report.orphan is not None:
        lines.append(f"A run would stop there: {report.orphan}.")
    return "\n".join(lines)
