"""The command line: ``batcher run``, ``batcher emulator`` (``python -m batcher`` is the same).

A user's mistake gets one clear line and exit 2, never a traceback. The flags are in
:mod:`batcher.cli_args`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import shlex
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import anyio
from rich.logging import RichHandler

from .cli_args import blame_flag, build_parser, overrides_from, parse_command_line, wants_json
from .cli_inspect import main_report, main_status
from .clock import SystemClock
from .config import Settings
from .dryrun import DryRunReport, dry_run, render_dry_run
from .engine import run_batch
from .errors import BatcherError, ConfigError, LedgerLockedError, LedgerWriteError
from .preflight import preflight
from .progress import Display, RichDisplay, make_display, resolve_mode, run_progress
from .result import ExitCode, RunResult
from .settings_check import environment_source
from .settings_load import load_settings
from .signals import ignore_signals, stop_on_signals
from .streams import event_line, guard_standard_streams, lost, stderr_event
from .summary import render_summary
from .workflows import WorkflowRegistry, load_workflows

log = logging.getLogger("batcher")

EMULATOR_KEY = "emulator-demo-key"


class _JsonFormatter(logging.Formatter):
    """One JSON object per log event (``--log-format json``), a traceback included as a field
    of it, and a library's record (``aiohttp.server``, ``asyncio``, ``py.warnings``) named by
    its ``logger``: every line on stderr stays one object."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        if record.name != "batcher" and not record.name.startswith("batcher."):
            fields["logger"] = record.name
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        code = getattr(record, "exit_code", None)
        if code is not None:
            fields["exit_code"] = int(code)
        return event_line(
            record.getMessage(),
            level=record.levelname.lower(),
            created=record.created,
            stream=sys.stderr,
            fields=fields,
        )


def _json_logs(args: argparse.Namespace) -> bool:
    """JSON progress on stderr means a machine reads it: log lines are JSON there too."""
    return getattr(args, "log_format", "text") == "json" or getattr(args, "progress", "") == "json"


def _say(args: argparse.Namespace, message: str, *, level: str = "error", code: int | None = None) -> None:
    """A run's last word on stderr (why it stopped): a line as the log's, so that with
    ``--log-format json`` a log shipper reading stderr gets JSON to the end (it was plain text).
    ``code``: the exit code it ends with, an ``exit_code`` field in JSON (the run's last event)."""
    if _json_logs(args):
        fields = {} if code is None else {"exit_code": int(code)}
        print(stderr_event(message, level=level, fields=fields), file=sys.stderr)
    else:
        print(f"batcher: {'error: ' if level == 'error' else ''}{message}", file=sys.stderr)


#: Marks the handler :func:`_setup_logging` put on the root logger (and takes off again).
_OURS = "_batcher_handler"


def _setup_logging(args: argparse.Namespace, display: Display | None) -> None:
    """batcher's log lines through one handler (JSON, plain, or above the live panel); so are
    other loggers' warnings and errors (aiohttp's, asyncio's) and Python's warnings. Without
    that, they went to logging's last-resort handler: plain text, a traceback over many lines,
    among the JSON on stderr, and drawn through a live panel."""
    root = logging.getLogger("batcher")
    handler: logging.Handler
    if isinstance(display, RichDisplay):
        # Log lines print above the live panel instead of tearing it.
        handler = RichHandler(console=display.console, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _JsonFormatter() if _json_logs(args) else logging.Formatter("batcher: %(message)s")
        )
    root.handlers[:] = [handler]
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    root.setLevel(level)
    root.propagate = False
    others = logging.getLogger()  # the root logger keeps its level (WARNING, as the last resort's)
    for old in [h for h in others.handlers if getattr(h, _OURS, False)]:
        others.removeHandler(old)
    setattr(handler, _OURS, True)
    others.addHandler(handler)
    logging.captureWarnings(True)


def _progress_mode(args: argparse.Namespace) -> str:
    if args.quiet:
        return "quiet"
    if args.log_format == "json" and args.progress == "auto":
        return "json"
    return resolve_mode(args.progress, sys.stderr)


