"""Reading settings: the YAML config file, the environment and flags, merged, coerced and checked.

:func:`load_settings` is the only function that merges (precedence, lowest first: built-in
defaults, the environment, the config file, command-line flags). Every mistake is a
:class:`~batcher.errors.ConfigError` that names the source, the key, the line when there is one,
and what to write instead. The frozen dataclasses it fills live in :mod:`batcher.config`.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from .config import Settings
from .errors import ConfigError
from .netpolicy import (
    no_proxy_from_environment,
    normalize_proxy,
    proxy_from_environment,
    split_hosts,
)
from .settings_check import Origins, environment_source, validate

_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$")


def parse_duration(text: str) -> float | None:
    """Seconds from "50m", "2h", "1h30m", "90s" or "90"; None if it is none of those."""
    match = _DURATION.match(text)
    if not match or not any(match.groups()):
        return None
    if match.group(3) and (match.group(1) or match.group(2)) and not text.strip().endswith("s"):
        return None  # "1h30": minutes or seconds? Either "1h30m" or "1h30s" says it
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def _coerce(value: Any, annotation: Any, *, source: str, key: str, line: int | None) -> Any:
    """``value`` as the field's type, or a ConfigError that says what was expected."""
    if key == "poll.give_up_after" and value is False:
        return None  # YAML reads ``off`` and ``no`` as false: the cap is off, as with null
    if key == "api.proxy" and value is False:
        return ""  # no proxy, whatever the environment says (null leaves it to the environment)
    if key == "api.no_proxy" and isinstance(value, str):
        return split_hosts([value])  # NO_PROXY's comma-separated form
    if key == "api.no_proxy" and value is False:
        return ()  # no host goes direct, whatever NO_PROXY says (as ``api.proxy: false``)
    if key.endswith(("max_runtime", "give_up_after")) and isinstance(value, str):
        seconds = parse_duration(value)
        if seconds is None:
            raise ConfigError(
                f"expected a duration, got {value!r}",
                source=source,
                key=key,
                line=line,
                fix='e.g. "50m", "2h" or "1h30m"',
            )
        return seconds
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], source=source, key=key, line=line)

    def bad(expected: str) -> ConfigError:
        # A misshapen key must not be printed: it may still be the key.
        got = f"{_kind(value)} (not shown)" if key.endswith("api_key") else _shown(value)
        return ConfigError(f"expected {expected}, got {got}", source=source, key=key, line=line)

    if annotation is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("a whole number")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise bad("text")
        return value
    if annotation is Path:
        if isinstance(value, Path):
            return value
        if not isinstance(value, str) or not value:
            raise bad("a path")
        return Path(value)
    if origin is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of text")
        return tuple(value)
    if origin is Mapping or annotation is Mapping:
        if not isinstance(value, dict):
            raise bad("a mapping")
        return dict(value)
    return value


#: What a YAML value is, in YAML's words ("got a NoneType", "got a int" were Python's).
_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "text",
    list: "a list",
    dict: "a mapping",
}


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), "a value")


def _shown(value: Any) -> str:
    """``value`` as the config file has it: ``null``, ``true``, ``'many'``, ``[1, 2]``."""
    if value is None or isinstance(value, bool):
        return str(value).lower().replace("none", "null")
    return repr(value)


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """``section.key`` → 1-based line, from a composed YAML node (for error messages)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = f"{prefix}{key_node.value}"
            lines[name] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, f"{name}."))
    return lines


def _repeated_key(node: yaml.Node, prefix: str = "") -> tuple[str, int, int] | None:
    """The first ``section.key`` a mapping in ``node`` gives twice: ``(key, first line, line)``.
    YAML keeps the last silently, so a section pasted again at the end of a config replaced the
    whole earlier one (every setting in it back to its default) without a word."""
    if not isinstance(node, yaml.MappingNode):
        return None
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        name = f"{prefix}{key_node.value}"
        line = key_node.start_mark.line + 1
        if key_node.tag != "tag:yaml.org,2002:merge" and name in seen:
            return name, seen[name], line
        seen.setdefault(name, line)
        if found := _repeated_key(value_node, f"{name}."):
            return found
    return None


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The YAML mapping in ``path`` and the line of every key. Raises ConfigError."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=src, fix="check the --config path") from None
    except IsADirectoryError:  # was "[Errno 21] Is a directory: '...'"
        raise ConfigError(
            "is a folder, not a config file", source=src, fix="give --config a YAML file"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", source=src) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "not UTF-8 text",
            source=src,
            line=exc.object[: exc.start].count(b"\n") + 1,
            fix="save it as UTF-8",
        ) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            f"not valid YAML: {exc.problem}",
            source=src,
            line=mark.line + 1 if mark else None,
            fix="fix the YAML syntax",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=src) from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError("the config file must be a mapping of settings", source=src, line=1)
    if node is not None and (repeated := _repeated_key(node)):
        key, first, line = repeated
        raise ConfigError(
            f"given twice (first on line {first}); only the last would count",
            source=src,
            key=key,
            line=line,
            fix="merge them into one",
        )
    return data, _key_lines(node) if node is not None else {}


#: Where each setting that is not a default came from: dotted key → (source, line or None).


def _apply(
    base: Any,
    values: Mapping[str, Any],
    *,
    source: str,
    prefix: str,
    lines: Mapping[str, int],
    origins: Origins,
) -> Any:
    """A copy of dataclass ``base`` with ``values`` applied, checking every key and type; notes
    in ``origins`` where each value came from."""
    hints = typing.get_type_hints(type(base))
    names = {f.name for f in dataclasses.fields(base)}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        line = lines.get(full)
        if full in ("api.no_proxy", "api.api_key") and value is None:
            # null, as unset: NO_PROXY, or SEGMIND_API_KEY, from the environment (as
            # ``api.proxy: null``); ``api_key:`` left empty was "expected text, got a NoneType".
            continue
        if key not in names:
            raise ConfigError(
                "unknown setting",
                source=source,
                key=full,
                line=line,
                fix=f"known keys here: {', '.join(sorted(names))}",
            )
        current = getattr(base, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError("expected a mapping", source=source, key=full, line=line)
            changes[key] = _apply(
                current, value, source=source, prefix=f"{full}.", lines=lines, origins=origins
            )
        else:
            changes[key] = _coerce(value, hints[key], source=source, key=full, line=line)
            if full == "emulator":
                changes[key] = _emulator_options(changes[key], source=source, lines=lines)
            origins[full] = (source, line)
    return dataclasses.replace(base, **changes)


def _emulator_options(options: Mapping[str, Any], *, source: str, lines: Mapping[str, int]) -> dict[str, Any]:
    """The ``emulator:`` section, each option coerced to its type and checked as ``batcher
    emulator`` checks its flags, so that a mistake names the file, the line and the option like
    any other setting's (and is found before a run makes its folders or starts the emulator)."""
    from .emulator.config import RATE_PERIODS, EmulatorConfig, field_names  # only for this section

    hints = typing.get_type_hints(EmulatorConfig)
    checked: dict[str, Any] = {}
    periods: dict[str, tuple[float, str]] = {}  # a period a rate's unit named: by its setting
    for name, value in options.items():
        key = f"emulator.{name}"
        if name not in field_names():
            raise ConfigError(
                "unknown option",
                source=source,
                key=key,
                line=lines.get(key),
                fix=f"use one of: {', '.join(field_names())}",
            )
        if isinstance(value, str) and name in RATE_PERIODS:
            checked[name], period = _emulator_rate(value, key=key, source=source, line=lines.get(key))
            if period is not None:
                periods[RATE_PERIODS[name]] = (period, name)
            continue
        checked[name] = _coerce(value, hints[name], source=source, key=key, line=lines.get(key))
    for period_name, (period, name) in periods.items():
        if period_name in checked and checked[period_name] != period:
            key = f"emulator.{name}"
            raise ConfigError(
                f"{options[name]!r} is per {period:g} s, but {period_name} says {checked[period_name]:g} s",
                source=source,
                key=key,
                line=lines.get(key),
                fix=f"leave out {period_name}, or give {name} as a number",
            )
        checked[period_name] = period
    try:
        EmulatorConfig(**checked)
    except ConfigError as exc:
        raise ConfigError(
            exc.problem, source=source, key=exc.key, line=lines.get(exc.key), fix=exc.fix
        ) from None
    return checked


