"""The report's HTML: one self-contained page (inline CSS and SVG, images as data: URIs, no script).

Everything that comes from a ledger is untrusted (a provider's error message, a manifest's text,
a job id) and goes through :func:`~batcher.report_data.esc` before it reaches the page. The page
also carries a Content-Security-Policy that allows no script and no network at all, so an
escaping mistake could not run anything or phone home either. The duration chart is drawn in
:mod:`batcher.report_chart`.
"""

from __future__ import annotations

from .report_chart import duration_svg
from .report_css import CSS
from .report_data import Page, Tile, esc
from .status import UNKNOWN_WORKFLOW, StatusReport
from .status_text import human_duration, money, plural, price, utc_time

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"

STATE_COLOURS = {
    "completed": "#16a34a",
    "failed": "#dc2626",
    "expired": "#ea580c",
    "download_failed": "#d97706",
    "generated": "#0891b2",
    "submitted": "#2563eb",
    "polled": "#3b82f6",
    "submitting": "#7c3aed",
    "submit_unknown": "#a855f7",
    "deferred": "#64748b",
}


# --- sections ----------------------------------------------------------------------------


def _tiles(report: StatusReport) -> str:
    done = report.by_state.get("completed", 0)
    share = f"{100 * done / report.jobs:.1f}% of jobs" if report.jobs else "no jobs yet"
    spend_note = plural(report.submissions, "billed submission")
    if report.unpriced_submissions:
        spend_note += f", {report.unpriced_submissions:,} at an unknown price"
    tiles = [
        ("Jobs", f"{report.jobs:,}", plural(report.lines, "ledger line")),
        ("Completed", f"{done:,}", share),
        ("Failed", f"{report.failed_jobs:,}", plural(report.failure_reasons, "distinct reason")),
        ("Spend", money(report.spend_usd), spend_note),
        ("Active time", human_duration(report.active_seconds), plural(len(report.runs), "run")),
        ("Next run", f"{report.next_run_total:,}", "known jobs left to run"),
    ]
    cells = "".join(
        f'<div class="tile"><div class="tile-label">{esc(a)}</div><div class="tile-value">{esc(b)}</div>'
        f'<div class="tile-note">{esc(c)}</div></div>'
        for a, b, c in tiles
    )
    return f'<section class="tiles">{cells}</section>'


def _state_bar(report: StatusReport) -> str:
    if not report.jobs:
        return ""
    segs, legend = [], []
    for state, n in report.by_state.items():
        colour = STATE_COLOURS.get(state, "#94a3b8")
        pct = 100 * n / report.jobs
        segs.append(f'<span style="width:{pct:.3f}%;background:{colour}" title="{esc(state)}: {n:,}"></span>')
        legend.append(
            f'<li><i style="background:{colour}"></i>{esc(state)} <b>{n:,}</b> '
            f'<span class="muted">{pct:.1f}%</span></li>'
        )
    return f'<div class="statebar">{"".join(segs)}</div><ul class="legend">{"".join(legend)}</ul>'


def _spend_table(report: StatusReport) -> str:
    if not report.spend:
        return '<p class="muted">Nothing was submitted.</p>'
    rows = "".join(
        f"<tr><td>{esc(s.workflow or UNKNOWN_WORKFLOW)}</td><td class='num'>{s.submissions:,}</td>"
        f"<td class='num'>{esc(price(s.price_usd))}</td>"
        f"<td class='num'>{esc(money(s.usd)) if s.usd is not None else 'unknown'}</td></tr>"
        for s in report.spend
    )
    note = ""
    if report.unknown_outcomes:
        note = (
            f'<p class="muted">{plural(report.unknown_outcomes, "POST")} had an unknown outcome: the '
            f"provider may have billed {'it' if report.unknown_outcomes == 1 else 'them'} without giving "
            "a request id.</p>"
        )
    return (
        '<table><thead><tr><th>Workflow</th><th class="num">Billed submissions</th><th class="num">Price</th>'
        f'<th class="num">Spend</th></tr></thead><tbody>{rows}</tbody></table>{note}'
    )


