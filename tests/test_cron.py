"""batcher as cron, systemd timers, Docker, ssh sessions and pipes run it: its log or summary
going nowhere, a locale that is not UTF-8, a terminal that hangs up, the folder it starts in.

Every child runs without PYTHONUNBUFFERED (as under cron): its stdout is block-buffered, and
the interpreter's last flush is where a lost stream used to turn the exit code into 120.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from batcher.emulator import EmulatorConfig, run_emulator

from .ledger_builder import LedgerBuilder
from .support import API_KEY, StderrLines, cli_env, ledger_lines, run_command, sketch_rows, write_jsonl

FAST_ARGS = ["--poll-interval", "0.1", "--rate-limit", "60000"]
EMULATED = "emulator:\n  render: placeholder\n  duration_median: 0\n"
#: A terminal that hangs up: a child on a pty as its controlling terminal (what an ssh session
#: gives a command), with SIGHUP ignored first when asked (what nohup does).
ON_A_TERMINAL = """
import os, signal, sys, fcntl, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
# SIGHUP as a login shell leaves it (the suite itself may run under nohup, which children inherit)
signal.signal(signal.SIGHUP, signal.SIG_IGN if sys.argv[1] == "nohup" else signal.SIG_DFL)
os.execv(sys.argv[2], sys.argv[2:])
"""


def _env(**changes: str) -> dict[str, str]:
    env = cli_env()
    env.pop("PYTHONUNBUFFERED", None)
    env.update(changes)
    return env


def _emulated(tmp_path: Path, rows: int = 3) -> list[str]:
    """A run of ``rows`` jobs on the embedded emulator, in ``tmp_path``: its command."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(rows))
    (tmp_path / "c.yaml").write_text(EMULATED)
    return [*run_command(), "--emulator", "--config", "c.yaml", *FAST_ARGS]


def _run(command: list[str], cwd: Path, **streams: Any) -> subprocess.CompletedProcess[bytes]:
    env = streams.pop("env", None) or _env()
    return subprocess.run(command, cwd=cwd, env=env, timeout=90, check=False, **streams)