def _emulator_rate(text: str, *, key: str, source: str, line: int | None) -> tuple[float, float | None]:
    """``emulator.rate_limit: 50/min`` as ``batcher emulator --rate-limit 50/min`` reads it: the
    count, and the period in seconds its unit names (None for a bare number, which is per
    ``rate_period``). It was refused as "expected a finite number", saying nothing of the form
    the flag takes."""
    from .emulator.config import RATE_EXAMPLES, split_rate

    rate = split_rate(text)
    if rate is None:
        raise ConfigError(
            f"expected a number or a rate, got {text!r}",
            source=source,
            key=key,
            line=line,
            fix=f"e.g. {RATE_EXAMPLES}",
        )
    return rate


def load_settings(
    *,
    config_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Merge defaults, environment, config file and flag ``overrides`` (dotted keys), then validate."""
    settings = Settings()
    env = env or {}
    origins: Origins = {}
    for variable, key in (("SEGMIND_API_KEY", "api_key"), ("SEGMIND_API_BASE", "base_url")):
        if env.get(variable):
            settings = _apply(
                settings,
                {"api": {key: env[variable].strip()}},
                source=environment_source(variable),
                prefix="",
                lines={},
                origins=origins,
            )
    if config_path is not None:
        data, lines = read_config_file(config_path)
        settings = _apply(settings, data, source=str(config_path), prefix="", lines=lines, origins=origins)
    if overrides:
        nested: dict[str, Any] = {}
        for dotted, value in overrides.items():
            if value is None:
                continue
            target = nested
            *parents, last = dotted.split(".")
            for part in parents:
                target = target.setdefault(part, {})
            target[last] = value
        settings = _apply(settings, nested, source="command line", prefix="", lines={}, origins=origins)
    if settings.api.api_key != settings.api.api_key.strip():  # a pasted key's trailing newline
        settings = dataclasses.replace(
            settings, api=dataclasses.replace(settings.api, api_key=settings.api.api_key.strip())
        )
    settings = _with_proxy(settings, env, origins)
    validate(settings, origins)
    assert isinstance(settings, Settings)
    return settings


def _with_proxy(settings: Settings, env: Mapping[str, str], origins: Origins) -> Settings:
    """``api.proxy`` and ``api.no_proxy`` as the run uses them: from the environment
    (HTTPS_PROXY, NO_PROXY and their lower-case forms) where the config and flags leave them
    unset; the proxy URL with its scheme (``proxy:3128`` is ``http://proxy:3128``), and None
    for none."""
    api = settings.api
    proxy = api.proxy
    if proxy is None:
        found = proxy_from_environment(env)
        if found is not None:
            variable, proxy = found
            origins["api.proxy"] = (environment_source(variable), None)
    no_proxy = split_hosts(api.no_proxy) if "api.no_proxy" in origins else no_proxy_from_environment(env)
    proxy = normalize_proxy(proxy) if proxy else None
    return dataclasses.replace(settings, api=dataclasses.replace(api, proxy=proxy, no_proxy=no_proxy))
