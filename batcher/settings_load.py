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
from urllib.parse import urlsplit

import yaml

from .config import UNKNOWN_SUBMIT_CHOICES, Settings
from .errors import ConfigError
from .netpolicy import (
    in_clear_off_machine,
    no_proxy_from_environment,
    normalize_proxy,
    proxy_from_environment,
    proxy_problem,
    split_hosts,
)

#: What no API key holds: an HTTP header cannot carry line breaks, and keys are printable ASCII.
_NOT_KEY = re.compile(r"[^\x21-\x7e]")
#: The shortest API key accepted. Error texts are redacted by blanking every occurrence of the key,
#: so a key of a character or two would blank letters all over them ("a" every a), and a Segmind
#: key is far longer ("SG_" and 16 or more hex digits): a shorter one is a paste gone wrong.
MIN_KEY_LENGTH = 8
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
        got = f"a {type(value).__name__} (not shown)" if key.endswith("api_key") else repr(value)
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


def _key_lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    """``section.key`` → 1-based line, from a composed YAML node (for error messages)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            name = f"{prefix}{key_node.value}"
            lines[name] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, f"{name}."))
    return lines


def read_config_file(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """The YAML mapping in ``path`` and the line of every key. Raises ConfigError."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", source=src, fix="check the --config path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file: {exc}", source=src) from None
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
    return data, _key_lines(node) if node is not None else {}


#: Where each setting that is not a default came from: dotted key → (source, line or None).
Origins = dict[str, tuple[str, int | None]]


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
        if full == "api.no_proxy" and value is None:
            continue  # null, as unset: NO_PROXY from the environment (as ``api.proxy: null``)
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
    from .emulator.config import EmulatorConfig, field_names  # loaded only for this section

    hints = typing.get_type_hints(EmulatorConfig)
    checked: dict[str, Any] = {}
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
        checked[name] = _coerce(value, hints[name], source=source, key=key, line=lines.get(key))
    try:
        EmulatorConfig(**checked)
    except ConfigError as exc:
        raise ConfigError(
            exc.problem, source=source, key=exc.key, line=lines.get(exc.key), fix=exc.fix
        ) from None
    return checked


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
                source=f"environment variable {variable}",
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
            origins["api.proxy"] = (f"environment variable {variable}", None)
    no_proxy = split_hosts(api.no_proxy) if "api.no_proxy" in origins else no_proxy_from_environment(env)
    proxy = normalize_proxy(proxy) if proxy else None
    return dataclasses.replace(settings, api=dataclasses.replace(api, proxy=proxy, no_proxy=no_proxy))


def _fills(template: str) -> bool:
    """Whether ``template`` can be filled in with a workflow id and nothing else."""
    try:
        template.format(workflow_id="x")
    except (KeyError, IndexError, ValueError):
        return False
    return True


