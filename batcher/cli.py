"""The command line: ``batcher run``, ``batcher emulator`` (``python -m batcher`` is the same).

A user's mistake gets one clear line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
from rich.logging import RichHandler

from .cli_inspect import add_report_parser, add_status_parser, main_report, main_status
from .clock import SystemClock
from .config import Settings
from .dryrun import DryRunReport, dry_run, render_dry_run
from .engine import ExitCode, RunResult, run_batch
from .errors import BatcherError, ConfigError, LedgerLockedError, LedgerWriteError
from .ledger import utc_iso
from .preflight import preflight
from .progress import Display, RichDisplay, make_display, resolve_mode, run_progress
from .settings_load import load_settings
from .signals import ignore_signals, stop_on_signals
from .summary import render_summary
from .workflows import WorkflowRegistry, load_workflows

log = logging.getLogger("batcher")

EMULATOR_KEY = "emulator-demo-key"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batcher",
        description="Run Segmind workflows in bulk: resumable, rate-aware, never paying twice.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run (or resume) the jobs of one or more manifests")
    run.add_argument(
        "manifests",
        nargs="+",
        type=Path,
        metavar="MANIFEST",
        help=".jsonl, .csv, .yaml/.yml or .txt (one image URL a line)",
    )
    run.add_argument("--config", type=Path, help="YAML settings (see config.example.yaml)")
    run.add_argument("--ledger", type=Path, help="the run's ledger (default runs/<manifest>/ledger.jsonl)")
    run.add_argument("--out", type=Path, help="where outputs go (default: outputs/ beside the ledger)")
    run.add_argument("--concurrency", type=int, help="jobs in flight at most (default 16)")
    run.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_MINUTE",
        help="the account's requests per minute, if known (default: learn it from 429s)",
    )
    run.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help="the first guess of a job's duration, which polls then learn from; with poll.policy:"
        " fixed in the config, the seconds between polls (default 7)",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        default=None,
        help="run jobs that failed for good (and expired ones) again",
    )
    run.add_argument(
        "--force",
        action="store_true",
        default=None,
        help="use a ledger written for other manifests or workflow settings",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="validate the manifests, count jobs and estimate the cost; send nothing",
    )
    run.add_argument(
        "--budget",
        type=float,
        metavar="USD",
        help="never submit a job that could take this run's spend past USD",
    )
    run.add_argument(
        "--max-runtime",
        metavar="DURATION",
        help='stop submitting in time for in-flight jobs to finish within e.g. "50m"',
    )
    run.add_argument(
        "--halt-on-failure-rate",
        type=_share,
        metavar="P",
        help="stop submitting once more than P (0.2 or 20%%) of finished jobs failed",
    )
    run.add_argument(
        "--halt-min-jobs",
        type=int,
        metavar="N",
        help="finished jobs needed before --halt-on-failure-rate applies (default 20)",
    )
    run.add_argument(
        "--emulator",
        action="store_true",
        help="start the Segmind emulator in-process and run against it (no key needed)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="log every submission and its request id")

    run.add_argument(
        "--progress",
        choices=["auto", "rich", "plain", "json", "quiet"],
        default="auto",
        help="live display: rich on a terminal, a plain line every 30 s otherwise (auto)",
    )
    run.add_argument("-q", "--quiet", action="store_true", help="print only the final summary")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per event on stderr",
    )
    add_status_parser(sub)
    add_report_parser(sub)
    emu = sub.add_parser("emulator", help="serve the Segmind API emulator")
    from .emulator.cli import add_arguments

    add_arguments(emu)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "ledger.path": args.ledger,
        "output.out_dir": args.out,
        "concurrency": args.concurrency,
        "rate.requests_per_minute": args.rate_limit,
        "poll.interval": args.poll_interval,
        "retry_failed": args.retry_failed,
        "ledger.force": args.force,
        "limits.budget_usd": args.budget,
        "limits.max_runtime": args.max_runtime,
        "limits.halt_on_failure_rate": args.halt_on_failure_rate,
        "limits.halt_min_finished": args.halt_min_jobs,
    }


def _share(text: str) -> float:
    """A share from "0.2" or "20%"."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share such as 0.2 or 20%") from None


class _JsonFormatter(logging.Formatter):
    """One JSON object per log event (``--log-format json``)."""

    def format(self, record: logging.LogRecord) -> str:
        event = {
            "ts": utc_iso(record.created),
            "level": record.levelname.lower(),
            "event": "log",
            "message": record.getMessage(),
        }
        return json.dumps(event, ensure_ascii=False)