def _reader_gone() -> int:
    """The write end of a pipe whose reader has exited (``| head`` once it has its line)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


def _finished_in_order(ledger: Path, jobs: int) -> None:
    lines = ledger_lines(ledger)
    assert sum(r["status"] == "completed" for r in lines) == jobs, [r["status"] for r in lines]
    assert lines[-1]["status"] == "run_end"


@pytest.mark.parametrize("log", ["reader-gone", "closed", "disk-full"])
def test_a_run_whose_log_goes_nowhere_does_all_its_work_and_keeps_its_exit_code(
    tmp_path: Path, log: str
) -> None:
    """stderr a pipe whose reader exited (``2>&1 | logger``, logger dead), closed (``2>&-``),
    or a full disk (``2>> /full/cron.log``): the first progress line raised and ended the run
    there, exit 1, with nothing done (and mid-batch it cut the POSTs on the wire). The run now
    carries on without its log: every job done, run_end written, exit 0 (not 1, nor 120)."""
    command = _emulated(tmp_path)
    if log == "reader-gone":
        stderr = _reader_gone()
        done = _run(command, tmp_path, stdout=subprocess.PIPE, stderr=stderr)
        os.close(stderr)
    elif log == "closed":
        done = _run(["sh", "-c", 'exec "$@" 2>&-', "sh", *command], tmp_path, stdout=subprocess.PIPE)
    else:
        with open("/dev/full", "wb") as full:
            done = _run(command, tmp_path, stdout=subprocess.PIPE, stderr=full)
    assert done.returncode == 0
    assert done.stdout.startswith(b"This run: 3 completed")
    _finished_in_order(tmp_path / "l.jsonl", 3)


@pytest.mark.parametrize(("summary", "cause"), [("reader-gone", "Broken pipe"), ("disk-full", "No space")])
def test_a_summary_that_cannot_be_written_keeps_the_runs_exit_code_and_says_so(
    tmp_path: Path, summary: str, cause: str
) -> None:
    """stdout gone when the summary is printed (``batcher run ... | mail`` with the mailer
    dead, a full disk): a BrokenPipeError traceback, exit 1, for a run that did everything.
    The exit code is the run's, and stderr says where the summary is."""
    command = _emulated(tmp_path)
    if summary == "reader-gone":
        stdout = _reader_gone()
        done = _run(command, tmp_path, stdout=stdout, stderr=subprocess.PIPE)
        os.close(stdout)
    else:
        with open("/dev/full", "wb") as full:
            done = _run(command, tmp_path, stdout=full, stderr=subprocess.PIPE)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert f"batcher: the summary could not be written to standard output ({cause}" in err
    assert err.rstrip().endswith("batcher status l.jsonl shows it"), err
    _finished_in_order(tmp_path / "l.jsonl", 3)


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    """A ledger with jobs done and failed (a status of some length)."""
    built = LedgerBuilder().run()
    for i in range(30):
        built.submit(f"job-{i}", "sketch", {"input_image": f"https://example.com/{i}.png"}).tick(1)
        built.failed(f"job-{i}", f"provider error {i}: no such image /img/{i}.png")
    return built.write(tmp_path / "l.jsonl")


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["report"]], ids=["status", "status-json", "report"]
)
def test_status_and_report_into_a_pipe_whose_reader_left_end_quietly(ledger: Path, args: list[str]) -> None:
    """``batcher status l.jsonl | head -1``: a BrokenPipeError traceback (or "Exception
    ignored ... BrokenPipeError" and exit 120). The reader asked for that much: exit 0, and
    nothing on stderr."""
    stdout = _reader_gone()
    done = _run(
        [sys.executable, "-m", "batcher", *args, ledger.name],
        ledger.parent,
        stdout=stdout,
        stderr=subprocess.PIPE,
    )
    os.close(stdout)
    assert (done.returncode, done.stderr) == (0, b"")


@pytest.mark.parametrize("command", ["status", "report"])
def test_status_and_report_onto_a_full_disk_say_so(ledger: Path, command: str) -> None:
    """``batcher status l.jsonl > /full/status.txt``: a traceback, exit 1. Now one line, exit 74."""
    with open("/dev/full", "wb") as full:
        done = _run(
            [sys.executable, "-m", "batcher", command, ledger.name],
            ledger.parent,
            stdout=full,
            stderr=subprocess.PIPE,
        )
    assert done.returncode == 74
    assert done.stderr == b"batcher: error: cannot write to standard output: No space left on device\n"


def test_a_report_page_onto_a_full_disk_exits_74(ledger: Path) -> None:
    """The page itself could not be written (a full disk; a file size limit, which applies to
    root too, stands in for it): exit 2, a "mistake", where the README says a full disk is one
    line and exit 74. Now 74, and no page or temporary file is left half-written."""
    code = (
        "import resource, runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000)); "
        "runpy.run_module('batcher', run_name='__main__', alter_sys=True)"
    )
    command = [sys.executable, "-c", code, "report", ledger.name, "-o", "r.html"]
    done = _run(command, ledger.parent, capture_output=True, text=True)
    assert done.returncode == 74, done.stderr
    assert done.stderr == "batcher: error: cannot write report r.html: File too large\n"
    assert sorted(p.name for p in ledger.parent.iterdir()) == [ledger.name]


