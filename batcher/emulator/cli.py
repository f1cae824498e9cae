"""``batcher emulator``: serve the emulated Segmind API standalone until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import errno
import math
import sys

import anyio

from ..clock import Clock, ScaledClock, SystemClock
from ..errors import BatcherError, ConfigError, UsageError
from ..signals import hand_to_loop, ignore_signals
from .config import (
    AUTH_HEADERS,
    DURATION_SHAPES,
    ERROR_SHAPES,
    OUTPUT_SHAPES,
    RATE_EXAMPLES,
    RATE_HEADERS,
    RENDER_MODES,
    EmulatorConfig,
    split_rate,
)
from .persist import remembered_port
from .server import run_emulator


def parse_rate(text: str) -> tuple[float, float]:
    """``"50/min"`` → ``(50.0, 60.0)``: requests, per seconds. A bare number is per minute."""
    rate = split_rate(text)
    if rate is None or rate[0] <= 0:
        raise argparse.ArgumentTypeError(f"bad rate {text!r}: use e.g. {RATE_EXAMPLES}")
    count, period = rate
    return count, 60.0 if period is None else period


def parse_port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"bad port {text!r}: give 1 to 65535, or 0 for any free port")
    return port


def parse_speed(text: str) -> float:
    """How many times faster than real time the emulator's clock runs: a finite number above 0."""
    try:
        speed = float(text)
    except ValueError:
        speed = math.nan
    if not (math.isfinite(speed) and speed > 0.0):
        raise argparse.ArgumentTypeError(f"bad speed {text!r}: give a number above 0, e.g. 60")
    return speed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The emulator's flags: one per :class:`EmulatorConfig` setting, plus where and how fast."""
    d = EmulatorConfig()
    add = parser.add_argument
    where = parser.add_argument_group("where")
    where.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    where.add_argument(
        "--port",
        type=parse_port,
        default=8787,
        help="port, 0 for any free one (with --state-dir: the one it had last time, if free)"
        " (default %(default)s)",
    )
    where.add_argument(
        "--speed",
        type=parse_speed,
        default=1.0,
        help="run the emulator's clock this many times faster, e.g. 60; all its times scale: job"
        " durations, TTLs, the rate limit's period (50/min is then 50 a real second), the waits"
        " a 429 names (default 1)",
    )
    add("--seed", type=int, default=d.seed, help="seed of every random draw (default %(default)s)")
    add("--api-key", default=None, help="the only key accepted (default: any non-empty key)")
    add(
        "--auth-header",
        choices=AUTH_HEADERS,
        default=d.auth_header,
        help="the header the key is read from: x-api-key, Authorization: Bearer, or either"
        " (default %(default)s)",
    )
    add(
        "--forbidden-key",
        action="append",
        default=[],
        dest="forbidden_keys",
        help="a key answered 403 (repeatable)",
    )
    add(
        "--assets",
        default=None,
        dest="assets_dir",
        help="folder served under /assets/ (e.g. jobs/demo-images)",
    )
    where.add_argument(
        "--state-dir",
        default=None,
        help="folder where accepted requests and outputs are kept, so a restarted emulator"
        " still answers polls of earlier jobs (default: remember nothing)",
    )
    where.add_argument(
        "--poll-origin",
        default=None,
        metavar="URL",
        help="answer submits with poll_urls on this origin, e.g. http://other-host.test:1234"
        " (to test that a client will not send its key there)",
    )

    rate = parser.add_argument_group("request budget (429)")
    rate.add_argument(
        "--rate-limit",
        type=parse_rate,
        default=None,
        help="requests per period per key, e.g. 50/min or 5/s (default unlimited)",
    )
    rate.add_argument(
        "--burst",
        type=int,
        default=None,
        dest="rate_burst",
        help="requests allowed back to back (default: the limit, rounded up)",
    )
    rate.add_argument(
        "--rate-header",
        choices=RATE_HEADERS,
        default=d.rate_header,
        help="how a 429 says when to retry (default %(default)s)",
    )
    rate.add_argument(
        "--output-rate-limit",
        type=parse_rate,
        default=None,
        help="output downloads the file host serves per period, to all clients together, e.g. 10/s"
        " (default unlimited); one past it is answered 429",
    )
    rate.add_argument(
        "--polls-free",
        action="store_false",
        dest="rate_limit_polls",
        help="polls do not spend the budget (default: they do)",
    )

    faults = parser.add_argument_group("faults (shares of requests, 0 to 1)")
    for flag, help_text in (
        ("error-rate", "answered 500/502/503/504"),
        ("lost-rate", "submits accepted and billed, but answered 502"),
        ("slow-rate", "answered only after --slow-seconds"),
        ("drop-rate", "connection closed without an answer"),
        ("drop-accept-share", "of dropped submits, the share accepted first"),
        ("odd-status-rate", "polls of unfinished jobs answered with an undocumented status"),
        ("failed-submit-rate", "submits refused with a 200 saying FAILED and no poll_url (not billed)"),
        ("garbled-output-rate", "polls of completed jobs whose output string is cut short (not JSON)"),
        ("fail-rate", "jobs that end FAILED"),
    ):
        name = flag.replace("-", "_")
        faults.add_argument(
            f"--{flag}", type=float, default=getattr(d, name), help=f"{help_text} (default %(default)s)"
        )
    faults.add_argument("--slow-seconds", type=float, default=d.slow_seconds, help="(default %(default)s)")
    faults.add_argument(
        "--error-shape",
        choices=ERROR_SHAPES,
        default=d.error_shape,
        help="how FAILED answers carry error_message (default %(default)s)",
    )
    faults.add_argument(
        "--failed-http-status",
        type=int,
        default=d.failed_http_status,
        help="HTTP status of a FAILED poll (default %(default)s)",
    )

    jobs = parser.add_argument_group("jobs")
    jobs.add_argument(
        "--duration-median", type=float, default=d.duration_median, help="seconds (default %(default)s)"
    )
    jobs.add_argument(
        "--duration-spread",
        type=float,
        default=d.duration_spread,
        help="lognormal sigma (default %(default)s)",
    )
    jobs.add_argument("--duration-shape", choices=DURATION_SHAPES, default=d.duration_shape)
    jobs.add_argument("--bimodal-short", type=float, default=d.bimodal_short)
    jobs.add_argument("--bimodal-long", type=float, default=d.bimodal_long)
    jobs.add_argument("--bimodal-long-share", type=float, default=d.bimodal_long_share)
    jobs.add_argument(
        "--queue-delay", type=float, default=d.queue_delay, help="seconds every job waits first"
    )
    jobs.add_argument("--workers", type=int, default=None, help="server-side workers (default unbounded)")
    jobs.add_argument(
        "--credits", type=float, default=None, help="starting balance in USD (default unlimited)"
    )
    jobs.add_argument(
        "--credits-header",
        default=None,
        help="send this x-remaining-credits value instead of the balance (e.g. nan), to test clients",
    )
    jobs.add_argument("--record-ttl", type=float, default=None, help="seconds a finished job stays pollable")
    jobs.add_argument("--output-ttl", type=float, default=None, help="seconds output files stay downloadable")
    jobs.add_argument(
        "--output-url-ttl",
        type=float,
        default=None,
        help="sign output URLs, good for this many seconds after the poll that gave them (a 403 after)",
    )

    out = parser.add_argument_group("outputs")
    out.add_argument("--output-shape", choices=OUTPUT_SHAPES, default=d.output_shape)
    out.add_argument("--render", choices=RENDER_MODES, default=d.render)
    out.add_argument("--output-host", default=None, help="hostname for output URLs, e.g. localhost")
    out.add_argument("--render-threads", type=int, default=d.render_threads)
    out.add_argument("--max-input-bytes", type=int, default=d.max_input_bytes, help="largest input image")
    out.add_argument("--fetch-timeout", type=float, default=d.fetch_timeout, help="seconds to fetch an input")