def _setup_logging(args: argparse.Namespace, display: Display | None) -> None:
    root = logging.getLogger("batcher")
    handler: logging.Handler
    if isinstance(display, RichDisplay):
        # Log lines print above the live panel instead of tearing it.
        handler = RichHandler(console=display.console, show_time=False, show_path=False, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        # JSON progress on stderr means a machine reads it: log lines are JSON there too.
        json_logs = getattr(args, "log_format", "text") == "json" or getattr(args, "progress", "") == "json"
        handler.setFormatter(_JsonFormatter() if json_logs else logging.Formatter("batcher: %(message)s"))
    root.handlers[:] = [handler]
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    root.setLevel(level)
    root.propagate = False


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
    overrides = _overrides(args)
    if args.emulator:
        # Everything is on this machine: no proxy, whatever HTTPS_PROXY says (and one batcher
        # cannot use does not stop the demo).
        overrides["api.proxy"] = False
    settings = load_settings(config_path=args.config, env=os.environ, overrides=overrides)
    registry = load_workflows(settings.jobs_dir)
    if args.dry_run:
        return dry_run(settings, args.manifests, registry)
    interrupt = anyio.Event()
    result: RunResult | None = None

    with anyio.CancelScope() as scope:  # cancelled by a second signal: result stays None
        stop_on_signals(interrupt, scope, last_words=_last_words(args.display), code=ExitCode.INTERRUPTED)
        async with contextlib.AsyncExitStack() as stack:
            if args.emulator:
                settings = await stack.enter_async_context(_emulated(settings, args.manifests, registry))
            elif not settings.api.api_key:
                raise ConfigError(
                    "no API key",
                    key="SEGMIND_API_KEY",
                    fix="export SEGMIND_API_KEY=..., set api.api_key in --config, or use --emulator",
                )
            display: Display = args.display
            show = functools.partial(run_progress, clock=SystemClock(), display=display)
            result = await run_batch(
                settings, args.manifests, registry=registry, interrupt=interrupt, progress=show
            )
    return result


def _last_words(display: Display) -> str:
    """What the third signal prints as the process exits at once (on a new line, and with the
    cursor a live panel hid shown again)."""
    lead = "\n\x1b[?25h" if isinstance(display, RichDisplay) else ""
    return (
        f"{lead}batcher: third signal: exiting now, without waiting for the stop in progress;"
        " the ledger has every step: run the same command to resume\n"
    )


def _unwrap(exc: BaseException) -> BaseException:
    """The one error inside task-group exception groups (a usage error raised in a task)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    """The ``batcher`` command (the console script, ``python -m batcher``): the process's exit code.

    Once a run is over, SIGINT and SIGTERM stay ignored until the process exits: the summary prints
    whole, and a signal after it cannot turn the run's exit code into 130 or 143. A caller in the
    same process that wants its handlers back saves and restores them itself.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "emulator":
        from .emulator.cli import main as emulator_main

        return emulator_main(args)
    if args.command == "status":
        return main_status(args)
    if args.command == "report":
        return main_report(args)
    args.display = make_display(_progress_mode(args), sys.stderr)
    _setup_logging(args, args.display)
    return _main_run(args)


def _run_is_over() -> None:
    """From here until the process exits, its exit code is the run's: SIGINT and SIGTERM are ignored.
    (Restoring the handlers when main returned let a SIGTERM after the summary end it with 143.)"""
    ignore_signals()


def _main_run(args: argparse.Namespace) -> int:
    try:
        result = anyio.run(_run, args)
    except BaseException as raised:
        _run_is_over()
        exc = _unwrap(raised)
        if isinstance(exc, LedgerLockedError):
            print(f"batcher: {exc}", file=sys.stderr)
            return ExitCode.LOCKED
        if isinstance(exc, LedgerWriteError):
            print(f"batcher: error: {exc}", file=sys.stderr)
            return ExitCode.LEDGER_WRITE
        if isinstance(exc, BatcherError):
            print(f"batcher: error: {exc}", file=sys.stderr)
            return ExitCode.USAGE
        if isinstance(exc, KeyboardInterrupt):
            print(
                "batcher: interrupted; the ledger has every step: run the same command to resume",
                file=sys.stderr,
            )
            return ExitCode.INTERRUPTED
        raise
    _run_is_over()
    if result is None:
        print(
            "batcher: stopped at once by a second signal; the ledger has every step:"
            " run the same command to resume",
            file=sys.stderr,
        )
        return ExitCode.INTERRUPTED
    if isinstance(result, DryRunReport):
        print(render_dry_run(result))
        return ExitCode.FAILED if result.invalid or result.edited else ExitCode.OK
    print(render_summary(result))
    if result.ledger_error is not None:
        print(f"batcher: error: {result.ledger_error}", file=sys.stderr)
    return int(result.exit_code)