def test_non_ascii_names_and_titles_on_an_ascii_terminal(tmp_path: Path) -> None:
    """PYTHONIOENCODING=ascii (or a Latin-1 locale): a manifest named nächtlich.jsonl made the
    summary a UnicodeEncodeError traceback, and so were status and report; JSON logs held
    ``\\xe4``, which is not JSON. Text is escaped as Python escapes stderr; JSON by JSON's rules."""
    rows = [
        {
            "id": "crème-1",
            "workflow": "blog-image",
            "input": {"title": "Crème brûlée ☕", "description": "é"},
        },
        {"id": "日本-2", "workflow": "sketch", "input": {}},  # invalid: the error names the file
    ]
    write_jsonl(tmp_path / "nächtlich.jsonl", rows)
    (tmp_path / "c.yaml").write_text(EMULATED)
    env = _env(PYTHONIOENCODING="ascii")
    run = [sys.executable, "-m", "batcher", "run", "nächtlich.jsonl", "--emulator", "--config", "c.yaml"]
    done = _run([*run, *FAST_ARGS, "--log-format", "json"], tmp_path, env=env, capture_output=True)
    assert done.returncode == 1, done.stderr  # the invalid row
    assert b"This run: 1 completed, 1 invalid row" in done.stdout
    assert b"Ledger: runs/n\\xe4chtlich/ledger.jsonl" in done.stdout
    events = [json.loads(line) for line in done.stderr.decode("ascii").splitlines()]
    assert any(e.get("message", "").startswith("nächtlich.jsonl:2: input_image") for e in events)

    ledger = "runs/nächtlich/ledger.jsonl"
    status = _run([sys.executable, "-m", "batcher", "status", ledger], tmp_path, env=env, capture_output=True)
    assert status.returncode == 0 and b"runs/n\\xe4chtlich/ledger.jsonl" in status.stdout, status.stderr
    as_json = _run(
        [sys.executable, "-m", "batcher", "status", ledger, "--json"], tmp_path, env=env, capture_output=True
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["ledger"] == ledger
    report = _run([sys.executable, "-m", "batcher", "report", ledger], tmp_path, env=env, capture_output=True)
    assert report.returncode == 0 and report.stdout.startswith(b"Report written to runs/n\\xe4chtlich/")


def test_a_manifest_whose_name_is_not_utf8_runs_and_resumes(tmp_path: Path) -> None:
    """A file from a Latin-1 system (``caf\\xe9.jsonl``, or any non-ASCII name under a C locale
    without UTF-8 mode) reaches Python as lone surrogates: the ledger's first line could not be
    encoded, a traceback, exit 1. Its name is now written as a JSON escape, read back as the
    same name: the run completes, the next finds it done, status and report read the ledger
    and show the name escaped (the page's links were a UnicodeEncodeError too)."""
    name = os.fsdecode(b"caf\xe9.jsonl")
    write_jsonl(tmp_path / name, sketch_rows(2))
    (tmp_path / "c.yaml").write_text(EMULATED)
    run = [sys.executable, "-m", "batcher", "run", name, "--emulator", "--config", "c.yaml", *FAST_ARGS]
    first = _run(run, tmp_path, capture_output=True)
    assert first.returncode == 0, first.stderr
    again = _run(run, tmp_path, capture_output=True)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(b"Nothing to do: every job is already complete (2 jobs).")
    ledger = os.fsdecode(b"runs/caf\xe9/ledger.jsonl")
    for args in (["status", ledger], ["status", ledger, "--json"], ["report", ledger]):
        shown = _run([sys.executable, "-m", "batcher", *args], tmp_path, capture_output=True)
        assert shown.returncode == 0 and b"caf\\udce9" in shown.stdout, (args, shown.stderr)
    # A page outside that folder links to its outputs by the bytes of their folder's name.
    page = _run(
        [sys.executable, "-m", "batcher", "report", ledger, "-o", "r.html"], tmp_path, capture_output=True
    )
    assert page.returncode == 0, page.stderr
    assert 'href="runs/caf%E9/outputs/sketch-0000.png"' in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("flags", [["--log-format", "json"], ["--log-format=json"], ["--progress", "json"]])
def test_with_json_logs_a_flag_mistake_is_json_too(tmp_path: Path, flags: list[str]) -> None:
    """argparse's own mistakes were a plain line among the JSON a log shipper reads. The event
    carries ``exit_code`` (2), as the README says of every error a run stops on (it had none)."""
    done = _run(
        [sys.executable, "-m", "batcher", "run", "m.jsonl", *flags, "--concurrency", "many"],
        tmp_path,
        capture_output=True,
    )
    assert done.returncode == 2
    [line] = done.stderr.decode().splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["event"] == "log" and event["exit_code"] == 2
    assert event["message"] == (
        "batcher run: argument --concurrency: invalid int value: 'many' (see batcher run --help)"
    )


@pytest.mark.parametrize("progress", ["plain", "rich"])
def test_json_logs_with_a_text_progress_display_are_refused_in_json(tmp_path: Path, progress: str) -> None:
    """``--log-format json --progress plain`` put a text progress line among the JSON every 30 s;
    with ``--progress rich`` the log lines themselves were rich text, not JSON. Both write to
    stderr, so the pair is refused before anything is sent: one JSON line, exit 2."""
    command = [*_emulated(tmp_path), "--log-format", "json", "--progress", progress]
    done = _run(command, tmp_path, capture_output=True)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.decode().splitlines()
    event = json.loads(line)
    assert event["level"] == "error" and event["event"] == "log" and event["exit_code"] == 2
    assert event["message"].startswith(
        f"batcher run: --progress {progress} writes text to stderr, where --log-format json writes one"
        " JSON object a line; use --progress json (its default) or --progress quiet"
    )
    assert not (tmp_path / "runs").exists()  # nothing started


def _on_a_terminal(cwd: Path, command: list[str], *, nohup: bool) -> tuple[int, bytes]:
    """Run ``command`` with a pty as its controlling terminal, close the terminal once a job
    is submitted (an ssh session ending), and return its exit code and what it had printed."""
    master, slave = os.openpty()
    wrapper = [sys.executable, "-c", ON_A_TERMINAL, "nohup" if nohup else "-", *command]
    env = _env(TERM="xterm", COLUMNS="200")  # log lines on one line each
    with subprocess.Popen(
        wrapper, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    ) as proc:
        os.close(slave)
        seen = b""
        while b"submitted as request" not in seen:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal, ended
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)  # hang up
        try:
            return proc.wait(timeout=60), seen
        except subprocess.TimeoutExpired:
            proc.kill()  # a run that did not stop: fail, and leave no process behind
            raise


