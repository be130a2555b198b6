"""The one-file interactive report: ``equibench report --format html`` writes ``<out>/report.html``.

One self-contained page (inline CSS, script, plotly.js bundle and base64 PNGs: nothing fetched, it
opens offline): an index over the store's runs and every layout; every layout's tables, rendered by
``formats.html_table`` from the same ``Table`` objects as the Markdown, LaTeX and CSV reports (the
same texts, plus ``data-v`` raw numbers to sort on), sortable and filterable by task, solver and
metric in the browser (``html_assets``); interactive charts (``html_charts``: each method's mean
and interval from those tables, metric against lambda); and the matplotlib figures of
``orchestrator.figures`` (lambda curves, noise curves, qualitative grids, per-image improvement)
embedded as data URIs. The page is deterministic: no clock, sorted inputs, fixed element ids.
"""
from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import pandas as pd
import plotly.offline

from orchestrator import figures, store
from orchestrator.reporting import html_charts, labels
from orchestrator.reporting.build import build_tables
from orchestrator.reporting.entry import emit_warnings
from orchestrator.reporting.formats import html_table
from orchestrator.reporting.html_assets import SCRIPT, STYLE
from orchestrator.reporting.layouts import LAYOUTS
from orchestrator.reporting.model import ReportOptions, Row, Table

__all__ = ["HTML_NAME", "render_html_report", "write_html_report"]

HTML_NAME = "report.html"
esc = html.escape

#: Figure groups in page order: (stem prefix, heading).
FIGURE_GROUPS = (("metric_vs_lambda", "Lambda curves"), ("qualitative", "Qualitative grids"),
                 ("metric_vs_sigma", "Metric against noise"), ("improvement", "Per-image improvement"))


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in str(text).lower()).strip("-")


def _solver_of(results: pd.DataFrame) -> Callable[[str], str]:
    """Method label (``Equi-DPS‡ (20 steps)``) -> solver label (``DPS``), by the longest method
    label of the store's (solver, regularizer) pairs that starts it."""
    pairs = results[["solver", "regularizer"]].fillna("none").drop_duplicates().itertuples(index=False, name=None)
    known = sorted(((labels.method_label(s, r), labels.solver_label(s)) for s, r in pairs), key=lambda kv: -len(kv[0]))
    known.append((labels.NAIVE_LABEL, labels.NAIVE_LABEL))

    def solver(method: str) -> str:
        return next((name for label, name in known if method.startswith(label)), "")
    return solver


def _row_attrs(table: Table, solver_of: Callable[[str], str]) -> Callable[[Row], dict]:
    cols = [c.label if c.role == "text" else None for c in table.columns]
    task_j = cols.index("Task") if "Task" in cols else None
    method_j = cols.index("Method") if "Method" in cols else None

    def attrs(row: Row) -> dict:
        out = {}
        if task_j is not None:
            out["data-task"] = row.cells[task_j].text
        if method_j is not None:
            out["data-method"] = row.cells[method_j].text
            out["data-solver"] = solver_of(row.cells[method_j].text)
        return out
    return attrs


def _filter_values(built: dict[str, list[Table]], solver_of) -> tuple[list[str], list[str], list[str]]:
    """(tasks, solvers, metrics) the filters offer, in table order."""
    tasks, solvers, metrics = {}, {}, {}
    for tables in built.values():
        for table in tables:
            attrs = _row_attrs(table, solver_of)
            for col in table.columns:
                if col.group:
                    tasks[col.group] = None
                if col.metric and col.role == "metric":
                    metrics[col.metric] = None
            for row in table.rows:
                if row.header is None:
                    a = attrs(row)
                    if a.get("data-task"):
                        tasks[a["data-task"]] = None
                    if a.get("data-solver"):
                        solvers[a["data-solver"]] = None
    return list(tasks), list(solvers), list(metrics)


def _select(name: str, label: str, values: Sequence[str], names: Callable[[str], str] = str) -> str:
    options = ['<option value="">all</option>'] + [f'<option value="{esc(v)}">{esc(names(v))}</option>' for v in values]
    return f'<label>{label}<select id="eb-f-{name}">{"".join(options)}</select></label>'


