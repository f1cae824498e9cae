"""What a user copies from README.md and config.example.yaml exists in the code, and the reverse
(the fields `batcher status --json` prints are the ones the README lists, of the types it says)."""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import re
import shlex
import tomllib
import typing
from pathlib import Path

import pytest

from batcher.cli_args import build_parser, overrides_from
from batcher.cli_inspect import add_status_parser, main_status
from batcher.clock import ScaledClock
from batcher.config import Settings
from batcher.emulator import EmulatorConfig, run_emulator
from batcher.emulator.cli import config_from_args
from batcher.engine import ExitCode
from batcher.manifest import read_manifests
from batcher.progress import JsonDisplay, PlainDisplay
from batcher.settings_load import load_settings, parse_duration
from batcher.status import ledger_status
from batcher.status_text import status_json
from batcher.workflows import load_workflows

from .ledger_builder import PRICES, SKETCH, T0, LedgerBuilder, every_branch
from .support import SPEED, run, run_cli, settings_for, sketch_rows, write_jsonl

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.yaml"
README = ROOT / "README.md"


def _setting_keys(cls: type = Settings, prefix: str = "") -> list[str]:
    """Every setting a config file can hold, as dotted keys (``poll.interval``)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            keys += _setting_keys(hint, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys


def _example_keys(text: str) -> set[str]:
    """The keys config.example.yaml shows, set or commented out (``# path: ...``), dotted."""
    keys: set[str] = set()
    section = ""
    for line in text.splitlines():
        if top := re.match(r"(?:# )?([a-z_]+):(\s|$)", line):
            section = top.group(1) if not line.split(":", 1)[1].strip() else ""
            keys.add(top.group(1))
        elif section and (inner := re.match(r" *(?:# *)?([a-z_]+):(\s|$)", line)):
            keys.add(f"{section}.{inner.group(1)}")
    return keys


def test_config_example_names_every_setting_at_its_default() -> None:
    """Every Settings field appears in config.example.yaml (poll.policy and the limits section
    were missing), and the file as shipped loads to exactly the defaults its header promises."""
    shown = _example_keys(EXAMPLE.read_text(encoding="utf-8"))
    missing = [key for key in _setting_keys() if key not in shown]
    assert not missing, f"settings missing from config.example.yaml: {missing}"
    assert load_settings(config_path=EXAMPLE, env={}) == load_settings(env={})


def _module_map() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("```\nbatcher/\n") + len("```\nbatcher/\n")
    return text[start : text.index("```", start)]


def test_readme_module_map_lists_every_module_and_only_modules_that_exist() -> None:
    """The README's Design map names every batcher module and package (feeder.py, stats.py and
    clock.py were missing), and every name or pattern in its first column matches a file."""
    block = _module_map()
    names = [
        name.strip()
        for line in block.splitlines()
        if (column := re.match(r"  (\S.*?)\s{2,}", line))
        for name in column.group(1).split(",")
    ]
    package = ROOT / "batcher"
    files = sorted(
        p.name + "/" if p.is_dir() else p.name
        for p in package.iterdir()
        if (p.suffix == ".py" and p.stem not in ("__init__", "__main__"))
        or (p.is_dir() and (p / "__init__.py").exists())
    )
    mentioned = set(re.findall(r"[\w]+\.py|\w+/", block))
    unlisted = [f for f in files if f not in mentioned and not any(fnmatch.fnmatch(f, n) for n in names)]
    assert not unlisted, f"modules missing from the README's module map: {unlisted}"
    stale = [n for n in names if not any(fnmatch.fnmatch(f, n) for f in files)]
    assert not stale, f"the README's module map names what does not exist: {stale}"


def _blocks() -> list[str]:
    """The README's fenced code blocks, each with its continued lines (``\\``) joined."""
    text = README.read_text(encoding="utf-8")
    return [block.replace("\\\n", " ") for block in re.findall(r"```\n(.*?)```", text, flags=re.S)]


def _synopsis() -> dict[str, set[str]]:
    """The flags the README's synopsis shows for each command (``batcher run ... [--force]``)."""
    block = next(b for b in _blocks() if b.startswith("batcher run MANIFEST"))
    shown: dict[str, set[str]] = {}
    for command in re.split(r"^(?=batcher )", block, flags=re.M):
        if command.strip():
            name = command.split()[1]
            shown[name] = set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", command))
    return shown


def _options(name: str) -> list[tuple[str, ...]]:
    """Each optional flag of ``batcher NAME`` as its spellings (``("-q", "--quiet")``), but --help."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        tuple(action.option_strings)
        for action in sub.choices[name]._actions
        if action.option_strings and "--help" not in action.option_strings
    ]


@pytest.mark.parametrize("command", ["run", "status", "report", "emulator"])
def test_the_readme_synopsis_shows_the_flags_each_command_has(command: str) -> None:
    """Every flag of the synopsis exists; for run, status and report every flag is shown (the
    emulator's faults are "[fault options...]")."""
    shown = _synopsis()[command]
    options = _options(command)
    known = {spelling for spellings in options for spelling in spellings}
    assert not shown - known, f"the README shows flags batcher {command} lacks: {shown - known}"
    if command != "emulator":
        missing = [spellings for spellings in options if not shown & set(spellings)]
        assert not missing, f"flags of batcher {command} missing from the README's synopsis: {missing}"


def _is_batcher(word: str) -> bool:
    return word == "batcher" or word.endswith("/bin/batcher")


def _commands() -> list[list[str]]:
    """Every ``batcher`` command line in the README's code blocks (not the synopsis), as words:
    the environment assignments before it, then ``batcher`` and its arguments (up to a
    redirection or the next command)."""
    found = []
    for block in _blocks():
        for line in block.splitlines():
            words = shlex.split(line, comments=False) if "batcher " in line and "[" not in line else []
            at = next((i for i, w in enumerate(words) if _is_batcher(w)), None)
            if at is None:
                continue
            start = at
            while start > 0 and re.match(r"[A-Z_]+=", words[start - 1]):
                start -= 1
            end = next((i for i in range(at, len(words)) if re.match(r"\d?>|;|&&|\|", words[i])), len(words))
            found.append(words[start:end])
    return found


def test_every_batcher_command_the_readme_shows_is_accepted_as_written() -> None:
    """The README's commands (the first run, the nightly cron line, the emulator's example) parse,
    and their values pass the same checks a run makes: flags, the environment they set, and the
    emulator's options. A flag renamed, or a value the checks came to refuse, fails here."""
    commands = _commands()
    assert len(commands) >= 4, commands
    for words in commands:
        at = next(i for i, w in enumerate(words) if _is_batcher(w))
        env = dict(w.split("=", 1) for w in words[:at])
        args = build_parser().parse_args(words[at + 1 :])
        if args.command == "run":
            load_settings(env=env, overrides=overrides_from(args))
        elif args.command == "emulator":
            config_from_args(args)


def _table(heading: str) -> list[list[str]]:
    """The rows of the first table under ``heading``, each as its cells (header row excluded)."""
    text = README.read_text(encoding="utf-8")
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("|"))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]


