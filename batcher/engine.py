"""One run: manifest → submit → poll → download → ledger, resuming whatever the ledger left.

:func:`run_batch` opens and locks the ledger, replays it, checks it belongs to these manifests,
then runs four kinds of task in one task group: the feeder (ledger jobs to re-attach or
download, then manifest rows to submit), the scheduler (every request), the download workers, and
a watcher that turns an interrupt into an orderly stop. It never prints; it returns a
:class:`RunResult` (the CLI prints) and logs through ``logging.getLogger("batcher")``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio

from .actions import Actions
from .api import SegmindAPI
from .clock import Clock, SystemClock
from .collect import Collector, DownloadTask
from .config import Settings
from .download import OutputSaver
from .durations import DurationModel
from .errors import LedgerWriteError
from .feeder import Feeder
from .guards import BudgetGuard, FailureRateGuard, SubmitGuard, WindowGuard
from .handoff import Handoff
from .ledger import Ledger, write_error
from .ledger_match import check_compatible
from .outage import SubmitCircuit
from .outfiles import sync_outputs
from .pollpolicy import PollPolicy
from .preflight import estimate_rows, preflight, warn_unterminated
from .progress_view import Snapshot, snapshot_from
from .ratecontrol import RateController
from .reread import LineReader
from .result import ExitCode as ExitCode
from .result import RunResult as RunResult
from .runsahead import run_ends
from .scheduler import Scheduler
from .seams import survey
from .state import LedgerState
from .stats import RunStats
from .strategies import make_polls, make_rate
from .transport import Transport
from .workflows import WorkflowRegistry

log = logging.getLogger("batcher")

#: Seconds a shutdown waits for POSTs already on the wire, so their poll_urls reach the ledger.
SUBMIT_GRACE = 1.0
#: Real seconds between background ledger syncs (``submitting`` never waits for them).
LEDGER_FLUSH_SECONDS = 1.0


async def run_batch(
    settings: Settings,
    manifests: Sequence[Path],
    *,
    registry: WorkflowRegistry,
    clock: Clock | None = None,
    rng: random.Random | None = None,
    interrupt: anyio.Event | None = None,
    rate: RateController | None = None,
    polls: PollPolicy | None = None,
    progress: Callable[[Callable[[], Snapshot]], Coroutine[Any, Any, None]] | None = None,
) -> RunResult:
    """Run (or resume) the manifests' jobs. Raises UsageError/LedgerError before doing anything."""
    clock = clock or SystemClock()
    rng = rng or random.Random()
    settings = preflight(settings, manifests, registry)
    assert settings.ledger.path is not None
    warn_unterminated(manifests)
    ledger = Ledger.open(settings.ledger.path)
    # Completed jobs of runs that did not end in order are held by the offsets of their lines,
    # read again when the feeder checks their files (see LedgerState).
    reader = LineReader(ledger.path)
    try:
        state = LedgerState(ahead=run_ends(ledger.path), reader=reader)
        durations = DurationModel()
        durations.seed_from_ledger(_tee(ledger.located(), state.apply))
        names = [str(p.resolve()) for p in manifests]
        fingerprints, templates = registry.fingerprints(), registry.templates()
        if not settings.ledger.force:
            check_compatible(state, names, fingerprints, templates, ledger=str(settings.ledger.path))
        seams = survey(manifests, state.runs)
        ledger.event(
            None,
            "run",
            clock.wall(),
            manifests=names,
            workflows=fingerprints,
            templates=templates,
            settings=settings.public(),
            version=1,
            **({"seams": seams.record} if seams.record else {}),
        )
        await ledger.sync()
        if ledger.repaired_bytes:
            log.warning(
                "ledger %s: repaired a torn last line (%d bytes cut)", ledger.path, ledger.repaired_bytes
            )
        run = _Run(
            settings,
            manifests,
            registry,
            clock,
            rng,
            ledger,
            state,
            durations,
            rate or make_rate(settings, rng),
            polls,
        )
        run.progress = progress
        run.total = estimate_rows(manifests)
        run.feeder.survey = seams
        result = await run.go(interrupt or anyio.Event())
        result.repaired_bytes = ledger.repaired_bytes
        return result
    finally:
        reader.close()
        ledger.close()


def _tee(
    located: Iterable[tuple[int, dict[str, Any]]], also: Callable[[dict[str, Any], int], None]
) -> Iterator[dict[str, Any]]:
    """Hand every record, with the offset of its line, to ``also`` on its way through (one
    pass over a large ledger)."""
    for at, record in located:
        also(record, at)
        yield record