#: The settings whose flag is not ``--`` and the setting's name with ``-`` for ``_``.
_FLAGS = {
    "rate_burst": "--burst",
    "rate_period": "--rate-limit",
    "output_rate_period": "--output-rate-limit",
    "assets_dir": "--assets",
    "forbidden_keys": "--forbidden-key",
    "rate_limit_polls": "--polls-free",
}


def flag_of(key: str) -> str:
    """The flag that sets ``emulator.<name>``: a mistake in a flag's value is named by the flag
    typed (it said ``emulator.error_rate`` for ``--error-rate``, as if from a config file)."""
    name = key.removeprefix("emulator.")
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The :class:`EmulatorConfig` the flags describe (raises ConfigError with the fix)."""
    values = {k: v for k, v in vars(args).items() if k in EmulatorConfig.__dataclass_fields__}
    rate = getattr(args, "rate_limit", None)
    if rate is not None:
        values["rate_limit"], values["rate_period"] = rate
    output_rate = getattr(args, "output_rate_limit", None)
    if output_rate is not None:
        values["output_rate_limit"], values["output_rate_period"] = output_rate
    values["forbidden_keys"] = tuple(values.get("forbidden_keys") or ())
    return EmulatorConfig(**values)


def main(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM (exit 0). Returns the exit status: 2 for a bad setting, 1
    when it cannot serve (the port taken, the state folder in use)."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        named = ConfigError(exc.problem, key=flag_of(exc.key), fix=exc.fix) if exc.key else exc
        print(f"batcher emulator: {named}", file=sys.stderr)
        return 2
    clock: Clock = ScaledClock(args.speed) if args.speed != 1.0 else SystemClock()
    try:
        anyio.run(_serve, config, clock, args.host, args.port)
    except KeyboardInterrupt:  # a Ctrl-C before it was serving
        pass
    except BatcherError as exc:  # a state_dir that cannot be used, or is in use
        print(f"batcher emulator: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except OSError as exc:
        print(f"batcher emulator: {_listen_error(args.host, args.port, exc)}", file=sys.stderr)
        return 1
    else:
        ignore_signals()  # stopped by a signal: one more from here changes nothing
    return 0


def _listen_error(host: str, port: int, exc: OSError) -> str:
    """What went wrong listening on ``host:port``, and what to do."""
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {host}:{port}: the port is in use (another emulator?); give another"
            " --port, or --port 0 for any free one"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {host}:{port}: no such address on this machine; check --host"
    reason = exc.strerror or str(exc)
    return f"cannot listen on {host}:{port}: {reason}; check --host and --port"


async def _serve(config: EmulatorConfig, clock: Clock, host: str, port: int) -> None:
    """Serve until SIGINT or SIGTERM, then stop in order: answers being written get
    ``shutdown_timeout``, renders are cancelled, the state folder is closed."""
    stop = anyio.Event()
    fallback = False
    if port == 0 and config.state_dir is not None:
        # Any free port, but first the one its jobs' poll_urls name, if it is still free.
        port, fallback = remembered_port(config.state_dir), True
    async with run_emulator(config, clock=clock, host=host, port=port, port_fallback=fallback) as running:
        # SIGINT or SIGTERM: stop in order; any more are ignored (batcher.signals).
        hand_to_loop(lambda signum, nth: stop.set(), most=1)
        print(f"Segmind emulator serving at {running.base_url}", flush=True)
        print(
            f"  submit: POST {running.base_url}/workflows/<workflow id>   stats: "
            f"{running.base_url}/_emulator/stats   Ctrl-C to stop",
            flush=True,
        )
        await stop.wait()
