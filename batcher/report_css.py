"""The report page's stylesheet (inlined into the page: the report must work offline)."""

CSS = """
:root {
  --bg: #f5f6f8; --panel: #fff; --ink: #0f172a; --muted: #64748b; --line: #e2e8f0;
  --accent: #4f46e5; --accent-soft: #eef2ff; --bad: #dc2626; --thumb: #f1f5f9;
  color-scheme: light dark;
}
@media (prefers-color-scheme: dark) {
  :root { --bg: #0b1020; --panel: #131a2e; --ink: #e2e8f0; --muted: #94a3b8; --line: #24304d;
          --accent: #818cf8; --accent-soft: #1e2445; --thumb: #0f172a; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
code { font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace; }
h1 { font-size: 24px; margin: 0 0 2px; letter-spacing: -0.01em; }
h2 { font-size: 16px; margin: 0 0 12px; }
h3 { font-size: 14px; margin: 20px 0 8px; }
.muted { color: var(--muted); }
header.top { padding: 28px 40px 8px; }
header.top code { word-break: break-all; }
main { padding: 8px 40px 24px; display: grid; gap: 18px; }
footer { padding: 0 40px 32px; font-size: 12px; }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 18px 20px;
  box-shadow: 0 1px 2px rgba(15, 23, 42, .04); min-width: 0; }
.two { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 18px; }
@media (max-width: 1000px) { .two { grid-template-columns: 1fr; } }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 14px; }
.tile { background: var(--panel); border: 1px solid var(--line); border-radius: 14px; padding: 14px 16px; }
.tile-label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .06em; }
.tile-value { font-size: 26px; font-weight: 650; margin: 2px 0; font-variant-numeric: tabular-nums; }
.tile-note { color: var(--muted); font-size: 12px; }
.statebar { display: flex; height: 14px; border-radius: 7px; overflow: hidden; background: var(--line); }
.statebar span { display: block; height: 100%; min-width: 2px; }
.legend { list-style: none; padding: 0; margin: 12px 0 0; display: flex; flex-wrap: wrap; gap: 6px 20px; }
.legend i { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 6px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; color: var(--muted); font-weight: 600; font-size: 12px;
  border-bottom: 1px solid var(--line); padding: 6px 8px; }
td { padding: 7px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
tr:last-child td { border-bottom: 0; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.msg { word-break: break-word; white-space: pre-wrap; max-width: 560px; }
td code { overflow-wrap: anywhere; }  /* a 128-character job id must not widen the page */
.chart { width: 100%; height: auto; display: block; }
.chart .bar { fill: var(--accent); }
.chart .bar:hover { fill: #f59e0b; }
.chart .grid { stroke: var(--line); stroke-width: 1; }
.chart .axis { fill: var(--muted); font-size: 11px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(380px, 1fr)); gap: 14px; }
.card { border: 1px solid var(--line); border-radius: 12px; padding: 10px 12px 12px;
  background: var(--panel); }
.card header { display: flex; justify-content: space-between; align-items: center; gap: 8px;
  margin-bottom: 8px; }
.card header code { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.pill { background: var(--accent-soft); color: var(--accent); border-radius: 999px; padding: 1px 9px;
  font-size: 12px; font-weight: 600; white-space: nowrap; }
.pair { display: grid; grid-template-columns: minmax(0, 1fr) 22px minmax(0, 1fr); align-items: start;
  gap: 4px; }
.arrow { text-align: center; color: var(--muted); font-size: 18px; align-self: center; }
.side { display: grid; gap: 6px; min-width: 0; }
.thumb { margin: 0; min-width: 0; }
.thumb a { color: inherit; text-decoration: none; }
.tile-key { font-size: 11px; color: var(--muted); margin-bottom: 2px; overflow: hidden;
  text-overflow: ellipsis; white-space: nowrap; }
.thumb img { display: block; width: 100%; height: 150px; object-fit: contain; background: var(--thumb);
  border-radius: 8px; }
.textbox strong { display: block; font-size: 13.5px; margin-bottom: 6px; }
img.mini { width: 64px; height: 48px; object-fit: cover; border-radius: 6px; display: block; }
td.small { width: 220px; }
.clamp { display: -webkit-box; -webkit-line-clamp: 3; -webkit-box-orient: vertical; overflow: hidden;
  font-size: 12px; word-break: break-word; }
.textbox { height: 150px; overflow: hidden; background: var(--thumb); border-radius: 8px; padding: 10px;
  font-size: 12.5px; white-space: pre-wrap; word-break: break-word; }
"""
