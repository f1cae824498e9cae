"""The live display of a running batch: reads the run's counters every few seconds and shows them.

The engine keeps counting in :class:`~batcher.stats.RunStats`; this module only reads them, via a
``read()`` callable that returns a :class:`~batcher.progress_view.Snapshot`
(:func:`~batcher.progress_view.snapshot_from` makes one). Four modes:

- ``rich``: a live panel on a terminal (jobs by state, completion, ETA, spend, credits, request
  rate and recent 429s), redrawn in place;
- ``plain``: one summary line per update, no control characters (cron, CI, pipes);
- ``json``: one JSON object per update, a line each (for tools), shaped as ``--log-format json``'s
  log events are (``ts``, ``level``, ``event``: ``"progress"``, ``message``: the plain line), the
  last one ``"final": true``;
- ``quiet``: nothing.

``auto`` picks ``rich`` on a terminal and ``plain`` elsewhere. What each shows is
:mod:`batcher.progress_view`'s pure functions of a snapshot; time passes through a
:class:`~batcher.clock.Clock`, so tests run without sleeping.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Protocol, TextIO

from rich.console import Console
from rich.live import Live

from .clock import Clock
from .progress_view import Rates, Snapshot, Window, format_plain_line, rich_panel, snapshot_json

MODES = ("auto", "rich", "plain", "json", "quiet")


# --- displays ----------------------------------------------------------------------------


class Display(Protocol):
    """Something that shows snapshots: ``start()``, then ``update()`` repeatedly, then ``finish()``,
    by default every :attr:`every` seconds (when the caller does not say): a terminal panel
    redraws often; a log line every half minute is enough for cron mail and CI logs."""

    every: float

    def start(self) -> None: ...

    def update(self, snap: Snapshot) -> None: ...

    def finish(self, snap: Snapshot | None = None) -> None: ...


class _Base:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.window = Window()

    def start(self) -> None:
        pass

    def update(self, snap: Snapshot) -> None:
        self.show(snap, self.window.observe(snap))

    def finish(self, snap: Snapshot | None = None) -> None:
        if snap is not None:
            self.update(snap)

    def show(self, snap: Snapshot, rates: Rates) -> None:
        raise NotImplementedError


class QuietDisplay(_Base):
    every = 60.0

    def show(self, snap: Snapshot, rates: Rates) -> None:
        pass


class PlainDisplay(_Base):
    every = 30.0

    def show(self, snap: Snapshot, rates: Rates) -> None:
        self.stream.write(format_plain_line(snap, rates) + "\n")
        self.stream.flush()


class JsonDisplay(_Base):
    every = 10.0  # a log shipper's events, more often than plain lines

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._final = False

    def show(self, snap: Snapshot, rates: Rates) -> None:
        data = snapshot_json(snap, rates, final=self._final)
        self.stream.write(json.dumps(data, separators=(",", ":")) + "\n")
        self.stream.flush()

    def finish(self, snap: Snapshot | None = None) -> None:
        self._final = True  # the numbers the run ended with: a reader need not wait for more
        super().finish(snap)


class RichDisplay(_Base):
    """A panel redrawn in place. Refreshes only on :meth:`update` (no refresh thread of its own).

    Log lines written to the same terminal while it is live should go through :attr:`console`
    (``console.print`` or ``rich.logging.RichHandler(console=...)``) so they land above the panel.
    """

    every = 0.5

    def __init__(self, stream: TextIO, console: Console | None = None) -> None:
        super().__init__(stream)
        self.console = console or Console(file=stream, stderr=stream is sys.stderr)
        self._live = Live(
            console=self.console,
            auto_refresh=False,
            transient=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )

    def start(self) -> None:
        self._live.start()

    def show(self, snap: Snapshot, rates: Rates) -> None:
        self._live.update(rich_panel(snap, rates), refresh=True)

    def finish(self, snap: Snapshot | None = None) -> None:
        super().finish(snap)
        self._live.stop()


def resolve_mode(mode: str, stream: TextIO) -> str:
    """``auto`` → ``rich`` on an interactive terminal, else ``plain``; other modes unchanged."""
    if mode not in MODES:
        raise ValueError(f"unknown progress mode {mode!r}: use one of {', '.join(MODES)}")
    if mode != "auto":
        return mode
    interactive = getattr(stream, "isatty", lambda: False)()
    return "rich" if interactive and os.environ.get("TERM", "") != "dumb" else "plain"


def make_display(mode: str, stream: TextIO) -> Display:
    """The display for ``mode`` (``auto`` resolved against ``stream``)."""
    kinds: dict[str, Callable[[TextIO], Display]] = {
        "rich": RichDisplay,
        "plain": PlainDisplay,
        "json": JsonDisplay,
        "quiet": QuietDisplay,
    }
    return kinds[resolve_mode(mode, stream)](stream)


async def run_progress(
    read: Callable[[], Snapshot],
    *,
    clock: Clock,
    mode: str = "auto",
    interval: float | None = None,
    stream: TextIO | None = None,
    display: Display | None = None,
) -> None:
    """Show ``read()`` every ``interval`` seconds of ``clock`` until cancelled, then a final update.

    Without ``interval``, at the pace of the display shown (its ``every``), ``display`` when given:
    the command line makes its display before the run and passes no ``mode``. Run it in the
    batch's task group and cancel it when the batch ends; the last snapshot is shown on the way
    out, so the final numbers are always on screen (or in the log).
    """
    out = stream if stream is not None else sys.stderr
    shown = display if display is not None else make_display(mode, out)
    every = interval if interval is not None else shown.every
    shown.start()
    try:
        while True:
            shown.update(read())
            await clock.sleep(every)
    finally:
        shown.finish(read())
