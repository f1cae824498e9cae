"""Checking settings: values of the right type that cannot work (a base URL that is no URL, a
key with a line break, a proxy that is SOCKS, a submit path naming another field...), each a
:class:`~batcher.errors.ConfigError` naming where the value came from (the config file and
line, the command line, the environment) and what to write instead. :mod:`batcher.settings_load`
reads and merges; :func:`validate` is its last step.
"""

from __future__ import annotations

import re
from typing import NoReturn
from urllib.parse import urlsplit

from .config import UNKNOWN_SUBMIT_CHOICES, Settings
from .errors import ConfigError
from .netpolicy import in_clear_off_machine, proxy_problem, shown

#: Where each setting's value came from: dotted key → (source, line or None).
Origins = dict[str, tuple[str, int | None]]

_ENVIRONMENT = "environment variable "


def environment_source(variable: str) -> str:
    """The source of a setting read from the environment variable ``variable``, as errors name
    it and :data:`Origins` records it."""
    return _ENVIRONMENT + variable


def _from_environment(source: str) -> bool:
    """Whether ``source`` is an :func:`environment_source`."""
    return source.startswith(_ENVIRONMENT)


#: What no API key holds: an HTTP header cannot carry line breaks, and keys are printable ASCII.
_NOT_KEY = re.compile(r"[^\x21-\x7e]")
#: The shortest API key accepted. Error texts are redacted by blanking every occurrence of the key,
#: so a key of a character or two would blank letters all over them ("a" every a), and a Segmind
#: key is far longer ("SG_" and 16 or more hex digits): a shorter one is a paste gone wrong.
MIN_KEY_LENGTH = 8
#: No API key begins or ends with these: a key that does was pasted with the quotes around it.
_QUOTES = ("'", '"')
_BASE_EXAMPLE = "e.g. https://api.segmind.com, or http://127.0.0.1:8787 for the emulator"


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

    def raise_for(key: str, message: str, fix: str, *also: str) -> NoReturn:
        """``also``: other keys the check involves; the one that was set is named."""
        key = next((k for k in (key, *also) if k in (origins or {})), key)
        source, line = (origins or {}).get(key, ("built-in default", None))
        raise ConfigError(message, source=source, key=key, line=line, fix=fix)

    def need(ok: bool, key: str, message: str, fix: str, *also: str) -> None:
        if not ok:
            raise_for(key, message, fix, *also)

    try:
        parts = urlsplit(s.api.base_url)
    except ValueError as exc:  # an unclosed [ of an IPv6 address was a traceback
        raise_for("api.base_url", f"{shown(s.api.base_url)!r} is not a valid URL: {exc}", _BASE_EXAMPLE)
    try:
        port = parts.port  # raises for a port that is not a number or is past 65535
    except ValueError:
        port = 0
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
        _BASE_EXAMPLE,
    )
    # aiohttp refused the URL at every submit: each job was tried and left "deferred", exit 1.
    need(port != 0, "api.base_url", f"{shown(s.api.base_url)!r} has an invalid port", _BASE_EXAMPLE)
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
    # A key pasted with its quotes ("sk-..." from a .env file; docker --env-file keeps them) was
    # sent with them, and the provider's 401 stopped the run (exit 3) after it had started.
    need(
        not (s.api.api_key[:1] in _QUOTES or s.api.api_key[-1:] in _QUOTES),
        "api.api_key",
        "the key starts or ends with a quote mark (the key is not shown)",
        "give the key without the quotes around it",
    )
    # An empty key in the config (or a flag) overrides SEGMIND_API_KEY: the run said "environment
    # variable SEGMIND_API_KEY: is set, but empty" of a variable that held the key. (An empty
    # variable is told apart where a key is needed: a dry run needs none.)
    key_source = (origins or {}).get("api.api_key", ("",))[0]
    need(
        bool(s.api.api_key) or not key_source or _from_environment(key_source),
        "api.api_key",
        "is empty",
        "give the key, or leave api_key out to use SEGMIND_API_KEY",
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