@contextlib.asynccontextmanager
async def _emulated(
    settings: Settings, manifests: list[Path], registry: WorkflowRegistry
) -> AsyncIterator[Settings]:
    """The settings pointed at an in-process emulator, for as long as the block runs.

    The emulator remembers its requests in ``<ledger folder>/emulator`` (unless ``emulator:``
    sets ``state_dir``) and comes back on the port it had, so a killed run's jobs resume.
    """
    from .emulator import EmulatorConfig, remembered_port, run_emulator

    options = dict(settings.emulator)
    known = [f.name for f in dataclasses.fields(EmulatorConfig)]
    for name in options:
        if name not in known:
            raise ConfigError(
                f"unknown option {name!r}", key="emulator", fix=f"use one of: {', '.join(known)}"
            )
    # Checked before the emulator starts, which makes its folder beside the ledger: a mistyped
    # manifest name leaves nothing behind (run_batch checks the same again, for library users).
    paths = preflight(settings, manifests, registry)
    assert paths.ledger.path is not None
    if options.get("state_dir") is None:
        options["state_dir"] = str(paths.ledger.path.parent / "emulator")
    try:
        config = EmulatorConfig(**options)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            str(exc), key="emulator", fix="see `batcher emulator --help` for its options"
        ) from None
    assert config.state_dir is not None
    async with run_emulator(config, port=remembered_port(config.state_dir), port_fallback=True) as emu:
        api = dataclasses.replace(
            settings.api, base_url=emu.base_url, api_key=settings.api.api_key or EMULATOR_KEY
        )
        log.info("emulator serving at %s", emu.base_url)
        yield dataclasses.replace(settings, api=api)


async def _run(args: argparse.Namespace) -> RunResult | DryRunReport | None:
    """The run's result; None if a second signal stopped it at once (the ledger has every step)."""
    overrides = overrides_from(args)
    if args.emulator:
        # Everything is on this machine: no proxy, whatever HTTPS_PROXY says (and one batcher
        # cannot use does not stop the demo).
        overrides["api.proxy"] = False
    try:
        settings = load_settings(config_path=args.config, env=os.environ, overrides=overrides)
    except ConfigError as exc:
        raise blame_flag(exc) from None
    registry = load_workflows(settings.jobs_dir)
    if args.dry_run:
        return dry_run(settings, args.manifests, registry)
    interrupt = anyio.Event()
    result: RunResult | None = None

    with anyio.CancelScope() as scope:  # cancelled by a second signal: result stays None
        words = functools.partial(_last_words, args)
        stop_on_signals(interrupt, scope, last_words=words, code=ExitCode.INTERRUPTED)
        async with contextlib.AsyncExitStack() as stack:
            if args.emulator:
                settings = await stack.enter_async_context(_emulated(settings, args.manifests, registry))
            elif not settings.api.api_key:
                raise _no_key(os.environ)
            display: Display = args.display
            show = functools.partial(run_progress, clock=SystemClock(), display=display)
            result = await run_batch(
                settings, args.manifests, registry=registry, interrupt=interrupt, progress=show
            )
    return result


def _last_words(args: argparse.Namespace) -> str:
    """What the third signal prints as the process exits at once (on a new line, and with the
    cursor a live panel hid shown again; with ``--log-format json``, as a JSON event)."""
    words = (
        "third signal: exiting now, without waiting for the stop in progress;"
        " the ledger has every step: run the same command to resume"
    )
    if _json_logs(args):
        return stderr_event(words, level="warning", fields={"exit_code": int(ExitCode.INTERRUPTED)}) + "\n"
    lead = "\n\x1b[?25h" if isinstance(args.display, RichDisplay) else ""
    return f"{lead}batcher: {words}\n"