def _tile_html(tile: Tile) -> str:
    label = f'<div class="tile-key">{esc(tile.label)}</div>'
    if tile.image:
        body = f'<img src="{esc(tile.image)}" alt="{esc(tile.label)}" loading="lazy">'
    elif tile.text is not None or tile.title is not None:
        title = f"<strong>{esc(tile.title)}</strong>" if tile.title else ""
        body = f'<div class="textbox">{title}{esc(tile.text or "")}</div>'
    else:
        body = '<div class="textbox muted">(nothing to show)</div>'
    if tile.href:
        body = f'<a href="{esc(tile.href)}" rel="noreferrer noopener">{body}</a>'
    note = f'<div class="tile-note">{esc(tile.note)}</div>' if tile.note else ""
    return f'<figure class="thumb">{label}{body}{note}</figure>'


def _small_tile(tile: Tile | None) -> str:
    if tile is None:
        return ""
    if tile.image:
        return f'<img class="mini" src="{esc(tile.image)}" alt="{esc(tile.label)}">'
    text = " ".join(part for part in (tile.title, tile.text) if part)
    return f'<span class="clamp">{esc(text)}</span>'


def _more(n: int, what: str) -> str:
    return f'<div class="tile-note">and {plural(n, f"more {what}")}, not shown</div>' if n > 0 else ""


def _gallery(page: Page) -> str:
    if not page.cards:
        return '<p class="muted">No job has completed yet.</p>'
    cards = []
    for card in page.cards:
        inputs = (
            "".join(_tile_html(t) for t in card.inputs)
            or '<div class="textbox muted">(no inputs recorded)</div>'
        ) + _more(card.more_inputs, "input")
        outputs = (
            "".join(_tile_html(t) for t in card.outputs) or '<div class="textbox muted">(no outputs)</div>'
        ) + _more(card.more_outputs, "output")
        cards.append(
            f'<article class="card"><header><code title="{esc(card.job_id)}">{esc(card.job_id)}</code>'
            f'<span class="pill">{esc(card.workflow or "?")}</span></header>'
            f'<div class="pair"><div class="side">{inputs}</div><div class="arrow">→</div>'
            f'<div class="side">{outputs}</div></div></article>'
        )
    note = ""
    if page.completed_total > len(page.cards):
        note = (
            f'<p class="muted">Showing the {len(page.cards):,} latest of {page.completed_total:,} '
            "completed jobs, newest first. <code>batcher report --gallery N</code> shows the latest N "
            "(every one adds its thumbnails to the page); all of them are in the output folder.</p>"
        )
    return f'{note}<div class="gallery">{"".join(cards)}</div>'


def _failures(page: Page) -> str:
    report = page.status
    if not report.failed_jobs:
        return '<p class="muted">No failures.</p>'
    rows = "".join(
        f"<tr><td class='num'>{g.count:,}</td><td>{esc('/'.join(g.statuses))}</td>"
        f"<td class='msg'>{esc(g.message)}</td><td class='num'>{g.retryable:,}</td>"
        f"<td><code>{esc(', '.join(g.examples))}</code></td></tr>"
        for g in report.failures
    )
    out = [
        '<table><thead><tr><th class="num">Jobs</th><th>Status</th><th>Reason</th>'
        f'<th class="num">Retried next run</th><th>Examples</th></tr></thead><tbody>{rows}</tbody></table>'
    ]
    unshown, unshown_jobs = report.failures_unshown
    if unshown > 0:
        out.append(
            f'<p class="muted">The {len(report.failures):,} commonest of {report.failure_reasons:,} reasons; '
            f"{plural(unshown, 'more reason')} ({plural(unshown_jobs, 'job')}) not shown.</p>"
        )
    if page.failed:
        jobs = "".join(
            f"<tr><td><code>{esc(f.job_id)}</code></td><td>{esc(f.workflow or '?')}</td>"
            f"<td>{esc(f.status)}</td>"
            f"<td class='msg'>{esc(f.error)}</td><td class='small'>{_small_tile(f.input)}</td></tr>"
            for f in page.failed
        )
        more = report.failed_jobs - len(page.failed)
        which = f" (latest {len(page.failed):,}, newest first; {more:,} more)" if more > 0 else ""
        out.append(
            f"<h3>Failed jobs{which}</h3>"
            "<table><thead><tr><th>Job</th><th>Workflow</th><th>Status</th><th>Error</th><th>Input</th></tr>"
            f"</thead><tbody>{jobs}</tbody></table>"
        )
    return "".join(out)


