"""SIGINT and SIGTERM during a run: the first stops submissions, the second stops at once.

- **First signal**: ``interrupt`` is set. The run stops submitting, lets the POSTs on the wire
  get their answers recorded, saves its state and exits 130.
- **Second**: ``scope`` is cancelled: the run stops where it is (the ledger is safe at any
  moment) and exits 130.
- **Any more**: ignored; it is already stopping as fast as it can.

The handlers are plain :func:`signal.signal` handlers that hand the signal to the event loop
(``call_soon_threadsafe``, which wakes it), installed once and left in place until the caller
ignores both signals for good (``cli._run_is_over``). Not anyio's signal receiver (asyncio's
``add_signal_handler``): closing it puts the default actions back, and a SIGTERM in that moment
ended the process with 143; its replacement raising KeyboardInterrupt from wherever the next
signal landed ended it with exception-group tracebacks, exit 1. Both happened to a storm of
signals about one run in 30.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import anyio

log = logging.getLogger("batcher")

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def hand_to_loop(deliver: Callable[[int, int], None], *, most: int) -> None:
    """Install SIGINT and SIGTERM handlers that count every signal and hand the first ``most``
    to the running event loop as ``deliver(signum, nth)``; later ones are ignored. Call from the
    loop's thread, inside the loop. They stay until :func:`ignore_signals` (the emulator uses
    them too)."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(signum: int, frame: object) -> None:
        # Runs in the main thread between two bytecodes, wherever they are: only count, and
        # hand the rest to the loop.
        nonlocal received
        received += 1
        if received > most or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(deliver, signum, received)

    for signum in SIGNALS:
        signal.signal(signum, on_signal)


def stop_on_signals(interrupt: anyio.Event, scope: anyio.CancelScope) -> None:
    """Install the run's handlers (call from the event loop's thread, inside the loop)."""

    def deliver(signum: int, nth: int) -> None:
        if nth == 1:
            log.warning("%s received: stopping submissions, saving state", signal.Signals(signum).name)
            interrupt.set()
        else:
            log.warning("second signal: stopping now")
            scope.cancel()

    hand_to_loop(deliver, most=2)


def ignore_signals() -> None:
    """SIGINT and SIGTERM change nothing from here until the process exits (a run or an emulator
    that has stopped: the default actions put back would end it with 143, or a traceback)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