def validate(s: Settings, origins: Origins | None = None) -> None:
    """Raise ConfigError for values that are the right type but cannot work, naming where the
    value came from (the config file and line, the command line, the environment)."""

    def need(ok: bool, key: str, message: str, fix: str, *also: str) -> None:
        """``also``: other keys the check involves; the one that was set is named."""
        if not ok:
            key = next((k for k in (key, *also) if k in (origins or {})), key)
            source, line = (origins or {}).get(key, ("built-in default", None))
            raise ConfigError(message, source=source, key=key, line=line, fix=fix)

    parts = urlsplit(s.api.base_url)
    need(
        parts.username is None and parts.password is None,
        "api.base_url",
        "must not hold a user name or password (user:pass@); it is not shown",
        "put the key in SEGMIND_API_KEY or api.api_key, and give the bare URL",
    )
    need(
        parts.scheme in ("http", "https") and bool(parts.hostname),
        "api.base_url",
        f"{s.api.base_url!r} is not an http(s) URL",
        "e.g. https://api.segmind.com",
    )
    need(
        s.api.allow_insecure_http or not in_clear_off_machine(s.api.base_url),
        "api.base_url",
        f"plain http to {parts.hostname} would send the API key across the network unencrypted",
        "use https://; for an emulator on another machine or in a container, on a network you"
        " trust, set api.allow_insecure_http: true in the config",
    )
    if s.api.proxy is not None and (problem := proxy_problem(s.api.proxy)):
        need(
            False,
            "api.proxy",
            problem,
            "give http://host:port or http://user:password@host:port; api.proxy: false for none",
        )
    need(
        "{workflow_id}" in s.api.submit_path,
        "api.submit_path",
        "must contain {workflow_id}",
        "e.g. /workflows/{workflow_id}",
    )
    # It is appended to the base URL: without its leading slash it ran into the host name
    # (https://api.segmind.comworkflows/...), refused only once the first job was recorded.
    need(
        s.api.submit_path.startswith("/") and _fills(s.api.submit_path),
        "api.submit_path",
        f"{s.api.submit_path!r} is not a path naming only {{workflow_id}}",
        "e.g. /workflows/{workflow_id}",
    )
    if bad := _NOT_KEY.search(s.api.api_key or ""):
        char = bad.group()
        what = {"\n": "a line break", "\r": "a carriage return", " ": "a space"}.get(char)
        need(
            False,
            "api.api_key",
            f"the key contains {what or f'the character U+{ord(char):04X}'} (the key is not shown)",
            "copy the key again: one word of printable ASCII",
        )
    length = len(s.api.api_key)
    need(
        length == 0 or length >= MIN_KEY_LENGTH,  # no key at all: the run says where to put one
        "api.api_key",
        f"the key is too short: {length} of at least {MIN_KEY_LENGTH} characters (the key is not shown)",
        "copy the whole key again: Segmind keys are much longer",
    )
    need(s.api.max_connections >= 1, "api.max_connections", "must be at least 1", "e.g. 32")
    need(s.api.connect_timeout > 0, "api.connect_timeout", "must be positive", "give seconds, e.g. 10")
    need(s.api.read_timeout > 0, "api.read_timeout", "must be positive", "give seconds, e.g. 60")
    need(s.api.request_timeout > 0, "api.request_timeout", "must be positive", "give seconds, e.g. 120")
    need(s.concurrency >= 1, "concurrency", f"must be at least 1, got {s.concurrency}", "e.g. 16")
    rpm = s.rate.requests_per_minute
    need(rpm is None or rpm > 0, "rate.requests_per_minute", "must be positive", "e.g. 50, or leave unset")
    need(s.rate.initial_per_minute > 0, "rate.initial_per_minute", "must be positive", "e.g. 50")
    need(s.rate.burst >= 1, "rate.burst", "must be at least 1", "e.g. 1")
    need(s.poll.interval > 0, "poll.interval", "must be positive", "seconds, e.g. 7")
    first = s.poll.first_delay
    need(first is None or first >= 0, "poll.first_delay", "must not be negative", "seconds, e.g. 7")
    cap = s.poll.give_up_after
    need(
        cap is None or cap > 0,
        "poll.give_up_after",
        f"must be positive, got {cap}",
        'a duration such as "2h", or null (or off) to poll until each job finishes',
    )
    need(
        s.poll.policy in ("adaptive", "fixed"),
        "poll.policy",
        f"{s.poll.policy!r} is not a choice",
        "adaptive or fixed",
    )
    need(s.retry.max_attempts >= 1, "retry.max_attempts", "must be at least 1", "e.g. 5")
    need(
        0 < s.retry.base_delay <= s.retry.max_delay,
        "retry.base_delay",
        "must be positive and at most retry.max_delay",
        "e.g. 2 and 120",
        "retry.max_delay",
    )
    need(s.rate.max_wait > 0, "rate.max_wait", "must be positive", "seconds, e.g. 900")
    need(s.output.timeout > 0, "output.timeout", "must be positive", "seconds, e.g. 300")
    need(
        s.output.min_rate >= 1,
        "output.min_rate",
        "must be at least 1 byte a second",
        "bytes a second, e.g. 65536",
    )
    need(s.output.max_bytes > 0, "output.max_bytes", "must be positive", "bytes, e.g. 104857600")
    need(s.output.concurrency >= 1, "output.concurrency", "must be at least 1", "e.g. 4")
    need(
        s.ledger.unknown_submit in UNKNOWN_SUBMIT_CHOICES,
        "ledger.unknown_submit",
        f"{s.ledger.unknown_submit!r} is not a choice",
        "resubmit or fail",
    )
    lim = s.limits
    need(
        lim.budget_usd is None or lim.budget_usd > 0, "limits.budget_usd", "must be positive", "USD, e.g. 25"
    )
    need(
        lim.max_runtime is None or lim.max_runtime > 0, "limits.max_runtime", "must be positive", 'e.g. "50m"'
    )
    rate = lim.halt_on_failure_rate
    need(
        rate is None or 0 <= rate < 1,
        "limits.halt_on_failure_rate",
        f"{rate} is not a share below 1",
        "e.g. 0.2 for 20%",
    )
    need(lim.halt_min_finished >= 1, "limits.halt_min_finished", "must be at least 1", "e.g. 20")
    for host in s.api.credential_hosts:
        need(
            bool(host) and "/" not in host,
            "api.credential_hosts",
            f"{host!r} is not a host name",
            "give bare host names like api.segmind.com",
        )