def _invalid(report: StatusReport) -> str:
    if not report.invalid_total:
        return ""
    rows = "".join(
        f"<tr><td><code>{esc(r.source or '?')}:{esc(r.line if r.line is not None else '?')}</code></td>"
        f"<td>{esc(r.field or '')}</td><td class='msg'>{esc(r.error or '')}</td>"
        f"<td class='msg'>{esc(r.fix or '')}</td></tr>"
        for r in report.invalid_rows
    )
    return (
        f'<section class="panel"><h2>Invalid manifest rows (last run: {report.invalid_total:,})</h2>'
        "<table><thead><tr><th>Where</th><th>Field</th><th>Problem</th><th>Fix</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _in_flight(report: StatusReport) -> str:
    if not report.in_flight_total:
        return ""
    rows = "".join(
        f"<tr><td><code>{esc(f.job_id)}</code></td><td>{esc(f.workflow or '?')}</td><td>{esc(f.status)}</td>"
        f"<td>{esc(utc_time(f.submitted_ts).removesuffix(' UTC'))}</td>"
        f"<td class='num'>{esc(human_duration(f.age_seconds))}</td></tr>"
        for f in report.in_flight
    )
    shown = (
        f" (oldest {len(report.in_flight)} of {report.in_flight_total:,})"
        if report.in_flight_total > len(report.in_flight)
        else ""
    )
    return (
        f'<section class="panel"><h2>Still in flight{shown}</h2><p class="muted">Submitted and not finished: '
        "the next run polls them again and never pays for them twice.</p><table><thead><tr><th>Job</th>"
        "<th>Workflow</th><th>Status</th><th>Submitted (UTC)</th><th class='num'>Age</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _runs(report: StatusReport) -> str:
    recent = report.runs[-20:]
    rows = "".join(
        f"<tr><td>{esc(utc_time(r.started).removesuffix(' UTC'))}</td>"
        f"<td class='num'>{esc(human_duration(r.seconds))}</td><td class='num'>{r.submissions:,}</td>"
        f"<td class='num'>{r.lines:,}</td></tr>"
        for r in reversed(recent)
    )
    more = f" (latest 20 of {len(report.runs):,})" if len(report.runs) > 20 else ""
    return (
        f"<h3>Runs{more}</h3><table><thead><tr><th>Started (UTC)</th><th class='num'>Duration</th>"
        f"<th class='num'>Submissions</th><th class='num'>Ledger lines</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def render_page(page: Page) -> str:
    """The whole report page."""
    report = page.status
    span = ""
    if report.first_ts and report.last_ts:
        first, last = (utc_time(ts, seconds=False) for ts in (report.first_ts, report.last_ts))
        span = f"{esc(first)} → {esc(last)} · "
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(page.title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><div><h1>{esc(page.title)}</h1>'
        f'<p class="muted">{span}ledger <code>{esc(report.ledger)}</code> · '
        f"generated {esc(page.generated)}</p>"
        "</div></header><main>"
        f"{_tiles(report)}"
        f'<section class="panel"><h2>Jobs by state</h2>{_state_bar(report)}</section>'
        '<div class="two">'
        f'<section class="panel"><h2>Spend at list prices</h2>{_spend_table(report)}{_runs(report)}</section>'
        f'<section class="panel"><h2>Job durations</h2><p class="muted">Seconds from submission to the '
        f"provider reporting the outputs ready.</p>{duration_svg(page.durations)}</section></div>"
        f'<section class="panel" id="gallery"><h2>Gallery: input → output</h2>{_gallery(page)}</section>'
        f'<section class="panel" id="failures"><h2>Failures</h2>{_failures(page)}</section>'
        f"{_in_flight(report)}{_invalid(report)}"
        '</main><footer class="muted">Made by <code>batcher report</code> from the ledger alone; '
        "no network was used.</footer>"
        "</body></html>\n"
    )
