"""What a user copies from README.md and config.example.yaml exists in the code, and the reverse."""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import typing
from pathlib import Path

from batcher.config import Settings
from batcher.settings_load import load_settings

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
