"""batcher as a process: exit codes, clear errors without tracebacks, kill -9 and SIGTERM resume."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from PIL import Image

from batcher.emulator import EmulatorConfig, run_emulator
from batcher.status_text import plural

from .support import (
    API_KEY,
    StderrLines,
    cli_env,
    ledger_lines,
    run_cli,
    run_command,
    sketch_rows,
    write_jsonl,
)

FAST_ARGS = ["--poll-interval", "0.1", "--rate-limit", "60000"]


@pytest.mark.parametrize(
    ("args", "files", "message"),
    [
        (["run", "missing.jsonl"], {}, "missing.jsonl"),
        (
            ["run", "m.jsonl", "--config", "nope.yaml"],
            {"m.jsonl": "{}\n"},
            "nope.yaml: config file not found",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "poll:\n  intervall: 3\n"},
            "c.yaml:2: poll.intervall: unknown setting",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "concurrency: many\n"},
            "c.yaml:1: concurrency: expected a whole number, got 'many'",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api: [\n"},
            "c.yaml:2: not valid YAML",
        ),
        (
            ["run", "m.jsonl", "--concurrency", "0"],
            {"m.jsonl": "{}\n"},
            "line: --concurrency: must be at least 1",
        ),
        (  # named by the flag typed: it said "rate.requests_per_minute"
            ["run", "m.jsonl", "--rate-limit", "0"],
            {"m.jsonl": "{}\n"},
            "command line: --rate-limit: must be positive",
        ),
        (["run", "m.jsonl", "--rate-limit", "inf"], {"m.jsonl": "{}\n"}, "expected a finite number, got inf"),
        (
            ["run", "m.jsonl", "--poll-interval", "inf"],
            {"m.jsonl": "{}\n"},
            "expected a finite number, got inf",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "rate:\n  initial_per_minute: .inf\n"},
            "c.yaml:2: rate.initial_per_minute: expected a finite number",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  api_key: [sk-MISSHAPEN-KEY-42]\n"},
            "c.yaml:2: api.api_key: expected text, got a list (not shown)",
        ),
        (["run", "m.docx"], {"m.docx": "x"}, "m.docx"),
        (  # a flag's value is blamed on the command line, not on the config file beside it
            ["run", "m.jsonl", "--config", "c.yaml", "--concurrency", "0"],
            {"m.jsonl": "{}\n", "c.yaml": "poll:\n  interval: 3\n"},
            "command line: --concurrency: must be at least 1",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "concurrency: 4\npoll:\n  interval: 0\n"},
            "c.yaml:3: poll.interval: must be positive",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": 'api:\n  api_key: "sk-MISSHAPEN\\nKEY-42"\n'},
            "c.yaml:2: api.api_key: the key contains a line break (the key is not shown)",
        ),
        (  # redaction blanks the key wherever it appears: a 1-character key blanked every such letter
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  api_key: MISSHAP\n"},
            "c.yaml:2: api.api_key: the key is too short: 7 of at least 8 characters (the key is not shown)",
        ),
        (  # the embedded emulator's options name the file and line like every other setting's
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "emulator:\n  sed: 3\n"},
            "c.yaml:2: emulator.sed: unknown option (use one of: seed,",
        ),
        (  # an emulator option out of range was caught only after the run made its folders
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "concurrency: 4\nemulator:\n  duration_median: -3\n"},
            "c.yaml:3: emulator.duration_median: invalid value -3.0 (give a finite number of seconds",
        ),
        (  # was "'>' not supported between instances of 'str' and 'float'"; then "expected a
            # finite number", which did not say that the flag's form (50/min) is taken here too
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "emulator:\n  rate_limit: lots\n"},
            "c.yaml:2: emulator.rate_limit: expected a number or a rate, got 'lots' (e.g. 50/min, 5/s or"
            " 1000/h)",
        ),
        (
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "emulator:\n  seed: 1\n  output_rate_limit: 10/fortnight\n"},
            "c.yaml:3: emulator.output_rate_limit: expected a number or a rate, got '10/fortnight' (e.g.",
        ),
        (  # two periods: which one was meant?
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "emulator:\n  rate_limit: 50/min\n  rate_period: 1\n"},
            "c.yaml:2: emulator.rate_limit: '50/min' is per 60 s, but rate_period says 1 s (leave out"
            " rate_period, or give rate_limit as a number)",
        ),
        (  # was a traceback (AttributeError: 'list' object has no attribute 'strip')
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "emulator:\n  api_key: [MISSHAPEN]\n"},
            "c.yaml:2: emulator.api_key: expected text, got a list (not shown)",
        ),
        (
            ["run", "m.jsonl", "--emulator", "--ledger", "/dev/null"],
            {"m.jsonl": "{}\n"},
            "not a regular file",
        ),
        (["run", "m.jsonl", "--dry-run", "--ledger", "/dev/null"], {"m.jsonl": "{}\n"}, "not a regular file"),
        (
            ["run", "m.jsonl", "--emulator", "--out", "f/x"],
            {"m.jsonl": "{}\n", "f": ""},
            "cannot write outputs under f/x: ",
        ),
        (["run", "m.jsonl", "--dry-run", "--out", "f/x"], {"m.jsonl": "{}\n", "f": ""}, "f is not a folder"),
        (["run", "typo.jsonl", "--emulator"], {"m.jsonl": "{}\n"}, "typo.jsonl: manifest not found"),
        (  # 90 minutes or an hour and 30 seconds? It was read as the latter
            ["run", "m.jsonl", "--max-runtime", "1h30"],
            {"m.jsonl": "{}\n"},
            "command line: --max-runtime: expected a duration, got '1h30'",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  base_url: http://user:MISSHAPEN@127.0.0.1:9\n"},
            "c.yaml:2: api.base_url: must not hold a user name or password (user:pass@); it is not shown",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "output:\n  timeout: 0\n"},
            "c.yaml:2: output.timeout: must be positive",
        ),
        (  # appended to the base URL, it ran into the host name; the job was recorded, then refused
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  submit_path: workflows/v2/{workflow_id}\n"},
            "c.yaml:2: api.submit_path: 'workflows/v2/{workflow_id}' is not a path naming only {workflow_id}",
        ),
        (  # a name it cannot fill in was a KeyError traceback at the first submit
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  submit_path: /workflows/{version}/{workflow_id}\n"},
            "c.yaml:2: api.submit_path: '/workflows/{version}/{workflow_id}' is not a path naming only",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  request_timeout: -1\n"},
            "c.yaml:2: api.request_timeout: must be positive",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "output:\n  timeout: 60\n  min_rate: 0\n"},
            "c.yaml:3: output.min_rate: must be at least 1 byte a second",
        ),
        (  # the key would have crossed the network in clear
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  base_url: http://emulator.lan:8787\n"},
            "c.yaml:2: api.base_url: plain http to emulator.lan would send the API key across the network"
            " unencrypted (use https://; for an emulator on another machine or in a container, on a"
            " network you trust, set api.allow_insecure_http: true in the config)",
        ),
        (  # its password is not shown
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  proxy: socks5://me:MISSHAPEN@proxy.corp:1080\n"},
            "c.yaml:2: api.proxy: 'socks5://***@proxy.corp:1080' is not an http(s) proxy URL",
        ),
        (  # an IPv6 bracket left open: urlsplit's ValueError was a traceback
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": 'api:\n  proxy: "http://me:MISSHAPEN@[fd00::3128"\n'},
            "c.yaml:2: api.proxy: 'http://***@[fd00::3128' is not a valid URL",
        ),
        (  # the same, as the API base
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": 'api:\n  base_url: "http://[::1:8787"\n'},
            "c.yaml:2: api.base_url: 'http://[::1:8787' is not a valid URL",
        ),
        (  # aiohttp refused it at each submit: every job retried, then left deferred, exit 1
            ["run", "m.jsonl", "--emulator", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  base_url: http://127.0.0.1:99999\n"},
            "c.yaml:2: api.base_url: 'http://127.0.0.1:99999' has an invalid port",
        ),
        (  # YAML kept the second poll section and dropped the first without a word
            ["run", "m.jsonl", "--config", "c.yaml"],
            {
                "m.jsonl": "{}\n",
                "c.yaml": "poll:\n  interval: 3\nrate:\n  burst: 2\npoll:\n  policy: fixed\n",
            },
            "c.yaml:5: poll: given twice (first on line 1); only the last would count (merge them into one)",
        ),
        (
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "concurrency: 4\n# caf\udce9\n"},
            "c.yaml:2: not UTF-8 text (save it as UTF-8)",
        ),
        (  # pasted with its quotes (docker --env-file keeps them): sent so, refused with a 401, exit 3
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  api_key: '\"MISSHAPEN-KEY-42\"'\n"},
            "c.yaml:2: api.api_key: the key starts or ends with a quote mark (the key is not shown)",
        ),
        (  # with a key in SEGMIND_API_KEY, it said "environment variable SEGMIND_API_KEY: is set, but empty"
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": 'api:\n  api_key: ""\n'},
            "c.yaml:2: api.api_key: is empty (give the key, or leave api_key out to use SEGMIND_API_KEY)",
        ),
        (  # was "got a int": Python's words
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "api:\n  api_key: 4242424242\n"},
            "c.yaml:2: api.api_key: expected text, got a number (not shown)",
        ),
        (  # was "got None"
            ["run", "m.jsonl", "--config", "c.yaml"],
            {"m.jsonl": "{}\n", "c.yaml": "concurrency:\n"},
            "c.yaml:1: concurrency: expected a whole number, got null",
        ),
        (  # a manifest given as the ledger: the dry run read it as an empty ledger and said all was well
            ["run", "m.jsonl", "--dry-run", "--ledger", "other.jsonl"],
            {"m.jsonl": "{}\n", "other.jsonl": '{"input_image": "https://example.com/a.png"}\n'},
            "other.jsonl is not a batcher ledger (its first line is not a ledger record)",
        ),
        (  # the run refused it too, but only after making the outputs folder beside it
            ["run", "m.jsonl", "--emulator", "--ledger", "other.jsonl"],
            {"m.jsonl": "{}\n", "other.jsonl": '{"input_image": "https://example.com/a.png"}\n'},
            "other.jsonl is not a batcher ledger (its first line is not a ledger record)",
        ),
    ],
)
def test_a_usage_mistake_is_one_clear_line_and_exit_2(
    tmp_path: Path, args: list[str], files: dict[str, str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "MISSHAP" not in proc.stderr  # a key in the wrong shape is still a key
    # Nothing was made: no ledger, no outputs folder, no emulator folder.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)


def test_a_config_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    """``--config`` naming a folder said "[Errno 21] Is a directory: 'c.yaml'"."""
    (tmp_path / "c.yaml").mkdir()
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    proc = run_cli("run", "m.jsonl", "--config", "c.yaml", cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr == "batcher: error: c.yaml: is a folder, not a config file (give --config a YAML file)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "m.jsonl", "--concurrency", "abc"],
            "batcher run: error: argument --concurrency: invalid int",
        ),
        (
            ["run", "m.jsonl", "--rate-limit", "abc"],
            "batcher run: error: argument --rate-limit: invalid float",
        ),
        (
            ["run", "m.jsonl", "--progress", "fancy"],
            "batcher run: error: argument --progress: invalid choice",
        ),
        (["run"], "batcher run: error: the following arguments are required: MANIFEST"),
        (["status"], "batcher status: error: the following arguments are required: LEDGER"),
        (["report", "l.jsonl", "--gallery", "x"], "batcher report: error: argument --gallery: invalid int"),
        (["emulator", "--port", "abc"], "batcher emulator: error: argument --port: bad port 'abc'"),
        ([], "batcher: error: the following arguments are required: COMMAND"),
        (  # was "batcher: error: ... (see batcher --help)", whose help does not list run's flags
            ["run", "m.jsonl", "--concurency", "4"],
            "batcher run: error: unrecognized arguments: --concurency 4; did you mean --concurrency?",
        ),
        (
            ["status", "l.jsonl", "--jsn"],
            "batcher status: error: unrecognized arguments: --jsn; did you mean --json?",
        ),
        (["emulator", "--nope"], "batcher emulator: error: unrecognized arguments: --nope (see"),
        # Typed before the command word: blamed on "batcher run", whose help does list its flags.
        (["--nope", "run", "m.jsonl"], "batcher: error: unrecognized arguments: --nope (see"),
        (  # run has -v: it was "batcher run: error: unrecognized arguments: -v"
            ["-v", "run", "m.jsonl"],
            "batcher: error: unrecognized arguments: -v; batcher run takes -v after run (see",
        ),
        (
            ["--concurency=4", "run", "m.jsonl"],
            "batcher: error: unrecognized arguments: --concurency=4; did you mean batcher run --concurrency?",
        ),
        (  # only the word typed before the command is the top parser's
            ["--nope", "status", "l.jsonl", "--nope"],
            "batcher: error: unrecognized arguments: --nope (see",
        ),
    ],
)
def test_a_flag_mistake_is_one_line_pointing_at_the_help(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """argparse printed the whole usage first (7 lines for ``run``, 33 for ``emulator``, whose
    README section promises one line), the line that matters last; now it is that line alone.
    A flag the command does not have is named by that command, with the flag most like it."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    proc = run_cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    command = message.split(": error:")[0]
    assert proc.stderr.endswith(f" (see {command} --help)\n"), proc.stderr


