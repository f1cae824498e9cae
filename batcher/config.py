"""Settings: frozen dataclasses with named defaults.

:func:`batcher.settings_load.load_settings` is the only function that builds them from the
environment, the config file and flags (and checks them); everything after it reads a frozen
:class:`Settings`. :func:`with_paths` fills in the ledger and output paths from the manifest.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .netpolicy import shown
from .workflows import DEFAULT_JOBS_DIR

DEFAULT_API_BASE = "https://api.segmind.com"


@dataclass(frozen=True)
class ApiSettings:
    """Where requests go and how they authenticate."""

    base_url: str = DEFAULT_API_BASE
    #: Never printed: ``repr=False`` keeps it out of reprs and the ledger's settings header.
    api_key: str = field(default="", repr=False)
    #: Hosts besides the base URL's that may receive the key (https only).
    credential_hosts: tuple[str, ...] = ()
    #: Accept an ``http://`` base URL on a host that is not this machine's loopback, and send
    #: the key to it in clear: for an emulator on another machine or in a container, on a
    #: network you trust. Off, plain http is refused unless the host is 127.0.0.0/8, ::1 or
    #: localhost (where the emulator and the tests run).
    allow_insecure_http: bool = False
    #: The proxy https requests go through (``http://[user:pass@]host:port``); None: none.
    #: :func:`~batcher.settings_load.load_settings` takes it from HTTPS_PROXY (or https_proxy)
    #: when neither the config nor a flag sets it; ``false`` there means none, whatever the
    #: environment says. Plain http never goes through it (see :mod:`batcher.netpolicy`).
    proxy: str | None = field(default=None, repr=False)  # its password must not reach a log
    #: Hosts https requests reach without the proxy (NO_PROXY's rules: a name, a ``.domain``
    #: suffix, ``host:port``, ``*``); taken from NO_PROXY (or no_proxy) when not set.
    no_proxy: tuple[str, ...] = ()
    #: Path of the submit call; ``/workflows/v2/{workflow_id}`` behaves the same.
    submit_path: str = "/workflows/{workflow_id}"
    connect_timeout: float = 10.0
    #: Seconds of silence (no byte at all) before a request counts as lost.
    read_timeout: float = 60.0
    #: Seconds one API request (a submit, a poll) may take in all, from when it has a connection
    #: (waiting for one of ``max_connections`` is not counted): a host that trickles its answer
    #: a byte at a time never trips ``read_timeout``.
    request_timeout: float = 120.0
    max_connections: int = 32


@dataclass(frozen=True)
class RateSettings:
    """The account's request budget, shared by submits and polls."""

    #: The known limit in requests per minute; ``None`` learns it from 429s.
    requests_per_minute: float | None = None
    #: Where learning starts when the limit is unknown (Segmind's Pro plan allows 50).
    initial_per_minute: float = 50.0
    #: Requests that may go back to back after an idle spell.
    burst: int = 1
    #: The longest server-told wait we honour before clamping (the API's 429s, and an output
    #: host's 429 or 503 with ``Retry-After``).
    max_wait: float = 900.0


@dataclass(frozen=True)
class PollSettings:
    """When to ask "done yet?"."""

    #: Seconds between polls of one job; the seeds use 7.
    interval: float = 7.0
    #: Seconds from submit to the first poll; ``None`` means ``interval``.
    first_delay: float | None = None
    #: "adaptive" times polls from learned durations and the budget (``interval`` is only the
    #: first guess); "fixed" polls every ``interval``.
    policy: str = "adaptive"
    #: Seconds one run keeps polling a job, counted from when this run submitted or re-attached
    #: it; a job still unfinished then (QUEUED, PROCESSING, or a status we do not know, forever)
    #: is left for the next run, which re-attaches it by its poll_url and never POSTs it again.
    #: ``None`` polls until the job finishes. Jobs take seconds to minutes: two hours is far past
    #: any real one, and keeps a nightly run from blocking the next night's (flags and YAML also
    #: take "2h", "90m").
    give_up_after: float | None = 2 * 3600.0

    def give_up_at(self, since: float) -> float:
        """When (on the run's monotonic clock) a job polled from ``since`` is given up."""
        return math.inf if self.give_up_after is None else since + self.give_up_after