def test_the_readme_exit_codes_are_the_ones_batcher_uses() -> None:
    codes = [int(row[0]) for row in _table("### Exit codes")]
    assert codes == sorted(code.value for code in ExitCode)


def test_the_readme_workflow_table_is_jobs_definitions() -> None:
    """Each row's name, Segmind id and price is its ``jobs/*.yaml``'s, and every definition has a row."""
    rows = _table("### Workflows")
    shown = {}
    for name, workflow, _, price in rows:
        shown[name.strip("`")] = (re.findall(r"`([^`]+)`", workflow)[-1], float(price.lstrip("$")))
    defined = {wf.name: (wf.workflow_id, wf.price_usd) for wf in load_workflows()}
    assert shown == defined


def test_the_readme_manifest_examples_are_read_as_it_says(tmp_path: Path) -> None:
    """The JSONL row the manifest table shows is a valid sketch job; a workflow's Segmind id is
    that workflow (the README's example of a "raw" id, whose price it said was unknown, was
    sketch's own: checked and priced); another well-formed id is passed through, unpriced; and
    inference picks the workflow the README names for each set of inputs."""
    text = README.read_text(encoding="utf-8")
    row = re.search(r"\| `\.jsonl` \| one object a line: `(\{.*?\})`", text)
    assert row is not None
    registry = load_workflows()
    (tmp_path / "m.jsonl").write_text(row.group(1) + "\n")
    [job] = list(read_manifests([tmp_path / "m.jsonl"], registry))
    assert not isinstance(job, Exception), job
    assert job.workflow.name == "sketch"

    claims = re.findall(r"\(`([0-9a-f]{24}-v\d+)` is `([\w-]+)`, checked and priced\)", text)
    assert claims, "the README no longer says what a defined workflow's id is"
    for workflow_id, name in claims:
        found = registry.get(workflow_id)
        assert found is not None and found.name == name and found.price_usd is not None
    other = registry.get("0123456789abcdef01234567-v1")
    assert other is not None and not other.defined and other.price_usd is None

    inferred = re.search(r"Without `workflow`, it is inferred from the inputs: (.*?)\n- ", text, flags=re.S)
    assert inferred is not None
    assert "`input_image` → `sketch`" in inferred.group(1)
    assert "`Blog_title_and_description`, or `title` with an optional `description` → `blog-image`" in (
        " ".join(inferred.group(1).split())
    )
    for fields, name in [
        (["input_image"], "sketch"),
        (["Blog_title_and_description"], "blog-image"),
        (["title"], "blog-image"),
        (["title", "description"], "blog-image"),
    ]:
        assert [wf.name for wf in registry.infer(fields)] == [name], fields


