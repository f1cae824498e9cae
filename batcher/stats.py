"""Counters of a run, updated by the engine and read by the summary and progress displays."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class RunStats:
    """What happened in this run (not the ledger's whole history)."""

    started: float = 0.0  # clock.monotonic() at start
    #: Jobs by the state this run left them in ("completed", "failed", ...).
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Jobs the ledger already had finished, skipped by this run.
    skipped: int = 0
    #: Rows of the manifests that were invalid.
    invalid: int = 0
    #: Rows with their own id whose job was sent with other inputs (edited in place since): not
    #: run again; each makes the exit code 1.
    edited: int = 0
    #: Jobs whose earlier POST had an unknown outcome, submitted again (maybe paid twice).
    resubmitted_unknown: int = 0
    #: POSTs answered 200 in this run, and what they cost by the workflow prices.
    submitted: int = 0
    spend_usd: float = 0.0
    #: What this run may have been billed: answered 200, outcome unknown, or still on the wire.
    committed_usd: float = 0.0
    #: POSTs whose outcome is unknown (5xx, timeouts, broken connections).
    unknown_outcomes: int = 0
    #: Of those, POSTs cut off by the run's stop (a signal, --max-runtime) before their answer.
    cut_submits: int = 0
    #: POSTs answered 200 whose poll_url the ledger failed to record (it could take no more
    #: lines): the next run sees their ``submitting`` line only, and counts them as of unknown
    #: outcome.
    unrecorded: int = 0
    #: Requests sent, by kind, and 429s received.
    requests: Counter[str] = field(default_factory=Counter)
    throttled: int = 0
    #: Jobs re-attached from the ledger (a poll_url was known) and downloads resumed.
    attached: int = 0
    downloads_resumed: int = 0
    #: Of the downloads resumed, those whose URLs no longer worked (403/404/410): their jobs
    #: were polled again for new ones (a request each, not a POST).
    polled_for_urls: int = 0
    #: Jobs waiting to send their POST again when the run ended (after a 429, a 5xx or a lost
    #: answer): no poll_url, so the next run sends them (not counted in ``in_flight``).
    resends_waiting: int = 0
    #: Jobs whose outputs were handed to the download workers and not yet saved or given up on
    #: (at the end of a run: cut short by --max-runtime or a signal; downloaded next run).
    downloading: int = 0
    #: Completed jobs whose saved files were missing after a crash, fetched again.
    outputs_refetched: int = 0
    #: Jobs still unfinished ``poll.give_up_after`` into this run's polling: no longer polled
    #: (not counted in ``outcomes`` or ``in_flight``); the next run re-attaches them, not paid again.
    gave_up_polling: int = 0
    #: Jobs left for a later run (submissions stopped early).
    left: int = 0
    #: The run stopped before it read every manifest row (a signal, the deadline, a refused key):
    #: the rows it did not read are left for a later run too, and not counted in ``left``.
    rows_unread: bool = False
    in_flight: int = 0
    #: Why submissions stopped early, if they did.
    stop_reason: str | None = None
    #: The provider's last word on remaining credits.
    credits: float | None = None

    def finished(self) -> int:
        return sum(self.outcomes.values())

    def carried_over(self) -> int:
        """Jobs this run leaves for the next: not started, in flight, given up polling, waiting to
        send the POST again, cut off mid-POST, accepted but not recorded, or not yet downloaded
        (each makes the exit code 1); manifest rows not read count as one."""
        return (
            self.left
            + self.rows_unread
            + self.in_flight
            + self.gave_up_polling
            + self.resends_waiting
            + self.cut_submits
            + self.unrecorded
            + self.downloading
        )