def test_a_terminal_that_hangs_up_stops_the_run_in_order(tmp_path: Path) -> None:
    """An ssh session closed under a run (no nohup): SIGHUP's default action killed it
    mid-step, as kill -9 does (a POST on the wire cut, to be sent again and maybe paid twice; no
    run_end). SIGHUP now stops it as SIGTERM does: exit 130, with run_end."""
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 3600\n")
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    command = [*run_command(), "--emulator", "--config", "c.yaml", "-v", *FAST_ARGS]
    code, seen = _on_a_terminal(tmp_path, command, nohup=False)
    assert code == 130, seen.decode(errors="replace")
    statuses = [r["status"] for r in ledger_lines(tmp_path / "l.jsonl")]
    assert statuses[-1] == "run_end" and "submitted" in statuses


def test_a_run_under_nohup_outlives_its_terminal(tmp_path: Path) -> None:
    """With SIGHUP ignored (nohup), a run whose terminal closed goes on, but writing to the
    hung-up terminal raised EIO: the live panel's next redraw ended the run, exit 1. It now
    finishes every job without its display: exit 0."""
    command = _emulated(tmp_path, rows=4)
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 1\n")
    code, seen = _on_a_terminal(tmp_path, [*command, "-v"], nohup=True)
    assert code == 0, seen.decode(errors="replace")
    _finished_in_order(tmp_path / "l.jsonl", 4)


