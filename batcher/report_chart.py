"""The report's chart of job durations: bins of a nice width (pure arithmetic), drawn as an
inline SVG histogram."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .report_data import esc
from .status_text import human_duration, plural


@dataclass(frozen=True)
class Histogram:
    width: float  # seconds per bin
    counts: tuple[int, ...]
    overflow: bool  # the last bin also holds everything beyond it


def _nice(step: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is ≥ ``step``."""
    exp = 10 ** math.floor(math.log10(step))
    return float(next(m * exp for m in (1, 2, 5, 10) if m * exp >= step))


def histogram(values: Sequence[float], max_bins: int = 24) -> Histogram | None:
    """Bins of a nice width from 0 to the 99th percentile; longer outliers share the last bin.

    About 2·√n bins (at least 6, at most ``max_bins``): enough to show a shape, few enough that a
    small run's bars are not mostly gaps.
    """
    if not values:
        return None
    ordered = sorted(values)
    top = ordered[max(0, math.ceil(len(ordered) * 0.99) - 1)]
    target = max(6, min(max_bins, round(2 * math.sqrt(len(ordered)))))
    width = _nice(max(top, 1e-3) / target)
    bins = max(1, min(max_bins, math.floor(top / width) + 1))
    counts = [0] * bins
    for v in ordered:
        counts[min(bins - 1, int(v // width))] += 1
    return Histogram(width, tuple(counts), overflow=ordered[-1] >= bins * width)


def _seconds_label(s: float) -> str:
    return f"{s:g}s" if s < 120 else human_duration(s)


def duration_svg(values: Sequence[float]) -> str:
    """An inline SVG histogram of job durations (submitted → generated), or a note if none."""
    hist = histogram(values)
    if hist is None:
        return '<p class="muted">No job has been generated yet.</p>'
    w, h, left, bottom, top = 760, 240, 48, 34, 12
    plot_w, plot_h = w - left - 12, h - bottom - top
    tick = max(1, round(_nice(max(hist.counts) / 4)))
    peak = tick * math.ceil(max(hist.counts) / tick)
    n = len(hist.counts)
    bar = plot_w / n
    parts = [
        f'<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-label="Histogram of job durations">',
    ]
    for value in range(0, peak + 1, tick):
        y = top + plot_h * (1 - value / peak)
        parts.append(f'<line class="grid" x1="{left}" x2="{w - 12}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="axis" x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{value:,}</text>')
    for i, count in enumerate(hist.counts):
        lo = i * hist.width
        bar_h = plot_h * count / peak
        x, y = left + i * bar + 1, top + plot_h - bar_h
        last = hist.overflow and i == n - 1
        span = (
            f"≥ {_seconds_label(lo)}" if last else f"{_seconds_label(lo)}–{_seconds_label(lo + hist.width)}"
        )
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
            f'height="{bar_h:.1f}" rx="2">'
            f"<title>{esc(span)}: {plural(count, 'job')}</title></rect>"
        )
    step = max(1, math.ceil(n / 8))
    for i in range(0, n + 1, step):
        x = left + i * bar
        label = _seconds_label(i * hist.width) + ("+" if hist.overflow and i == n else "")
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{h - bottom + 18}" text-anchor="middle">{esc(label)}</text>'
        )
    parts.append("</svg>")
    ordered = sorted(values)
    median, p90 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    parts.append(
        f'<p class="muted">{len(values):,} generations · median {esc(_seconds_label(round(median, 1)))} · '
        f"90% within {esc(_seconds_label(round(p90, 1)))} · longest {esc(human_duration(ordered[-1]))}</p>"
    )
    return "".join(parts)
