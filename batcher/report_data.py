"""What the report page shows: built by :mod:`batcher.report` from a ledger, drawn by
:mod:`batcher.report_html`.

Every string in it is untrusted (a provider's error message, a manifest's text, a job id) and
reaches the page only through :func:`esc`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

from .status import StatusReport


def esc(value: object) -> str:
    """Text for HTML content or a quoted attribute."""
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Tile:
    """One input or output in the gallery: a thumbnail, or text, with an optional link."""

    label: str
    image: str | None = None  # a data: URI made by us
    title: str | None = None  # shown bold above the text (a blog post's title)
    text: str | None = None
    href: str | None = None  # an http(s) URL or a relative file path, already URL-quoted
    note: str | None = None


@dataclass(frozen=True)
class Card:
    """One completed job: its inputs and what came out."""

    job_id: str
    workflow: str | None
    finished: str | None
    inputs: tuple[Tile, ...]
    outputs: tuple[Tile, ...]
    more_inputs: int = 0  # not shown: the card shows the first few
    more_outputs: int = 0


@dataclass(frozen=True)
class FailedJob:
    job_id: str
    workflow: str | None
    status: str
    error: str
    retryable: bool
    input: Tile | None


@dataclass(frozen=True)
class Page:
    title: str
    generated: str
    status: StatusReport
    cards: tuple[Card, ...]
    completed_total: int
    failed: tuple[FailedJob, ...]
    durations: Sequence[float]