def test_the_readme_durations_are_read_as_it_says() -> None:
    """``--max-runtime 50m`` (also ``2h``, ``1h30m``, ``90s``; ``1h30`` is refused as ambiguous)."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"`--max-runtime (\w+)` \(also (.*?); `(\w+)` is refused", text)
    assert match is not None
    accepted = [match.group(1), *re.findall(r"`(\w+)`", match.group(2))]
    assert accepted == ["50m", "2h", "1h30m", "90s"]
    assert [parse_duration(d) for d in accepted] == [3000, 7200, 5400, 90]
    assert parse_duration(match.group(3)) is None


def test_the_readme_names_the_lower_bounds_make_test_oldest_runs_on() -> None:
    """The versions the README says ``make test-oldest`` runs on are pyproject.toml's lower
    bounds, one for each runtime dependency (the Makefile reads them from there)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    bounds = dict(dep.lower().split(">=") for dep in deps)
    match = re.search(r"`make test-oldest` runs .*? \(([^)]*)\)", README.read_text(encoding="utf-8"), re.S)
    assert match is not None
    shown = {name.lower(): version for name, version in re.findall(r"(\w+) ([\d.]+)", match.group(1))}
    assert shown == bounds


def test_every_setting_the_readme_names_exists() -> None:
    """Each dotted setting the README names in backticks (`api.request_timeout`,
    `poll.give_up_after`, ...) is a key a config file can hold, so a renamed setting cannot
    leave the README telling users to set one that is refused as unknown."""
    named = set(
        re.findall(r"`((?:api|rate|poll|retry|output|ledger|limits)\.[a-z_]+)", README.read_text("utf-8"))
    )
    assert len(named) >= 15, named
    unknown = sorted(named - set(_setting_keys()))
    assert not unknown, f"the README names settings that do not exist: {unknown}"


STATUS_JSON = "#### `status --json`"
#: What the README's type column may say, and what each admits (``or null`` admits None too).
_JSON_TYPES: dict[str, typing.Callable[[object], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v),
    "string": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "list": lambda v: isinstance(v, list),
    "list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "object of ints": lambda v: (
        isinstance(v, dict)
        and all(isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) for k, n in v.items())
    ),
}
#: A ``status --json`` time: UTC, to the millisecond, ``Z`` (the ledger's and the JSON log's form).
_JSON_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


def _status_json_fields() -> dict[str, tuple[str, str]]:
    """The README's ``status --json`` table: each field's path (``spend.by_workflow[].usd``) and
    its type and meaning as written."""
    return {row[0].strip("`"): (row[1], row[2]) for row in _table(STATUS_JSON)}


def _paths(value: object, path: str, maps: set[str]) -> list[str]:
    """Every field path of a ``status --json`` object: ``a.b`` for an object's keys, ``a[]`` and
    ``a[].b`` for a list of objects; a list of plain values, or a ``maps`` object (its keys are
    data, such as ``by_state``'s statuses), is one field."""
    if isinstance(value, dict) and path not in maps:
        return [p for key, v in value.items() for p in _paths(v, f"{path}.{key}" if path else key, maps)]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [f"{path}[]", *(p for v in value for p in _paths(v, f"{path}[]", maps))]
    return [path]


