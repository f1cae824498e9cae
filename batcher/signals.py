"""SIGINT, SIGTERM and SIGHUP during a run: the first stops submissions, the second stops at once,
the third leaves.

- **First signal**: ``interrupt`` is set. The run stops submitting, lets the POSTs on the wire
  get their answers recorded, saves its state and exits 130.
- **Second**: ``scope`` is cancelled: the run stops where it is (the ledger is safe at any
  moment) and exits 130.
- **Third**: the process exits 130 from the handler itself, as kill -9 would but with a line
  saying so. A stop can hang where no cancellation reaches (a thread stuck in a write to a dead
  network disk, or in a DNS lookup the loop waits for on its way out; a main thread blocked in a
  system call never runs the loop's hand-off at all), and the user who presses Ctrl-C a third
  time means it. The ledger loses nothing: every line is written to the file the moment it is
  made, and a POST cut off is one of unknown outcome, as after kill -9.

SIGHUP is what a run gets when the terminal it was started from closes (an ssh session ends,
without nohup): its default action killed the run mid-step, as kill -9 does, cutting POSTs on the
wire (of unknown outcome, so sent again and maybe paid twice) and leaving no ``run_end``. It now
stops the run as SIGTERM does. Under ``nohup`` (SIGHUP ignored when batcher started) it stays
ignored: the run goes on after the logout, as nohup promises.

The handlers are plain :func:`signal.signal` handlers that hand the signal to the event loop
(``call_soon_threadsafe``, which wakes it), installed once and left in place until the caller
ignores them for good (``cli._run_is_over``). Not anyio's signal receiver (asyncio's
``add_signal_handler``): closing it puts the default actions back, and a SIGTERM in that moment
ended the process with 143; its replacement raising KeyboardInterrupt from wherever the next
signal landed ended it with exception-group tracebacks, exit 1. Both happened to a storm of
signals about one run in 30.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
from collections.abc import Callable
from typing import NoReturn

import anyio

log = logging.getLogger("batcher")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

#: Why a run got SIGHUP, and how to start one that outlives its terminal.
HANGUP_HINT = "its terminal closed; start it with nohup, or in tmux or screen, to keep it running"


def hand_to_loop(
    deliver: Callable[[int, int], None], *, most: int, then: Callable[[], None] | None = None
) -> None:
    """Install SIGINT and SIGTERM handlers that count every signal and hand the first ``most``
    to the running event loop as ``deliver(signum, nth)``. The next one calls ``then()`` in the
    handler itself, wherever the main thread is (even blocked in a system call, where the loop
    never runs again); later ones are ignored. Call from the loop's thread, inside the loop. They
    stay until :func:`ignore_signals` (the emulator uses them too). A SIGHUP ignored already
    (``nohup``) is left ignored."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(signum: int, frame: object) -> None:
        # Runs in the main thread between two bytecodes, wherever they are: only count, and
        # hand the rest to the loop.
        nonlocal received
        received += 1
        if received == most + 1 and then is not None:
            then()
        if received > most or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed since the check
            loop.call_soon_threadsafe(deliver, signum, received)

    for signum in SIGNALS:
        if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
            continue
        signal.signal(signum, on_signal)


def stop_on_signals(
    interrupt: anyio.Event, scope: anyio.CancelScope, *, last_words: Callable[[], str], code: int
) -> None:
    """Install the run's handlers (call from the event loop's thread, inside the loop). The
    third signal writes ``last_words()`` to stderr and exits with ``code`` (:func:`exit_now`)."""

    def deliver(signum: int, nth: int) -> None:
        if nth == 1:
            hint = f" ({HANGUP_HINT})" if signum == signal.SIGHUP else ""
            log.warning(
                "%s received: stopping submissions, saving state%s", signal.Signals(signum).name, hint
            )
            interrupt.set()
        else:
            log.warning("second signal: stopping now")
            scope.cancel()

    hand_to_loop(deliver, most=2, then=lambda: exit_now(last_words(), code))


def exit_now(words: str, code: int) -> NoReturn:
    """Write ``words`` to stderr and end the process with ``code``, from a signal handler: no
    logging (its lock may be held by the code the signal interrupted), no waiting for threads or
    buffers, and no blocking on a stderr nobody reads (a full pipe would hang the exit it asks for).
    """
    with contextlib.suppress(OSError):
        fcntl.fcntl(2, fcntl.F_SETFL, fcntl.fcntl(2, fcntl.F_GETFL) | os.O_NONBLOCK)
        os.write(2, words.encode(errors="replace"))
    os._exit(code)


def ignore_signals() -> None:
    """SIGINT, SIGTERM and SIGHUP change nothing from here until the process exits (a run or an
    emulator that has stopped: the default actions put back would end it with 143, or a
    traceback)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