@pytest.mark.anyio
async def test_a_manifest_run_from_another_folder_is_pointed_at_its_ledger(tmp_path: Path) -> None:
    """Cron runs ``cd /data && batcher run nightly.jsonl``; the same manifest run by hand from
    elsewhere (``../nightly.jsonl`` here) looked for its default ledger under the folder it
    started in, found none, and sent every row again: every job paid twice. It now names the
    manifest's ledger and stops, exit 2, having sent and made nothing; so does --dry-run."""
    write_jsonl(tmp_path / "nightly.jsonl", sketch_rows(3))
    (tmp_path / "elsewhere").mkdir()
    cron = [sys.executable, "-m", "batcher", "run", "nightly.jsonl", *FAST_ARGS]
    by_hand = [sys.executable, "-m", "batcher", "run", "../nightly.jsonl", *FAST_ARGS]
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.0)) as emu:
        env = cli_env(emu.base_url)
        first = await anyio.run_process(cron, cwd=tmp_path, env=env, check=False)
        assert first.returncode == 0, first.stderr
        second = await anyio.run_process(by_hand, cwd=tmp_path / "elsewhere", env=env, check=False)
        dry = await anyio.run_process(
            [*by_hand, "--dry-run"], cwd=tmp_path / "elsewhere", env=env, check=False
        )
        assert emu.stats()["submissions"] == 3
    theirs = tmp_path / "runs" / "nightly" / "ledger.jsonl"
    for done in (second, dry):
        assert done.returncode == 2
        assert done.stderr.decode().startswith(
            f"batcher: error: ../nightly.jsonl: its ledger is {theirs}, kept by runs started in {tmp_path};"
        )
        assert f"give --ledger {theirs}" in done.stderr.decode()
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.anyio
async def test_the_readme_cron_layout_run_by_hand_elsewhere_is_pointed_at_its_ledger(tmp_path: Path) -> None:
    """The README's cron line starts above the manifest's folder (``cd /srv/batcher && batcher
    run jobs/nightly.jsonl``: the ledger is ``/srv/batcher/runs/nightly/ledger.jsonl``). Only the
    manifest's own folder (``jobs/``) was looked in, so the same manifest run by hand from home,
    or from ``jobs/`` itself, started a new ledger and paid for every row again. Both now stop,
    exit 2, naming that ledger and the folder to run in; so does --dry-run; nothing is sent."""
    srv = tmp_path / "srv"
    (srv / "jobs").mkdir(parents=True)
    (tmp_path / "home").mkdir()
    write_jsonl(srv / "jobs" / "nightly.jsonl", sketch_rows(3))
    manifest = str(srv / "jobs" / "nightly.jsonl")
    run = [sys.executable, "-m", "batcher", "run"]
    async with run_emulator(EmulatorConfig(render="placeholder", duration_median=0.0)) as emu:
        env = cli_env(emu.base_url)
        cron = await anyio.run_process(
            [*run, "jobs/nightly.jsonl", *FAST_ARGS], cwd=srv, env=env, check=False
        )
        assert cron.returncode == 0, cron.stderr
        by_hand = [
            await anyio.run_process([*run, path, *FAST_ARGS, *extra], cwd=cwd, env=env, check=False)
            for path, cwd in ((manifest, tmp_path / "home"), ("nightly.jsonl", srv / "jobs"))
            for extra in ([], ["--dry-run"])
        ]
        assert emu.stats()["submissions"] == 3
    theirs = srv / "runs" / "nightly" / "ledger.jsonl"
    for done in by_hand:
        assert done.returncode == 2, done.stderr
        message = done.stderr.decode()
        assert f": its ledger is {theirs}, kept by runs started in {srv};" in message
        assert f"run it in {srv} (cd {srv})" in message and "Traceback" not in message
    assert list((tmp_path / "home").iterdir()) == []
    assert sorted(p.name for p in (srv / "jobs").iterdir()) == ["nightly.jsonl"]