def _no_key(env: Mapping[str, str]) -> ConfigError:
    """What to say when a run has no key. SEGMIND_API_KEY set but blank is the nightly cron line
    whose ``$(cat ~/.segmind-key)`` printed nothing (the file moved): "export it" misled there."""
    if "SEGMIND_API_KEY" in env:
        return ConfigError(
            "is set, but empty",
            source=environment_source("SEGMIND_API_KEY"),
            fix="a command meant to fill it, such as $(cat ~/.segmind-key), may have printed"
            " nothing; or set api.api_key in --config, or use --emulator",
        )
    return ConfigError(
        "no API key",
        key="SEGMIND_API_KEY",
        fix="export SEGMIND_API_KEY=..., set api.api_key in --config, or use --emulator",
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside task-group exception groups (a usage error raised in a task)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """The ``batcher`` command (the console script, ``python -m batcher``): the process's exit code.

    Once a run is over, SIGINT, SIGTERM and SIGHUP stay ignored until the process exits: the
    summary prints whole, and a signal after it cannot turn the run's exit code into 130 or 143. A
    caller in the same process that wants its handlers back saves and restores them itself.
    """
    guard_standard_streams()
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(json_errors=wants_json(words))
    args = parse_command_line(parser, words)
    if args.command == "emulator":
        from .emulator.cli import main as emulator_main

        return emulator_main(args)
    if args.command == "status":
        return _printed(main_status(args))
    if args.command == "report":
        return _printed(main_report(args))
    args.display = make_display(_progress_mode(args), sys.stderr)
    _setup_logging(args, args.display)
    return _main_run(args)


def _printed(code: int) -> int:
    """``status`` and ``report``: ``code``, once their output is written. Output cut short by a
    reader that stopped reading (``| head -1``, EPIPE) is what that reader asked for: no
    traceback, the code stands. Output that could not be written at all (a full disk) is an
    error: one line on stderr, exit 74 (EX_IOERR, as for a ledger)."""
    failure = lost(sys.stdout)
    if failure is None or failure.errno == errno.EPIPE:
        return code
    print(f"batcher: error: cannot write to standard output: {failure.strerror}", file=sys.stderr)
    return ExitCode.LEDGER_WRITE


def _run_is_over() -> None:
    """From here until the process exits, its exit code is the run's: SIGINT, SIGTERM and SIGHUP
    are ignored. (Restoring the handlers when main returned let a SIGTERM after the summary end
    it with 143.)"""
    ignore_signals()


def _main_run(args: argparse.Namespace) -> int:
    try:
        result = anyio.run(_run, args)
    except BaseException as raised:
        _run_is_over()
        exc = _unwrap(raised)
        if isinstance(exc, LedgerLockedError):
            _say(args, str(exc), level="warning", code=ExitCode.LOCKED)
            return ExitCode.LOCKED
        if isinstance(exc, LedgerWriteError):
            _say(args, str(exc), code=ExitCode.LEDGER_WRITE)
            return ExitCode.LEDGER_WRITE
        if isinstance(exc, BatcherError):
            _say(args, str(exc), code=ExitCode.USAGE)
            return ExitCode.USAGE
        if isinstance(exc, KeyboardInterrupt):
            _say(
                args,
                "interrupted; the ledger has every step: run the same command to resume",
                level="warning",
                code=ExitCode.INTERRUPTED,
            )
            return ExitCode.INTERRUPTED
        if _json_logs(args) and isinstance(exc, Exception):
            # A bug: its report is one JSON event too (the traceback a field of it), exit 1 as
            # Python's own report would; the ledger has every step taken.
            log.critical(
                "unexpected error: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=exc,
                extra={"exit_code": ExitCode.FAILED},
            )
            return ExitCode.FAILED
        raise
    _run_is_over()
    if result is None:
        _say(
            args,
            "stopped at once by a second signal; the ledger has every step: run the same command to resume",
            level="warning",
            code=ExitCode.INTERRUPTED,
        )
        return ExitCode.INTERRUPTED
    if isinstance(result, DryRunReport):
        text = render_dry_run(result)
        print(text)
        _summary_written(args, None)
        code = ExitCode.FAILED if result.invalid or result.edited or result.orphan else ExitCode.OK
        _summary_event(args, text, code)
        return code
    text = render_summary(result)
    print(text)
    _summary_written(args, result.ledger)
    if result.ledger_error is not None:
        _say(args, str(result.ledger_error))
    _summary_event(args, text, result.exit_code, result)
    return int(result.exit_code)


def _summary_event(
    args: argparse.Namespace, text: str, code: ExitCode, result: RunResult | None = None
) -> None:
    """With JSON logs, the summary is also the run's last event on stderr (``event``:
    ``"summary"``, with ``exit_code``): a log shipper reading stderr alone saw the run's end
    only in its last progress update, never how it ended, nor what the next run resumes (the
    summary went to stdout only)."""
    if not _json_logs(args):
        return
    level = "info" if code is ExitCode.OK else "warning" if code in _EXPECTED else "error"
    fields: dict[str, object] = {"exit_code": int(code)}
    if result is not None:
        st = result.stats
        fields.update(
            by_state=dict(st.outcomes),
            invalid=st.invalid,
            in_flight=st.in_flight,
            not_started=st.left,
            submitted=st.submitted,
            spend_usd=round(st.spend_usd, 6),
            seconds=round(result.seconds, 3),
            interrupted=result.interrupted,
            ledger=None if result.ledger is None else str(result.ledger),
            outputs=None if result.out_dir is None else str(result.out_dir),
        )
    print(stderr_event(text, level=level, event="summary", fields=fields), file=sys.stderr)


#: Exit codes of a run that ended as runs do (something to look at, or stopped by a signal).
_EXPECTED = (ExitCode.FAILED, ExitCode.INTERRUPTED)


def _summary_written(args: argparse.Namespace, ledger: Path | None) -> None:
    """Say so on stderr if stdout did not take the summary (a pipe's reader gone, a full disk):
    the run's exit code stands, its work is in the ledger (it was a traceback, exit 1)."""
    failure = lost(sys.stdout)
    if failure is None:
        return
    where = f"; batcher status {shlex.quote(str(ledger))} shows it" if ledger is not None else ""
    _say(
        args,
        f"the summary could not be written to standard output ({failure.strerror}){where}",
        level="warning",
    )