def runs_table(results: pd.DataFrame, store_dir) -> list[str]:
    """A row per run: kind, rows stored by status against the rows planned (the run record),
    datasets, tasks, solvers, configs, first and last start, code versions."""
    head = ["Run", "Kind", "Rows", "ok", "diverged", "failed", "planned", "Datasets", "Tasks", "Solvers", "Configs", "Started", "Last row", "Code"]
    out = ['<table class="eb-runs"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>"]
    for run_id, part in results.groupby(results["run_id"].astype(str), sort=True):
        status = part["status"].fillna("failed")
        record = store.read_run(store_dir, run_id) if store_dir is not None else None
        started = pd.to_datetime(part["started_at"], utc=True, errors="coerce").dropna() if "started_at" in part else pd.Series([], dtype="datetime64[ns, UTC]")

        def listed(col, fmt=str):
            vals = sorted({fmt(v) for v in part[col].dropna()}) if col in part else []
            return ", ".join(vals) if vals else "-"
        cells = [run_id, listed("run_kind"), len(part), int((status == "ok").sum()), int((status == "diverged").sum()),
                 int((~status.isin(["ok", "diverged"])).sum()), (record or {}).get("n_rows", "-"), listed("dataset"),
                 listed("task", labels.task_label), listed("solver", labels.solver_label), part["config_id"].nunique(),
                 started.min().strftime("%Y-%m-%d %H:%M") if len(started) else "-",
                 started.max().strftime("%Y-%m-%d %H:%M") if len(started) else "-", listed("code_version")]
        out.append("<tr>" + "".join(f'<td class="num">{c}</td>' if isinstance(c, int) else f"<td>{esc(str(c))}</td>" for c in cells) + "</tr>")
    return out + ["</tbody></table>"]


def _figure_html(paths: Iterable[Path]) -> list[tuple[str, str, list[str]]]:
    """(heading, anchor, ``<figure>`` lines) per figure group, PNGs as data URIs."""
    pngs = sorted(p for p in paths if p.suffix == ".png")
    groups = []
    for prefix, heading in FIGURE_GROUPS:
        members = [p for p in pngs if p.stem.startswith(prefix)]
        if members:
            figs = [f'<figure><img alt="{esc(p.stem)}" src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
                    f"<figcaption>{esc(p.stem)}</figcaption></figure>" for p in members]
            groups.append((heading, f"fig-{_slug(prefix)}", ['<div class="figs">'] + figs + ["</div>"]))
    return groups


def render_html_report(results: pd.DataFrame, sets: pd.DataFrame | None, store_dir, layouts: Sequence[str] | None = None,
                       options: ReportOptions = ReportOptions(), figure_names: Sequence[str] | None = None,
                       figure_metrics: Sequence[str] = ("psnr",), sample_ids: Sequence[int] | None = None,
                       figure_paths: Sequence[Path] | None = None, title: str = "EquiBench report") -> str:
    """The page as text (see the module docstring). ``layouts`` default to all of them; the
    figures embedded are ``figure_paths``' PNGs when given (already drawn), else ``figure_names``
    (default every figure, ``()`` none) drawn into a temporary folder."""
    layouts = list(layouts or LAYOUTS)
    built = {layout: build_tables(results, sets, layout, options) for layout in layouts}
    if not any(built.values()):
        raise ValueError(f"no rows for layouts {layouts} after filters")
    emit_warnings(t for tables in built.values() for t in tables)
    solver_of = _solver_of(results)
    tasks, solvers, metrics = _filter_values(built, solver_of)
    primary = options.select_by or "psnr"
    chart_layout = next((k for k in ("tasks-by-method", *layouts) if built.get(k)), None)
    charts = {i: f for i, t in enumerate(built.get(chart_layout, [])) if (f := html_charts.method_chart(t, primary)) is not None}
    lam_charts = html_charts.lambda_charts(results, sets, figure_metrics, primary, options)
    fig_groups = _figure_html(figure_paths) if figure_paths is not None else []
    if figure_paths is None and figure_names != ():
        with tempfile.TemporaryDirectory(prefix="eb-html-figures-") as tmp:
            paths = figures.write_figures(results, store_dir, tmp, names=figure_names or None, metrics=figure_metrics,
                                          primary=primary, sample_ids=sample_ids)
            fig_groups = _figure_html(paths)
    runs = sorted(set(results["run_id"].dropna().astype(str)))
    n_ok = int((results["status"] == "ok").sum())

    nav = [f"<h1>{esc(title)}</h1>", f'<div class="sub">{esc(str(store_dir))}</div>', "<h4>Store</h4>", '<a href="#runs">Runs</a>']
    nav += [f'<a class="l2" href="#runs">{esc(r)}</a>' for r in runs]
    nav.append("<h4>Tables</h4>")
    for layout in layouts:
        if built[layout]:
            nav.append(f'<a href="#layout-{layout}">{esc(layout)}</a>')
            nav += [f'<a class="l2" href="#{layout}-{i}">{esc(t.title)}</a>' for i, t in enumerate(built[layout])]
        else:
            nav.append(f'<div class="empty">{esc(layout)}: no rows</div>')
    nav += ["<h4>Charts</h4>"] + [f'<a href="#{chart_layout}-{i}">Methods: {esc(built[chart_layout][i].title)}</a>' for i in charts]
    nav += ['<a href="#lambda-charts">Metric against λ</a>'] if lam_charts else []
    if fig_groups:
        nav += ["<h4>Figures</h4>"] + [f'<a href="#{a}">{esc(h)}</a>' for h, a, _ in fig_groups]

    body = ['<div id="eb-filters">', _select("task", "Task", tasks), _select("solver", "Solver", solvers),
            _select("metric", "Metric", metrics, lambda m: labels.METRICS[m].label),
            '<button id="eb-f-reset" type="button">Reset</button><span class="count" id="eb-count"></span>',
            '<span class="count">click a column header to sort (best first, then reversed, then as printed)</span></div>']
    body += ['<h2 id="runs">Runs<small>' + f"{len(runs)} run(s), {len(results)} rows, {n_ok} ok" + "</small></h2>", '<div class="card">']
    body += runs_table(results, store_dir) + ["</div>"]
    for layout in layouts:
        if not built[layout]:
            continue
        body += [f'<div class="eb-layout" id="layout-{layout}"><h2>{esc(layout)}<small>{esc(LAYOUTS[layout].description)}</small></h2>',
                 '<p class="hidden-note f-hide">Every table of this layout is hidden by the filters.</p>']
        for i, table in enumerate(built[layout]):
            lines = html_table(table, _row_attrs(table, solver_of))
            notes = [k for k, line in enumerate(lines) if line == "<ul>"]
            if notes:
                lines[notes[-1]] = '<ul class="notes">'
            chart = charts.get(i) if layout == chart_layout else None
            chart_lines = [f'<div class="eb-chart">{html_charts.chart_html(chart, f"eb-chart-{i}")}</div>'] if chart is not None else []
            body += [f'<section class="eb-sec card" id="{layout}-{i}">'] + lines + chart_lines + ["</section>"]
        body.append("</div>")
    if lam_charts:
        body += ['<h2 id="lambda-charts">Metric against λ<small>per EquiReg method, the best other settings per λ; '
                 "dashed: the solver without EquiReg; hover for the influence ratio</small></h2>"]
        body += [f'<div class="card">{html_charts.chart_html(f, f"eb-lambda-{i}")}</div>' for i, f in enumerate(lam_charts)]
    for heading, anchor, lines in fig_groups:
        body += [f'<h2 id="{anchor}">{esc(heading)}</h2>'] + lines

    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{plotly.offline.get_plotlyjs()}</script>', "</head><body>",
        '<nav id="eb-nav">', *nav, "</nav>", "<main>", *body, "</main>", f"<script>{SCRIPT}</script>", "</body></html>",
    ]) + "\n"


def write_html_report(results: pd.DataFrame, sets: pd.DataFrame | None, store_dir, out_dir, layouts: Sequence[str] | None = None,
                      options: ReportOptions = ReportOptions(), **kwargs) -> Path:
    """Write ``<out_dir>/report.html`` (``render_html_report``'s arguments); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / HTML_NAME
    path.write_text(render_html_report(results, sets, store_dir, layouts, options, **kwargs), encoding="utf-8")
    return path