def _run_with(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``batcher run m.jsonl`` in ``cwd`` with exactly ``env`` (no emulator, no flags)."""
    command = [sys.executable, "-m", "batcher", "run", "m.jsonl"]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("value", ["", "  \n"], ids=["empty", "blank"])
def test_an_api_key_variable_set_but_empty_says_so(tmp_path: Path, value: str) -> None:
    """The nightly cron line's ``SEGMIND_API_KEY=$(cat ~/.segmind-key)`` with the file gone: it
    said "no API key (export SEGMIND_API_KEY=...)", though the line does just that."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    env = cli_env()
    env["SEGMIND_API_KEY"] = value
    proc = _run_with(env, tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        "batcher: error: environment variable SEGMIND_API_KEY: is set, but empty (a command meant to"
        " fill it, such as $(cat ~/.segmind-key), may have printed nothing;"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_with_json_logs_the_error_a_run_stops_on_is_json_too(tmp_path: Path) -> None:
    """``--log-format json`` promises one JSON object per event on stderr; the error that ended a
    run was a plain "batcher: error: ..." line a log shipper could not parse."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    proc = run_cli("run", "m.jsonl", "--log-format", "json", "--concurrency", "0", cwd=tmp_path)
    assert proc.returncode == 2
    [line] = proc.stderr.splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["event"] == "log"
    assert event["message"] == "command line: --concurrency: must be at least 1, got 0 (e.g. 16)"


@pytest.mark.anyio
async def test_an_api_key_left_null_in_the_config_is_the_environment_key(tmp_path: Path) -> None:
    """``api_key:`` with nothing after it (config.example.yaml's line uncommented, the value not
    filled in) stopped every run: "expected text, got a NoneType (not shown)". null is unset,
    as for api.proxy: SEGMIND_API_KEY's key is sent, and the job runs."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    (tmp_path / "c.yaml").write_text("api:\n  api_key:\n")
    config = EmulatorConfig(api_key=API_KEY, render="placeholder", duration_median=0.0)
    async with run_emulator(config) as emu:
        command = run_command("--config", "c.yaml", *FAST_ARGS)
        done = await anyio.run_process(command, cwd=tmp_path, env=cli_env(emu.base_url), check=False)
        assert emu.stats()["submissions"] == 1
    assert done.returncode == 0, done.stderr


def test_no_api_key_is_a_usage_error_naming_the_variable(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    env = cli_env()
    del env["SEGMIND_API_KEY"]
    proc = _run_with(env, tmp_path)
    assert proc.returncode == 2 and "SEGMIND_API_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_a_plain_http_api_base_in_the_environment_is_refused_naming_the_variable(tmp_path: Path) -> None:
    """SEGMIND_API_BASE=http://... to a host that is not this machine: the key would have
    crossed the network in clear. Refused before anything is made or sent, with the fix."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    proc = run_cli("run", "m.jsonl", cwd=tmp_path, base_url="http://api.segmind.com")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (
        "environment variable SEGMIND_API_BASE: api.base_url: plain http to api.segmind.com would send"
        " the API key across the network unencrypted (use https://;"
    ) in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_an_embedded_emulator_run_goes_direct_whatever_proxies_the_environment_names(
    tmp_path: Path,
) -> None:
    """``make demo`` for someone behind a proxy: HTTP_PROXY and ALL_PROXY point at a port where
    nothing listens (a request sent there would fail) and HTTPS_PROXY names a SOCKS proxy, which
    batcher cannot use and would refuse for a real run. The emulator is on this machine: the run
    completes."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 0\n")
    with socket.socket() as sock:  # a port that was free a moment ago, now closed
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    env = cli_env()
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        env[name] = closed
    env["HTTPS_PROXY"] = env["https_proxy"] = "socks5://proxy.corp:1080"
    command = [*run_command(), "--emulator", "--config", "c.yaml", *FAST_ARGS]
    proc = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "This run: 2 completed" in proc.stdout


@pytest.mark.anyio
async def test_a_locked_ledger_exits_75_and_writes_nothing(tmp_path: Path) -> None:
    from batcher.ledger import Ledger

    write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    ledger = tmp_path / "l.jsonl"
    with Ledger.open(ledger) as held:
        held.event(None, "run", 0.0)
        before = ledger.read_bytes()
        async with run_emulator(EmulatorConfig(render="placeholder")) as emu:
            proc = await anyio.run_process(
                [sys.executable, "-m", "batcher", "run", "m.jsonl", "--ledger", str(ledger)],
                cwd=tmp_path,
                env=cli_env(emu.base_url),
                check=False,
            )
            assert emu.stats()["api_requests"] == 0
        assert ledger.read_bytes() == before
    assert proc.returncode == 75
    assert b"in use by another batcher run" in proc.stderr


async def _start(tmp_path: Path, base_url: str, *extra: str) -> Process:
    return await anyio.open_process(
        run_command("-v", *FAST_ARGS, *extra), cwd=tmp_path, env=cli_env(base_url)
    )


async def _readable(fd: int) -> None:
    """Wait until ``fd`` (a pipe) has data. anyio.wait_readable takes a plain fd only from anyio
    4.7 on, and batcher itself needs 4.6: the tests run on asyncio, so its loop waits directly."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(fd)


async def _resume(tmp_path: Path, base_url: str) -> subprocess.CompletedProcess[bytes]:
    """The same command again, to the end: what a user does after a crash."""
    return await anyio.run_process(run_command(*FAST_ARGS), cwd=tmp_path, env=cli_env(base_url), check=False)


@pytest.mark.anyio
async def test_kill_9_between_submitting_and_submitted_resubmits_once_and_counts_it(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    config = EmulatorConfig(render="placeholder", duration_median=0.2, slow_rate=1.0, slow_seconds=3600)
    async with run_emulator(config) as emu:
        proc = await _start(tmp_path, emu.base_url, "--concurrency", "1")
        async with proc:
            lines = StderrLines(proc)
            with anyio.fail_after(30):
                await lines.wait_for("sending its POST")  # the ledger says submitting; no answer yet
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        statuses = [r["status"] for r in ledger_lines(tmp_path / "l.jsonl")]
        assert statuses[-1] == "submitting"
        emu.state.reconfigure(slow_rate=0.0)
        with anyio.fail_after(60):
            done = await _resume(tmp_path, emu.base_url)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr.decode()
    assert b"1 job with an earlier POST of unknown outcome had to be sent again" in done.stdout
    # The killed POST reached the server (it was only slow), so that one input was paid twice.
    assert stats["inputs_submitted_more_than_once"] <= 1
    assert stats["submissions"] <= 4


async def _kill_9_once_submitted(tmp_path: Path, base_url: str, jobs: int) -> int:
    """Start a run of ``jobs`` jobs at once, kill -9 it once every one is submitted; its pid."""
    proc = await _start(tmp_path, base_url, "--concurrency", str(jobs))
    async with proc:
        lines = StderrLines(proc)
        with anyio.fail_after(30):
            await lines.wait_for("submitted", count=jobs)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    return proc.pid


@pytest.mark.anyio
async def test_kill_9_after_submitted_re_attaches_and_never_posts_again(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(6))
    config = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config) as emu:
        await _kill_9_once_submitted(tmp_path, emu.base_url, 6)
        submitted_before = emu.stats()["submissions"]
        assert submitted_before == 6
        emu.state.reconfigure(duration_median=0.0)
        with anyio.fail_after(60):
            done = await _resume(tmp_path, emu.base_url)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr.decode()
    assert stats["submissions"] == 6 and stats["inputs_submitted_more_than_once"] == 0
    assert b"6 jobs re-attached" in done.stdout


@pytest.mark.anyio
async def test_the_run_after_a_kill_9_removes_the_part_files_the_killed_run_left(tmp_path: Path) -> None:
    """A run killed while writing outputs leaves their hidden part files (``.<name>.<pid>.part``):
    they stayed in --out for good. The next run after one that did not end in order removes
    those whose process is gone, and keeps a running process's (another run saving there)."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    config = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config) as emu:
        pid = await _kill_9_once_submitted(tmp_path, emu.base_url, 2)
        # What a kill in the middle of two outputs' writes leaves, and a live writer's file.
        out = tmp_path / "out"
        left = [out / f".sketch-0000+0.{pid}.part", out / f".sketch-0001+1.{pid}.part"]
        running = out / f".other+0.{os.getpid()}.part"
        for part in [*left, running]:
            part.write_bytes(b"half an image")
        emu.state.reconfigure(duration_median=0.0)
        with anyio.fail_after(60):
            done = await _resume(tmp_path, emu.base_url)
    assert done.returncode == 0, done.stderr.decode()
    assert sorted(p.name for p in out.iterdir()) == [running.name, "sketch-0000.png", "sketch-0001.png"]


@pytest.mark.anyio
async def test_sigterm_during_a_burst_exits_130_and_the_next_run_re_attaches(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(10))
    config = EmulatorConfig(render="placeholder", duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config) as emu:
        proc = await _start(tmp_path, emu.base_url, "--concurrency", "10")
        async with proc:
            lines = StderrLines(proc)
            with anyio.fail_after(30):
                await lines.wait_for("submitted", count=4)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(2.0):  # the brief: exit 130 within 2 seconds
                code = await proc.wait()
        assert code == 130
        lines = ledger_lines(tmp_path / "l.jsonl")
        posted = {r["job_id"] for r in lines if r["status"] == "submitted"}
        assert posted and emu.stats()["submissions"] == len(posted)  # every accepted job is in the ledger
        emu.state.reconfigure(duration_median=0.0)
        with anyio.fail_after(60):
            done = await _resume(tmp_path, emu.base_url)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr.decode()
    assert stats["submissions"] == 10 and stats["inputs_submitted_more_than_once"] == 0
    assert f"{plural(len(posted), 'job')} re-attached".encode() in done.stdout


@pytest.mark.anyio
async def test_signals_during_a_slow_shutdown_exit_130_without_a_traceback(tmp_path: Path) -> None:
    """The first SIGTERM waits for the POSTs on the wire; a second stops at once, and any more
    while it stops must not crash it (it raised UnboundLocalError, exit 1) or kill it with
    SIGTERM's default action (exit 143): cron reads 130 as "interrupted, resume me"."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(4))
    config = EmulatorConfig(render="placeholder", slow_rate=1.0, slow_seconds=60.0)
    async with run_emulator(config) as emu:
        proc = await _start(tmp_path, emu.base_url, "--concurrency", "4")
        async with proc:
            lines = StderrLines(proc)
            with anyio.fail_after(30):
                await lines.wait_for("submitting recorded")  # a POST is on the wire, and hangs
                proc.send_signal(signal.SIGTERM)
                await lines.wait_for("SIGTERM received")
                proc.send_signal(signal.SIGTERM)
                await lines.wait_for("second signal")
                for _ in range(20):  # a storm: each one may land anywhere in the shutdown
                    proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                rest = await lines.rest()
                code = await proc.wait()
    assert code == 130, rest
    assert not any("Traceback" in line for line in rest), rest
    assert any("run the same command to resume" in line for line in rest), rest


@pytest.mark.anyio
@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_third_signal_exits_130_at_once_when_the_stop_hangs(tmp_path: Path, log_format: str) -> None:
    """A stop can hang where cancellation does not reach: here the output's write, in a worker
    thread, blocks on a file nobody reads (as a dead network disk would block it). The first
    SIGTERM waits for the download, the second cancels, and waits for the thread; the third used
    to be ignored, so only kill -9 ended the run. It now exits 130 at once, saying so, and the next
    run finishes the job without a second POST. With ``--log-format json`` it says so in JSON (its
    words were the one plain line among the JSON)."""
    rnd = random.Random(7)
    side = 800  # noise does not compress: the sketch is a few hundred KB, written in a thread
    Image.frombytes("RGB", (side, side), rnd.randbytes(side * side * 3)).save(tmp_path / "big.png")
    row = {"id": "big", "workflow": "sketch", "input": {"input_image": "big.png"}}
    write_jsonl(tmp_path / "m.jsonl", [row])
    (tmp_path / "out").mkdir()
    config = EmulatorConfig(duration_median=3600.0, duration_spread=0.0)
    async with run_emulator(config) as emu:
        proc = await _start(tmp_path, emu.base_url, "--log-format", log_format)
        # The part file the output is written to is a pipe the test holds open and never reads.
        part = tmp_path / "out" / f".big+0.{proc.pid}.part"
        os.mkfifo(part)
        reader = os.open(part, os.O_RDONLY | os.O_NONBLOCK)
        try:
            lines = StderrLines(proc)
            with anyio.fail_after(30):
                await lines.wait_for("submitted")
                emu.state.reconfigure(duration_median=0.0)
                await _readable(reader)  # the thread is writing the output, and stuck
                proc.send_signal(signal.SIGTERM)
                await lines.wait_for("SIGTERM received")
                proc.send_signal(signal.SIGTERM)
                await lines.wait_for("second signal")
                proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(10):
                rest = await lines.rest()
                code = await proc.wait()
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.aclose()
            os.close(reader)
        assert code == 130, rest
        assert any("third signal: exiting now" in line for line in rest), rest
        assert not any("Traceback" in line for line in rest), rest
        if log_format == "json":
            assert all(isinstance(json.loads(line), dict) for line in rest if line.strip()), rest
        part.unlink()
        with anyio.fail_after(60):
            done = await _resume(tmp_path, emu.base_url)
        stats = emu.stats()
    assert done.returncode == 0, done.stderr.decode()
    assert stats["submissions"] == 1
    assert (tmp_path / "out" / "big.png").stat().st_size > 256 * 1024


@pytest.mark.anyio
async def test_two_ctrl_c_on_an_embedded_emulator_exit_130_without_a_traceback(tmp_path: Path) -> None:
    """The emulator's render task group was opened in aiohttp's cleanup_ctx; a cancelled cleanup
    left it to the garbage collector: RuntimeError tracebacks, exit 1 (found by a helper's hunt)."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(4))
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 3600\n")
    env = cli_env()
    proc = await anyio.open_process(
        run_command("-v", "--emulator", "--config", "c.yaml", *FAST_ARGS), cwd=tmp_path, env=env
    )
    async with proc:
        lines = StderrLines(proc)
        with anyio.fail_after(30):
            await lines.wait_for("submitted as request", count=4)  # renders and polls under way
            proc.send_signal(signal.SIGINT)
            await lines.wait_for("SIGINT received")
            proc.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            rest = await lines.rest()
            code = await proc.wait()
    assert code == 130, rest
    assert not any("Traceback" in line or "RuntimeError" in line for line in rest), rest


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_after_the_summary_leaves_the_exit_code_alone(tmp_path: Path, signum: int) -> None:
    """main restored the default handlers when it returned: a SIGTERM after the summary ended the
    process with 143 (killed), a SIGINT with 120, instead of the run's exit code 0.

    The signal is sent at a known moment without a sleep: stdout is a one-page pipe the test fills
    first, and the summary (long, for its long ledger and output paths) sits in the process's stdout
    buffer until it is flushed: by main itself since main checks that stdout took the summary
    (cli._summary_written), before that by the interpreter on the way out. That write blocks on
    the full pipe; once the test has read the filler and one byte of the summary, the rest of the
    summary is still being written, after the run is over, and the signal lands there."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(1))
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 0\n")
    deep = Path(*(letter * 250 for letter in "abcdefghijk"))  # a summary of about 5.7 KB
    (tmp_path / deep).mkdir(parents=True)
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)  # the summary must wait in the buffer for the exit
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 4096)
    os.set_blocking(write_end, False)
    filler = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            filler += os.write(write_end, b"x" * 4096)
    os.set_blocking(write_end, True)
    command = [*run_command(), "--emulator", "--config", "c.yaml", "--poll-interval", "0.1"]
    command[command.index("l.jsonl")] = str(deep / "l.jsonl")
    command[command.index("out")] = str(deep / "out")
    with (tmp_path / "stderr").open("wb") as stderr:
        proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=write_end, stderr=stderr)
    os.close(write_end)
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        assert len(pipe.read(filler)) == filler  # the pipe holds the filler only: one read takes it
        out = pipe.read(1)  # the summary's first byte: the process is writing it on its way out
        proc.send_signal(signum)
        out += pipe.readall()
    code = proc.wait(timeout=60)
    assert out.startswith(b"This run: 1 completed"), out[:200]
    assert code == 0, (tmp_path / "stderr").read_text()
    # Longer than the pipe, or the test would not know the process was still writing it; shorter
    # than the stdout buffer, or it would have been written while the summary was being printed.
    assert 4096 < len(out) < 8192, len(out)


@pytest.mark.anyio
async def test_the_api_key_appears_in_no_file_and_no_output(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", [*sketch_rows(3), {"id": "bad", "workflow": "sketch", "input": {}}])
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.1, error_rate=0.2)) as emu:
        done = await anyio.run_process(
            run_command("-v", *FAST_ARGS), cwd=tmp_path, env=cli_env(emu.base_url), check=False
        )
    assert done.returncode == 1
    status = run_cli("status", "l.jsonl", cwd=tmp_path)
    report = run_cli("report", "l.jsonl", "-o", "report.html", cwd=tmp_path)
    assert status.returncode == 0 and report.returncode == 0, report.stderr
    assert (tmp_path / "report.html").stat().st_size > 0
    for text in (
        done.stdout + done.stderr,
        (status.stdout + status.stderr).encode(),
        (report.stdout + report.stderr).encode(),
    ):
        assert API_KEY.encode() not in text
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "m.jsonl":
            assert API_KEY.encode() not in path.read_bytes(), path
    header = json.loads((tmp_path / "l.jsonl").read_text().splitlines()[0])
    assert "api_key" not in header["settings"]["api"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--progress", "plain"], "plain"),
        (["--log-format", "json"], "json"),
        (["--progress", "json"], "json"),  # its log lines were plain text among the JSON
        (["--quiet"], "quiet"),
    ],
    ids=["plain", "json", "progress-json", "quiet"],
)
async def test_progress_modes_for_cron_pipes_and_log_shippers(
    tmp_path: Path, flags: list[str], check: str
) -> None:
    write_jsonl(tmp_path / "m.jsonl", [*sketch_rows(3), {"id": "bad", "workflow": "sketch", "input": {}}])
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.1)) as emu:
        done = await anyio.run_process(
            [sys.executable, "-m", "batcher", "run", "m.jsonl", "--ledger", "l.jsonl", *FAST_ARGS, *flags],
            cwd=tmp_path,
            env=cli_env(emu.base_url),
            check=False,
        )
    err = done.stderr.decode()
    assert done.returncode == 1 and b"This run: 3 completed" in done.stdout
    assert "\x1b" not in err  # no control characters off a terminal
    if check == "plain":
        assert any(
            line.startswith("batcher: ") and "done" in line and "in flight" in line
            for line in err.splitlines()
        )
    elif check == "json":
        events = [json.loads(line) for line in err.splitlines() if line.strip()]
        assert any(e.get("event") == "log" and e["level"] == "error" for e in events)  # the bad row
        assert any("by_state" in e for e in events)  # progress updates
    else:
        assert "in flight" not in err and "m.jsonl:4" in err  # warnings and errors still show
