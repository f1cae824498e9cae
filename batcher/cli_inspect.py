"""``batcher status`` and ``batcher report``: read a ledger (never locking it) and tell what it says.

Both are safe beside a running batch and never touch the network. A user's mistake (a missing
ledger, a folder where a file should be, an unwritable report path) is one line on stderr and
exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import BatcherError
from .report import GALLERY_CAP, build_report
from .result import ExitCode
from .status import ledger_status
from .status_text import plural, render_status_text, status_json
from .streams import ascii_json
from .workflows import load_workflows

EXIT_OK = ExitCode.OK
EXIT_USAGE = ExitCode.USAGE
#: EX_IOERR, the run's code for a ledger that cannot be written: the report's page could not be.
EXIT_IOERR = ExitCode.LEDGER_WRITE
#: A write that failed for want of room (or a file size limit, or the disk), not a wrong path.
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def add_status_parser(sub: Any) -> argparse.ArgumentParser:
    """``batcher status LEDGER [--json] [--retry-failed]`` on an ``add_subparsers()`` object."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "status",
        help="summarise a ledger: jobs by state, spend, in-flight jobs, failures, what a rerun would do",
        description="Summarise a ledger without locking it (safe while a run is going).",
    )
    parser.add_argument("ledger", type=Path, metavar="LEDGER", help="the run's ledger (.jsonl)")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="count what a run with --retry-failed would do (permanent failures and expired jobs too)",
    )
    return parser


def add_report_parser(sub: Any) -> argparse.ArgumentParser:
    """``batcher report LEDGER [-o report.html] [--gallery N]`` on an ``add_subparsers()`` object."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a ledger (numbers, gallery, failures, durations)",
        description="Write one self-contained HTML page about a ledger; it needs no network to view.",
    )
    parser.add_argument("ledger", type=Path, metavar="LEDGER", help="the run's ledger (.jsonl)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="HTML",
        help="where to write it (default: report.html beside the ledger)",
    )
    parser.add_argument(
        "--gallery",
        type=int,
        default=GALLERY_CAP,
        metavar="N",
        help=f"show the N jobs that completed last in the gallery (default {GALLERY_CAP})",
    )
    return parser


def _prices() -> Mapping[str, float | None]:
    """Workflow prices from the definitions; unknown (with a warning) if they cannot be read."""
    try:
        return {wf.name: wf.price_usd for wf in load_workflows()}
    except BatcherError as exc:
        print(f"batcher: warning: workflow prices unknown ({exc})", file=sys.stderr)
        return {}


def _fail(message: object, code: int = EXIT_USAGE) -> int:
    print(f"batcher: error: {message}", file=sys.stderr)
    return code


def main_status(args: argparse.Namespace) -> int:
    """Print the ledger's summary (text, or JSON with ``--json``). Exit 0, or 2 on a user mistake."""
    try:
        report = ledger_status(
            args.ledger, prices=_prices(), now=time.time(), retry_failed=bool(args.retry_failed)
        )
    except BatcherError as exc:
        return _fail(exc)
    except OSError as exc:
        return _fail(f"cannot read ledger {args.ledger}: {exc.strerror}")
    if args.json:
        print(json.dumps(status_json(report), indent=2, ensure_ascii=ascii_json(sys.stdout)))
    else:
        print(render_status_text(report))
    return EXIT_OK


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists, if it is not a folder."""
    here = Path(os.path.abspath(folder))
    while not os.path.lexists(here) and here.parent != here:
        here = here.parent
    return None if here.is_dir() else here


def main_report(args: argparse.Namespace) -> int:
    """Write the HTML report and say where. Exit 0, 2 on a user mistake, 74 if the disk is full."""
    ledger: Path = args.ledger
    out: Path = args.output or ledger.parent / "report.html"
    if args.gallery < 0:
        return _fail("--gallery must be 0 or more")
    try:
        if out.is_dir():
            return _fail(f"{out} is a folder; give -o a file name such as {out / 'report.html'}")
        # The page replaces the file atomically: through a symlink to its target (the link
        # stays), and never over a device or a pipe (as root, -o /dev/null would replace the
        # device node).
        if out.is_symlink():
            out = Path(os.path.realpath(out))
        if out.exists() and not out.is_file():
            return _fail(f"{out} is not a regular file (a device, pipe or socket); give -o a file name")
        blocked = _file_in_the_way(out.parent)  # a file where a folder must be: was "File exists"
    except OSError as exc:  # a name no filesystem takes ("File name too long"): was a traceback
        return _fail(f"cannot write report {out}: {exc.strerror}; give -o another path")
    if blocked is not None:
        return _fail(f"cannot write report {out}: {blocked} is a file, not a folder; give -o another path")
    try:
        info = build_report(ledger, out, prices=_prices(), gallery_cap=args.gallery)
    except BatcherError as exc:
        return _fail(exc)
    except OSError as exc:
        # A full disk is not the user's mistake: exit 74, as for status's output (it was 2).
        code = EXIT_IOERR if exc.errno in _DISK_ERRORS else EXIT_USAGE
        name = os.path.basename(exc.filename or out.name)
        if name != out.name and not name.startswith(f".{out.name}."):  # not the page or its temp file
            return _fail(f"cannot read {exc.filename}: {exc.strerror}", code)
        fix = "; give -o a path you can write" if code == EXIT_USAGE else ""
        return _fail(f"cannot write report {out}: {exc.strerror}{fix}", code)
    latest = " (the latest; --gallery N for more)" if info.shown < info.completed else ""
    shown = f"{info.shown:,} of {plural(info.completed, 'completed job')} in the gallery{latest}"
    missing = f"; {plural(info.missing, 'file')} not found" if info.missing else ""
    jobs = plural(info.jobs, "job")
    print(f"Report written to {info.path} ({info.bytes / 1e6:.1f} MB): {jobs}, {shown}{missing}")
    return EXIT_OK
