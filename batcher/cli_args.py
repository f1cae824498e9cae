"""The command line's flags: the parser of every command, and which setting each flag sets.

A mistake in a flag is one line (what is wrong, and where the help is), exit 2; a flag's value
that the settings refuse is named by the flag the user typed.
"""

from __future__ import annotations

import argparse
import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cli_inspect import add_report_parser, add_status_parser
from .errors import ConfigError
from .streams import stderr_event


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line, exit 2: what is wrong and where the help is.
    (argparse's own printed the whole usage first, 7 lines for ``batcher run`` and 33 for
    ``batcher emulator``, with the one line that matters last.) Its subcommands' parsers are
    of this class too. With ``json_errors`` the line is a ``--log-format json`` event."""

    json_errors = False

    def error(self, message: str) -> typing.NoReturn:
        if self.json_errors:
            text = f"{self.prog}: {message} (see {self.prog} --help)"
            # exit_code, as every error a run stops on carries it (a log shipper tells the run's
            # end by that field; a mistyped flag's event lacked it).
            self.exit(2, stderr_event(text, level="error", fields={"exit_code": 2}) + "\n")
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_command_line(parser: argparse.ArgumentParser, words: Sequence[str]) -> argparse.Namespace:
    """``words`` parsed; a flag no command has is named by the command it was given to, with the
    flag most like it. (argparse's own line was the top parser's: "batcher: error: unrecognized
    arguments: --concurency 4 (see batcher --help)", a help that does not list run's flags.) A
    flag typed before the command word is the top parser's mistake: it was blamed on the command
    ("batcher run: error: unrecognized arguments: -v" for ``batcher -v run``, which has -v)."""
    args, extras = parser.parse_known_args(words)
    if not extras:
        _one_format_on_stderr(parser, args)
        return args
    name = getattr(args, "command", None)
    command = _command_parser(parser, name) or parser
    before = words[: next((i for i, w in enumerate(words) if w == name), len(words))]
    early = [w for w in before if w in extras]
    if early:
        # Before the command word: the top parser's mistake (argparse hands its words back first).
        typed = early[0].partition("=")[0]
        own = {f for action in command._actions for f in action.option_strings}
        if typed in own:
            meant = f"; {command.prog} takes {typed} after {name}"
        else:
            close = _closest_flag(command, typed)
            meant = f"; did you mean {command.prog} {close}?" if close else ""
        parser.error(f"unrecognized arguments: {' '.join(early)}{meant}")
    typed = next((w.partition("=")[0] for w in extras if w.startswith("-")), "")
    close = _closest_flag(command, typed)
    meant = f"; did you mean {close}?" if close else ""
    command.error(f"unrecognized arguments: {' '.join(extras)}{meant}")


def _one_format_on_stderr(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--log-format json`` promises one JSON object a line on stderr, where the progress goes
    too: with ``--progress plain`` its lines were text among the JSON, and with ``--progress
    rich`` the log itself was rich text (a panel redrawn in a log file). Refused, in JSON."""
    progress = getattr(args, "progress", None)
    if getattr(args, "log_format", None) == "json" and progress in ("plain", "rich"):
        command = _command_parser(parser, args.command) or parser
        command.error(
            f"--progress {progress} writes text to stderr, where --log-format json writes one JSON"
            " object a line; use --progress json (its default) or --progress quiet"
        )


def _closest_flag(command: argparse.ArgumentParser, typed: str) -> str | None:
    """The ``--flag`` of ``command`` most like ``typed``, if one is close (compared without the
    leading dashes, which all share: with them, ``--nope`` looked like ``--force``)."""
    names = [f[2:] for action in command._actions for f in action.option_strings if f.startswith("--")]
    close = difflib.get_close_matches(typed.lstrip("-"), names, n=1, cutoff=0.75)
    return f"--{close[0]}" if close else None


def _command_parser(parser: argparse.ArgumentParser, name: str | None) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            found = action.choices[name]
            assert isinstance(found, argparse.ArgumentParser)
            return found
    return None


def wants_json(argv: Sequence[str]) -> bool:
    """Whether ``argv`` asks for JSON on stderr (``--log-format json``, ``--progress json``, also
    as ``--flag=json`` or abbreviated), read before the parser, whose own mistakes must then be
    JSON too (a log shipper reading stderr got a plain line it could not parse)."""
    words = list(argv)
    for i, word in enumerate(words):
        flag, eq, value = word.partition("=")
        if not eq:
            value = words[i + 1] if i + 1 < len(words) else ""
        named = len(flag) >= 4 and any(f.startswith(flag) for f in ("--log-format", "--progress"))
        if named and value == "json":
            return True
    return False


def build_parser(*, json_errors: bool = False) -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    for each in (parser, *sub.choices.values()):
        if isinstance(each, OneLineParser):
            each.json_errors = json_errors
    return parser


#: The flags that set a setting: its dotted key, the flag, and the flag's argparse ``dest``.
_FLAG_SETTINGS = (
    ("ledger.path", "--ledger", "ledger"),
    ("output.out_dir", "--out", "out"),
    ("concurrency", "--concurrency", "concurrency"),
    ("rate.requests_per_minute", "--rate-limit", "rate_limit"),
    ("poll.interval", "--poll-interval", "poll_interval"),
    ("retry_failed", "--retry-failed", "retry_failed"),
    ("ledger.force", "--force", "force"),
    ("limits.budget_usd", "--budget", "budget"),
    ("limits.max_runtime", "--max-runtime", "max_runtime"),
    ("limits.halt_on_failure_rate", "--halt-on-failure-rate", "halt_on_failure_rate"),
    ("limits.halt_min_finished", "--halt-min-jobs", "halt_min_jobs"),
)


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give, by dotted key (None: the flag was not given)."""
    return {key: getattr(args, dest) for key, _, dest in _FLAG_SETTINGS}


def blame_flag(exc: ConfigError) -> ConfigError:
    """A setting's mistake made on the command line, named by the flag the user typed
    (``--rate-limit``, not ``rate.requests_per_minute``)."""
    flag = next((f for key, f, _ in _FLAG_SETTINGS if key == exc.key), None)
    if exc.source != "command line" or flag is None:
        return exc
    return ConfigError(exc.problem, source=exc.source, key=flag, fix=exc.fix)


def _share(text: str) -> float:
    """A share from "0.2" or "20%"."""
    try:
        return float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share such as 0.2 or 20%") from None