def _values(data: dict[str, typing.Any], path: str) -> list[object]:
    """The values at a documented path (one per list entry under a ``[]``); KeyError if missing."""
    values: list[object] = [data]
    *parents, last = path.split(".")
    for name in parents:
        values = [v[name.removesuffix("[]")] for v in values]  # type: ignore[index]
        if name.endswith("[]"):
            values = [entry for v in values for entry in v]  # type: ignore[attr-defined]
    return [v[last.removesuffix("[]")] for v in values]  # type: ignore[index]


def _status_json_of(ledger: Path, now: float) -> dict[str, typing.Any]:
    report = ledger_status(ledger, prices=PRICES, now=now)
    # As `batcher status --json` prints it: NaN or Infinity would make this raise.
    return typing.cast(dict[str, typing.Any], json.loads(json.dumps(status_json(report), allow_nan=False)))


def test_every_field_of_status_json_is_in_the_readme_and_only_those(tmp_path: Path) -> None:
    """`status --json` is an interface scripts rely on: a field added, dropped or renamed
    without its row in the README's table (and a row left for a field that is gone) fails here.
    The ledger has an entry in every list and a value in every field."""
    documented = _status_json_fields()
    maps = {path for path, (kind, _) in documented.items() if kind.startswith("object")}
    b = every_branch()
    data = _status_json_of(b.write(tmp_path / "ledger.jsonl"), b.now + 100)
    emitted = set(_paths(data, "", maps))
    undocumented, stale = sorted(emitted - set(documented)), sorted(set(documented) - emitted)
    assert not undocumented, f"status --json fields missing from the README: {undocumented}"
    assert not stale, f"the README documents fields status --json lacks: {stale}"


def _ledger_with_hand_edited_times(path: Path) -> Path:
    b = LedgerBuilder().run().submit("a", "sketch", SKETCH).tick(1).submit("b", "sketch", SKETCH)
    b.tick(1).submit("c", "sketch", SKETCH)
    b.records[0]["ts"] = "2026-11-21T01:00:00+01:00"  # the run line: another offset
    b.records[2]["ts"] = "yesterday"  # a's submitted line: not a time
    b.records[4]["ts"] = "2026-11-21T00:00:01.123456"  # b's: no offset (UTC), microseconds
    b.records[-1]["ts"] = "0001-01-01T00:00:00+05:00"  # c's: no time in UTC (before year 1)
    return b.write(path)


def _ledger_older_format(path: Path) -> Path:
    """No ``run`` line, no ``run_end``, times to the second without an offset: a ledger another
    tool (or a hand) wrote, or one cut at its head."""
    b = LedgerBuilder().submit("a", "sketch", SKETCH).tick(5).generated("a").tick(1)
    b.completed("a", {"image": "/o/a.png"}).tick(1).submit("b", "sketch", SKETCH)
    for record in b.records:
        record["ts"] = record["ts"][:19]  # to the second, no Z
    return b.write(path)


LEDGERS: dict[str, typing.Callable[[Path], Path]] = {
    "every-branch": lambda path: every_branch().write(path),
    "empty": lambda path: LedgerBuilder().write(path),
    "hand-edited-times": _ledger_with_hand_edited_times,
    "older-format": _ledger_older_format,
    "unknown-outcome-only": lambda path: LedgerBuilder().run().submitting("a", "sketch", SKETCH).write(path),
}


@pytest.mark.parametrize("kind", LEDGERS)
def test_status_json_holds_every_documented_field_with_its_documented_type(tmp_path: Path, kind: str) -> None:
    """On any ledger, every field the README lists is there (nothing left out on an empty or an
    older ledger), of its documented type, and no number is NaN or Infinity. Every time is the
    one form the README promises, or null: they were the ledger lines' text as written
    ('yesterday', an offset, or none, which a script reads as its own local time)."""
    _check_documented_types(_status_json_of(LEDGERS[kind](tmp_path / "ledger.jsonl"), T0 + 86400))