class _Run:
    def __init__(
        self,
        settings: Settings,
        manifests: Sequence[Path],
        registry: WorkflowRegistry,
        clock: Clock,
        rng: random.Random,
        ledger: Ledger,
        state: LedgerState,
        durations: DurationModel,
        rate: RateController,
        polls: PollPolicy | None,
    ) -> None:
        self.s = settings
        self.manifests = manifests
        self.registry = registry
        self.clock = clock
        self.rng = rng
        self.ledger = ledger
        self.state = state
        self.durations = durations
        self.stats = RunStats(started=clock.monotonic())
        self.sched = Scheduler(
            clock=clock,
            rate=rate,
            concurrency=settings.concurrency,
            max_requests=settings.api.max_connections,
        )
        retry = settings.retry
        self.sched.circuit = SubmitCircuit(
            base=retry.base_delay, cap=retry.max_delay, probes=2 * retry.max_attempts, rng=rng
        )
        self.feeder = Feeder(
            settings=settings,
            manifests=manifests,
            registry=registry,
            clock=clock,
            ledger=ledger,
            state=state,
            stats=self.stats,
            scheduler=self.sched,
        )
        self.polls = polls or make_polls(settings, durations, lambda: self.sched.pressure)
        self.interrupted = False
        #: The ledger write that failed and stopped the run at once (nothing more is recorded).
        self.ledger_error: LedgerWriteError | None = None
        #: Set when --max-runtime ended the run with jobs still in flight.
        self.out_of_time = False
        self.deadline: float | None = None
        self.sched.guards.extend(self._guards())
        #: Shows snapshots while the run goes (cancelled, with a last update, when it ends).
        self.progress: Callable[[Callable[[], Snapshot]], Coroutine[Any, Any, None]] | None = None
        #: Rows in the manifests, estimated up front for the progress display's ETA.
        self.total: int | None = None

    def snapshot(self) -> Snapshot:
        return snapshot_from(
            self.stats,
            now=self.clock.monotonic(),
            total=self.total,
            in_flight=self.sched.in_flight,
            rate=self.sched.rate.rate,
            wall=self.clock.wall(),
        )

    def _guards(self) -> list[SubmitGuard]:
        lim = self.s.limits
        guards: list[SubmitGuard] = []
        if lim.budget_usd is not None:
            guards.append(BudgetGuard(lim.budget_usd, self.stats))
        if lim.max_runtime is not None:
            self.deadline = self.stats.started + lim.max_runtime
            guards.append(
                WindowGuard(
                    deadline=self.deadline,
                    durations=self.durations,
                    poll_interval=self.s.poll.interval,
                    fallback=min(600.0, lim.max_runtime * 0.1),
                )
            )
        if lim.halt_on_failure_rate is not None:
            guards.append(FailureRateGuard(lim.halt_on_failure_rate, lim.halt_min_finished, self.stats))
        return guards

    async def go(self, interrupt: anyio.Event) -> RunResult:
        downloads: Handoff[DownloadTask] = Handoff()
        s = self.s
        async with Transport(
            connect_timeout=s.api.connect_timeout,
            read_timeout=s.api.read_timeout,
            request_timeout=s.api.request_timeout,
            max_connections=s.api.max_connections,
            proxy=s.api.proxy,
            no_proxy=s.api.no_proxy,
        ) as transport:
            api = SegmindAPI(transport, s.api, self.clock)
            assert s.output.out_dir is not None
            saver = OutputSaver(
                api,
                s.output.out_dir,
                max_bytes=s.output.max_bytes,
                timeout=s.output.timeout,
                min_rate=s.output.min_rate,
            )
            actions = Actions(
                api=api,
                ledger=self.ledger,
                scheduler=self.sched,
                polls=self.polls,
                durations=self.durations,
                settings=s,
                registry=self.registry,
                stats=self.stats,
                downloads=downloads,
                clock=self.clock,
                rng=self.rng,
            )
            self.sched.perform = actions.perform
            self.sched.on_dispatch = actions.dispatched
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._watch, interrupt, tg.cancel_scope)
                    tg.start_soon(self.ledger.flush_every, LEDGER_FLUSH_SECONDS, anyio.sleep)
                    if self.deadline is not None:
                        tg.start_soon(self._window, self.deadline, tg.cancel_scope)
                    if self.progress is not None:
                        tg.start_soon(self.progress, self.snapshot)
                    async with anyio.create_task_group() as work:
                        collector = Collector(
                            ledger=self.ledger,
                            stats=self.stats,
                            retry=s.retry,
                            clock=self.clock,
                            rng=self.rng,
                            stop=self.sched.stop,
                            max_wait=s.rate.max_wait,
                            settle=self.feeder.settle,
                        )
                        for _ in range(s.output.concurrency):
                            work.start_soon(collector.worker, downloads, saver)
                        try:
                            async with anyio.create_task_group() as requests:
                                requests.start_soon(self.feeder.run, downloads)
                                await self.sched.run()
                                if self.sched.halted:
                                    # Stopped at once (a refused key): the rows not read yet stay
                                    # unread. Otherwise submissions stopped, or every row was
                                    # queued: the feeder counts the rest as not started, and ends.
                                    requests.cancel_scope.cancel()
                        finally:
                            downloads.close()  # the workers finish what is queued, then end
                    tg.cancel_scope.cancel()  # done: stop the watchers
            except* LedgerWriteError:
                # A write or sync failed, and the ledger takes nothing more: every task was
                # cancelled at once. A POST on the wire was cut (its `submitting` line makes it
                # of unknown outcome for the next run); jobs with a poll_url are re-attached.
                self._ledger_failed()
            await self._end_run()
        return self._result()

    def _ledger_failed(self) -> None:
        failed = self.ledger.failed
        assert failed is not None, "a LedgerWriteError comes after a failed write or sync"
        self.ledger_error = write_error(self.ledger.path, failed)
        self.sched.halt(f"the ledger could not be written ({(failed.strerror or '').lower()})")

    async def _end_run(self) -> None:
        """Flush this run's output files to disk (one syncfs, not an fsync per file), then
        say so in the ledger: the next run checks the files of runs without ``run_end``. The
        line also says why submissions stopped, how many jobs were left unstarted, and how many
        rows were edited under the id of a job that ran: rows the ledger has no other line for,
        which ``batcher status`` could not see otherwise."""
        assert self.s.output.out_dir is not None
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(sync_outputs, self.s.output.out_dir)
            if self.ledger_error is not None:
                return  # no run_end: the next run checks this run's files, as after a crash
            try:
                self.ledger.event(
                    None,
                    "run_end",
                    self.clock.wall(),
                    outputs_synced=True,
                    # On the run's monotonic clock: its ts lines are wall-clock times, which an
                    # NTP step or a resumed VM can move while it runs.
                    seconds=round(self.clock.monotonic() - self.stats.started, 3),
                    not_started=self.stats.left + len(self.sched.unsent),
                    stop_reason=self.sched.stop_reason,
                    edited_rows=self.stats.edited,
                    # Stopped before every manifest row was read: more than not_started are.
                    **({} if self.feeder.read_all else {"rows_unread": True}),
                )
                await self.ledger.sync()
            except LedgerWriteError:
                self._ledger_failed()

    async def _window(self, deadline: float, scope: anyio.CancelScope) -> None:
        """--max-runtime: at the deadline, stop everything; in-flight jobs resume next run."""
        await self.clock.sleep(deadline - self.clock.monotonic())
        self.out_of_time = True
        log.warning("max runtime reached: stopping; jobs still in flight are re-attached next run")
        await self._stop_now("max runtime reached", scope)

    async def _stop_now(self, reason: str, scope: anyio.CancelScope) -> None:
        """Send nothing more, let POSTs already on the wire land briefly, then cancel all."""
        self.sched.halt(reason)
        with anyio.move_on_after(SUBMIT_GRACE):
            await self.sched.submits_idle()
        scope.cancel()

    async def _watch(self, interrupt: anyio.Event, scope: anyio.CancelScope) -> None:
        """On SIGINT/SIGTERM: stop in order (exit 130); state is saved as it goes."""
        await interrupt.wait()
        self.interrupted = True
        await self._stop_now("interrupted", scope)

    # --- feeding ---------------------------------------------------------------------

    # --- result ----------------------------------------------------------------------

    def _result(self) -> RunResult:
        st = self.stats
        st.left += len(self.sched.unsent)
        st.rows_unread = not self.feeder.read_all
        st.resends_waiting = self.sched.resends_waiting()
        st.in_flight = self.sched.in_flight - st.resends_waiting
        st.stop_reason = self.sched.stop_reason
        seconds = self.clock.monotonic() - st.started
        bad = sum(n for k, n in st.outcomes.items() if k != "completed")
        bad += sum(n for k, n in self.feeder.earlier.items() if k != "completed")
        if self.ledger_error is not None:
            code = ExitCode.LEDGER_WRITE
        elif self.interrupted:
            code = ExitCode.INTERRUPTED
        elif self.sched.stopped_by_provider:
            code = ExitCode.PROVIDER
        elif bad or st.invalid or st.edited or st.carried_over():
            code = ExitCode.FAILED
        else:
            code = ExitCode.OK
        return RunResult(
            code,
            st,
            self.feeder.earlier,
            seconds,
            self.interrupted,
            self.s.ledger.path,
            self.s.output.out_dir,
            give_up_after=self.s.poll.give_up_after,
            ledger_error=self.ledger_error,
        )