def _without_root_powers() -> list[str]:
    """A command prefix under which file permissions hold (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all", "--"]


def test_a_default_ledger_in_a_folder_that_cannot_be_written_is_refused_first(tmp_path: Path) -> None:
    """Cron started in a read-only folder: the default ledger (``runs/m/ledger.jsonl`` there)
    was refused only when opened, "Permission denied", after the outputs folder had been
    made elsewhere. It is now refused first, naming the folder and the flag to give."""
    here = tmp_path / "readonly"
    here.mkdir()
    write_jsonl(here / "m.jsonl", sketch_rows(1))
    here.chmod(0o555)
    command = [*_without_root_powers(), sys.executable, "-m", "batcher", "run", "m.jsonl"]
    done = _run([*command, "--out", str(tmp_path / "out")], here, capture_output=True, text=True)
    here.chmod(0o755)
    assert done.returncode == 2
    assert done.stderr == (
        f"batcher: error: cannot create ledger runs/m/ledger.jsonl: no permission to write in {here};"
        " give --ledger a path in a folder you can write (a relative one is taken from the folder"
        " batcher starts in)\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.anyio
async def test_json_logs_stay_one_object_a_line_through_a_library_traceback_and_a_sigterm(
    tmp_path: Path,
) -> None:
    """Under ``--log-format json`` everything on stderr is one JSON object a line, to the end.
    A malformed request to the embedded emulator (a port scanner, a health probe) made aiohttp's
    server log "Error handling request" and a 14-line traceback through logging's last resort:
    plain lines among the JSON. It is now one event, named by its ``logger``, the traceback a
    field of it. And a run stopped by SIGTERM ended its stderr with a progress update: how it
    ended (exit 130) and what the next run picks up were only in the summary on stdout, which a
    shipper of stderr never sees. The last event is now the summary, with ``exit_code``. The
    API key is in none of it."""
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(3))
    (tmp_path / "c.yaml").write_text(
        "emulator:\n  render: placeholder\n  duration_median: 3600\n  duration_spread: 0\n"
    )
    command = [*run_command(), "--emulator", "--config", "c.yaml", *FAST_ARGS, "-v", "--log-format", "json"]
    proc = await anyio.open_process(command, cwd=tmp_path, env=_env())
    async with proc:
        lines = StderrLines(proc)
        seen: list[str] = []  # every line, for the checks below

        async def until(needle: str, count: int = 1) -> str:
            async for line in lines:
                seen.append(line)
                count -= needle in line
                if count == 0:
                    return line
            raise AssertionError(f"no {needle!r} in {seen}")

        with anyio.fail_after(30):
            serving = await until("emulator serving at")
            port = int(json.loads(serving)["message"].rsplit(":", 1)[1])
            await until("submitted as request", count=3)  # every job: in flight for an hour
            async with await anyio.connect_tcp("127.0.0.1", port) as probe:
                await probe.send(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
                assert (await probe.receive()).startswith(b"HTTP/1.0 400")
            await until("Error handling request")
            proc.send_signal(signal.SIGTERM)
            seen += await lines.rest()
            code = await proc.wait()
        assert proc.stdout is not None
        stdout = b"".join([chunk async for chunk in proc.stdout])
    assert code == 130, seen
    events = [json.loads(line) for line in seen]  # every line, each one object
    assert all(isinstance(e, dict) and {"ts", "level", "event"} <= e.keys() for e in events), seen
    [library] = [e for e in events if e.get("logger") == "aiohttp.server"]
    assert library["level"] == "error" and library["message"] == "Error handling request from 127.0.0.1"
    assert "BadHttpMessage" in library["traceback"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["final"] for e in progress] == [False] * (len(progress) - 1) + [True]
    last = events[-1]
    assert last["event"] == "summary" and last["exit_code"] == 130 and last["level"] == "warning"
    assert last["in_flight"] == 3 and last["interrupted"] is True
    assert "3 still in flight (re-attached next run)" in last["message"]
    assert "run the same command again to resume" in last["message"]
    assert last["message"] in stdout.decode()  # the summary on stdout, whole
    assert API_KEY not in "\n".join(seen) and API_KEY.encode() not in stdout