@pytest.mark.anyio
async def test_status_json_of_a_real_runs_ledger_is_as_documented(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on the emulator with invalid rows, failed jobs and a budget that stops it early:
    ``batcher status LEDGER --json`` prints what the README's table says, field by field."""
    rows = [*sketch_rows(8), {"id": "bad-0", "workflow": "sketch", "input": {}}, {"workflow": "nope"}]
    manifest = write_jsonl(tmp_path / "m.jsonl", rows)
    clock = ScaledClock(SPEED)
    config = EmulatorConfig(render="placeholder", duration_median=1.0, fail_rate=0.5, seed=3)
    async with run_emulator(config, clock=clock) as emu:
        settings = settings_for(emu.base_url, tmp_path, **{"limits.budget_usd": 0.5})
        await run(settings, [manifest], load_workflows(), clock)
    parser = argparse.ArgumentParser(prog="batcher")
    add_status_parser(parser.add_subparsers(dest="command"))
    assert main_status(parser.parse_args(["status", str(tmp_path / "ledger.jsonl"), "--json"])) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["spend"]["submissions"] == 4 and data["last_run"]["not_started"] == 4
    assert data["failures"]["jobs"] > 0 and data["invalid"]["total"] == 2
    _check_documented_types(data)


def _check_documented_types(data: dict[str, typing.Any]) -> None:
    for path, (kind_text, meaning) in _status_json_fields().items():
        nullable = kind_text.endswith(" or null")
        check = _JSON_TYPES[kind_text.removesuffix(" or null")]
        try:
            values = _values(data, path)
        except KeyError:
            pytest.fail(f"{path}: the README documents it, status --json lacks it")
        for value in values:
            assert (value is None and nullable) or check(value), f"{path}: {value!r} is not {kind_text}"
            if meaning.startswith("the time of") and value is not None:
                assert _JSON_TIME.fullmatch(str(value)), f"{path}: {value!r} is not a UTC ISO 8601 time"


def _json_events() -> dict[str, set[str]]:
    """The fields the README's ``--log-format json`` table lists for each event beyond the four
    every line opens with: the backticked names after the first colon of its description."""
    fields = {}
    for event, what in _table("With `--log-format json` (or `--progress json`)"):
        named = set(re.findall(r"`([a-z_]+)`", what.partition(": ")[2])) - {"true"}
        fields[event.strip("`")] = named
    return fields


def test_the_json_events_the_readme_lists_are_the_ones_a_run_writes(tmp_path: Path) -> None:
    """A real run on the embedded emulator with ``--log-format json``: every line on stderr is one
    object opening with ``ts``, ``level``, ``event`` and ``message``; each ``progress`` and the
    ``summary`` carry exactly the fields the README's table lists (a field renamed or added in
    the code, or in the README alone, fails here); a dry run's summary carries ``exit_code``
    alone; and the paces it gives, progress events every 10 s and plain lines every 30, are the
    displays' own."""
    listed = _json_events()
    assert set(listed) == {"log", "progress", "summary"}, listed
    write_jsonl(tmp_path / "m.jsonl", sketch_rows(2))
    (tmp_path / "c.yaml").write_text("emulator:\n  render: placeholder\n  duration_median: 0\n")
    fast = ["--emulator", "--config", "c.yaml", "--poll-interval", "0.1", "--rate-limit", "60000"]
    common = ("run", "m.jsonl", "--ledger", "l.jsonl", "--out", "out", *fast, "--log-format", "json")
    for extra, code in [((), 0), (("--dry-run",), 0)]:
        done = run_cli(*common, *extra, cwd=tmp_path)
        assert done.returncode == code, done.stderr
        events = [json.loads(line) for line in done.stderr.splitlines()]
        assert all(list(e)[:4] == ["ts", "level", "event", "message"] for e in events), events
        assert {e["event"] for e in events} <= set(listed)
        summary = events[-1]
        assert summary["event"] == "summary" and summary["exit_code"] == code
        if extra:
            assert set(summary) - {"ts", "level", "event", "message"} == {"exit_code"}
            continue
        progress = [e for e in events if e["event"] == "progress"]
        assert progress and all(
            set(e) - {"ts", "level", "event", "message"} == listed["progress"] for e in progress
        )
        assert set(summary) - {"ts", "level", "event", "message"} == listed["summary"]
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "| `progress` | every 10 s," in text and JsonDisplay.every == 10.0
    assert "one plain summary line every 30 seconds" in text and PlainDisplay.every == 30.0