@dataclass(frozen=True)
class RetrySettings:
    """Retries of one request after 5xx, timeouts and broken connections."""

    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 120.0


@dataclass(frozen=True)
class OutputSettings:
    """Downloading outputs."""

    #: Where output files go; unset: ``outputs/`` beside the ledger.
    out_dir: Path | None = None
    max_bytes: int = 100 * 1024 * 1024
    #: Seconds a download may take from when it has a connection, plus one second for every
    #: ``min_rate`` bytes received: a file arriving at ``min_rate`` bytes a second or faster is
    #: never cut, however big; a trickle is cut after about ``timeout`` seconds.
    timeout: float = 300.0
    min_rate: int = 64 * 1024
    concurrency: int = 4


#: What a job whose POST outcome is unknown may get: sent again, or failed.
UNKNOWN_SUBMIT_CHOICES = ("resubmit", "fail")


@dataclass(frozen=True)
class LedgerSettings:
    #: Unset: ``runs/<first manifest's name>/ledger.jsonl``.
    path: Path | None = None
    #: A job with a POST of unknown outcome and no ``submitted`` since (``JobState.post_unknown``):
    #: "resubmit" or "fail".
    unknown_submit: str = "resubmit"
    #: Use a ledger written for other manifests or workflow settings anyway.
    force: bool = False


@dataclass(frozen=True)
class LimitSettings:
    """When a run stops submitting by itself (in-flight jobs still finish)."""

    #: Never submit a job that could take this run's spend past this many USD.
    budget_usd: float | None = None
    #: Seconds the run may take (flags and YAML also take "50m", "2h", "1h30m").
    max_runtime: float | None = None
    #: Stop submitting once more than this share of finished jobs failed...
    halt_on_failure_rate: float | None = None
    #: ...counted after at least this many jobs finished in the run.
    halt_min_finished: int = 20


@dataclass(frozen=True)
class Settings:
    """Everything a run needs, validated."""

    api: ApiSettings = ApiSettings()
    rate: RateSettings = RateSettings()
    poll: PollSettings = PollSettings()
    retry: RetrySettings = RetrySettings()
    output: OutputSettings = OutputSettings()
    ledger: LedgerSettings = LedgerSettings()
    limits: LimitSettings = LimitSettings()
    #: At most this many jobs submitted and not yet finished.
    concurrency: int = 16
    #: Re-run jobs that failed for good (and expired ones).
    retry_failed: bool = False
    jobs_dir: Path = DEFAULT_JOBS_DIR
    #: Options of the embedded emulator (``--emulator``), as EmulatorConfig fields.
    emulator: Mapping[str, Any] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        """The settings as JSON-able data, without the API key (for the ledger and reports)."""
        data: dict[str, Any] = _to_plain(self)
        data["api"].pop("api_key", None)
        if self.api.proxy:
            data["api"]["proxy"] = shown(self.api.proxy)  # its password stays out of the ledger
        return data


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def default_ledger(manifest: Path | None) -> Path:
    """Where a run of ``manifest`` keeps its ledger without ``--ledger``: ``runs/<its name>/
    ledger.jsonl``, relative to the folder batcher starts in."""
    return Path("runs") / (manifest.stem if manifest is not None else "batch") / "ledger.jsonl"


def with_paths(settings: Settings, manifests: list[Path]) -> Settings:
    """Fill in the ledger and output paths a user did not set, from the first manifest's name."""
    ledger = settings.ledger.path or default_ledger(manifests[0] if manifests else None)
    out = settings.output.out_dir or ledger.parent / "outputs"
    return dataclasses.replace(
        settings,
        ledger=dataclasses.replace(settings.ledger, path=ledger),
        output=dataclasses.replace(settings.output, out_dir=out),
    )
