"""The end-of-run summary: counts by state, spend, duration, where things are."""

from __future__ import annotations

from .result import ExitCode, RunResult
from .status_text import human_duration, plural


def _money(usd: float) -> str:
    return f"${usd:,.2f}"


def render_summary(result: RunResult) -> str:
    """A few plain lines for a terminal or a log file."""
    st = result.stats
    done_now = st.finished()
    lines = []
    states = dict(st.outcomes)
    total_completed = states.get("completed", 0) + result.earlier.get("completed", 0)
    idle = not (st.carried_over() or st.invalid or st.edited or result.interrupted)
    if done_now == 0 and idle:
        total = sum(result.earlier.values())
        if total and total_completed == total:
            lines.append(f"Nothing to do: every job is already complete ({plural(total, 'job')}).")
        elif total:
            rest = ", ".join(f"{n:,} {k}" for k, n in sorted(result.earlier.items()) if k != "completed")
            lines.append(
                f"Nothing to do: {total_completed:,} of {plural(total, 'job')} complete; {rest} "
                "(use --retry-failed to run those again)."
            )
        else:
            lines.append("Nothing to do: the manifest has no jobs.")
    else:
        parts = [f"{n:,} {k}" for k, n in sorted(states.items())]
        if st.invalid:
            parts.append(plural(st.invalid, "invalid row"))
        if st.edited:
            parts.append(f"{plural(st.edited, 'edited row')} not run")
        if st.in_flight:
            parts.append(f"{st.in_flight:,} still in flight (re-attached next run)")
        if st.gave_up_polling:
            parts.append(
                f"{st.gave_up_polling:,} given up polling, unfinished (re-attached next run, not paid again)"
            )
        if st.resends_waiting:
            parts.append(
                f"{plural(st.resends_waiting, 'job')} waiting to send the POST again (sent next run)"
            )
        if st.cut_submits:
            parts.append(f"{plural(st.cut_submits, 'POST')} cut off by the stop (outcome unknown)")
        if st.unrecorded:
            parts.append(
                f"{plural(st.unrecorded, 'job')} accepted but not recorded by the ledger (its POST"
                " counts as of unknown outcome next run)"
            )
        if st.downloading:
            parts.append(f"{st.downloading:,} not yet downloaded (next run fetches them, not paid again)")
        if st.left:
            parts.append(f"{st.left:,} not started")
        if st.rows_unread:
            # The run stopped before the end of its manifests: the rows it did not get to are
            # not in the count above.
            parts.append("the rest of the manifest not read (the next run reads it)")
        lines.append("This run: " + (", ".join(parts) if parts else "no jobs finished"))
        if result.earlier:
            earlier = ", ".join(f"{n:,} {k}" for k, n in sorted(result.earlier.items()))
            lines.append(f"From earlier runs: {earlier}")
    req = st.requests
    lines.append(
        f"Submitted {plural(st.submitted, 'job')} ({_money(st.spend_usd)} at list prices); "
        f"{req['submit']:,} submit and {plural(req['poll'], 'poll request')}, "
        f"{st.throttled:,} rate-limited (429); "
        f"{result.seconds:.1f} s"
    )
    if st.attached or st.downloads_resumed:
        lines.append(
            f"Resumed: {plural(st.attached, 'job')} re-attached by poll_url (not paid again), "
            f"{plural(st.downloads_resumed, 'download')} retried"
            + (
                f", {plural(st.polled_for_urls, 'job')} polled again for new output URLs (the ones"
                " kept no longer worked)"
                if st.polled_for_urls
                else ""
            )
        )
    if st.gave_up_polling:
        cap = human_duration(result.give_up_after) if result.give_up_after is not None else "the cap"
        lines.append(
            f"Gave up polling: {plural(st.gave_up_polling, 'job')} still not finished after {cap} of "
            "polling in this run (poll.give_up_after); each is paid for and is re-attached by its "
            "poll_url next run, never POSTed again"
        )
    if st.outputs_refetched:
        lines.append(
            f"Recovered: the files of {plural(st.outputs_refetched, 'completed job')} were missing or "
            "short after a run that did not end in order; fetched again (not paid again)"
        )
    if st.resubmitted_unknown or st.unknown_outcomes:
        parts = []  # only the counts that happened (it said "... and 0 jobs with ...")
        if st.unknown_outcomes:
            parts.append(f"{plural(st.unknown_outcomes, 'POST')} got no clear answer this run")
        if st.resubmitted_unknown:
            parts.append(
                f"{plural(st.resubmitted_unknown, 'job')} with an earlier POST of unknown outcome had to"
                " be sent again"
            )
        lines.append(f"Outcome unknown: {' and '.join(parts)}; each may have been billed twice")
    if st.edited:
        what = "row has the id of a job" if st.edited == 1 else "rows have the ids of jobs"
        lines.append(
            f"Edited: {st.edited:,} {what} that ran with other inputs; not run again (see the "
            "warnings above: a new id runs a row as it is now, and is paid for)"
        )
    if st.credits is not None:
        lines.append(f"Provider credits remaining: {_money(st.credits)}")
    if st.stop_reason and not result.interrupted:
        lines.append(f"Stopped submitting: {st.stop_reason}")
    if result.interrupted:
        lines.append("Interrupted: state saved; run the same command again to resume.")
    lines.append(f"Ledger: {result.ledger}")
    lines.append(f"Outputs: {result.out_dir}")
    if result.exit_code is ExitCode.FAILED:
        lines.append("Some jobs did not complete: see the lines above, or the ledger.")
    return "\n".join(lines)
