"""Interactive charts of the HTML report: plotly figures, drawn in the browser by the plotly.js
bundle the page inlines once (``plotly.offline.get_plotlyjs()``), so the file needs no network.

* ``table_points(table)``: a table's metric cells as records (task, method, metric, value, its
  interval and delta). They are the ``Cell`` objects every format renders, so a chart shows the
  numbers the tables print (``method_chart``: a point per method and task with its 95% interval,
  a menu over the table's metrics).
* ``lambda_charts``: each metric against lambda per EquiReg method (the best other hyperparameters
  per lambda, the selection the ``metric-vs-lambda`` figure makes), a panel per task, the base
  solver's selected value as a dashed line, the lambda influence in the hover text.
"""
from __future__ import annotations

from typing import Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from orchestrator.reporting import labels, selection
from orchestrator.reporting.model import ReportOptions, Table
from orchestrator.reporting.summary import prepare_results, summarize_prepared

__all__ = ["table_points", "method_chart", "lambda_charts", "chart_html"]

_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
_FONT = dict(family="system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, sans-serif", size=12)


def _column(table: Table, label: str) -> int | None:
    return next((j for j, c in enumerate(table.columns) if c.role == "text" and c.label == label), None)


def table_points(table: Table) -> list[dict]:
    """One record per filled metric cell: ``task`` (the row's Task cell, else the column group),
    ``method``, ``metric``, ``value``, ``lo`` / ``hi`` (the mean's interval), ``delta``, ``d_lo`` /
    ``d_hi``; rows without a Method cell are skipped."""
    task_j, method_j = _column(table, "Task"), _column(table, "Method")
    if method_j is None:
        return []
    out = []
    for row in table.rows:
        if row.header is not None:
            continue
        for j, col in enumerate(table.columns):
            cell = row.cells[j]
            if col.role != "metric" or cell.value is None:
                continue
            out.append({"task": row.cells[task_j].text if task_j is not None else col.group, "method": row.cells[method_j].text,
                        "metric": col.metric, "value": cell.value, "lo": cell.lo, "hi": cell.hi, "delta": cell.delta,
                        "d_lo": cell.d_lo, "d_hi": cell.d_hi})
    return out


def _axis_title(metric: str) -> str:
    spec = labels.METRICS[metric]
    unit = " (%)" if spec.percent else ""
    return f"{spec.label}{unit} ({'lower' if labels.lower_is_better(metric) else 'higher'} is better)"


def _scaled(value, metric: str):
    return None if value is None else float(value) * (100.0 if labels.METRICS[metric].percent else 1.0)


def _hover(p: dict) -> str:
    m = p["metric"]
    text = f"<b>{p['method']}</b><br>{p['task']}<br>{labels.METRICS[m].label} {labels.format_number(p['value'], m)}"
    if p["lo"] is not None and p["hi"] is not None:
        text += f" ({labels.format_number(p['lo'], m)}, {labels.format_number(p['hi'], m)})"
    if p["delta"] is not None:
        text += f"<br>Δ vs base {labels.format_number(p['delta'], m, signed=True)}"
        if p["d_lo"] is not None and p["d_hi"] is not None:
            text += f" ({labels.format_number(p['d_lo'], m, True)}, {labels.format_number(p['d_hi'], m, True)})"
    return text


def method_chart(table: Table, primary: str = "psnr") -> go.Figure | None:
    """A point per method and task with its 95% interval; a menu switches the metric (``primary``
    first). None when the table has no metric cells."""
    points = table_points(table)
    if not points:
        return None
    metrics = sorted(dict.fromkeys(p["metric"] for p in points), key=lambda m: m != primary)
    tasks = list(dict.fromkeys(p["task"] for p in points))
    methods = sorted(dict.fromkeys(p["method"] for p in points), key=lambda m: m == labels.NAIVE_LABEL)
    fig = go.Figure()
    visible: list[str] = []
    for metric in metrics:
        for i, task in enumerate(tasks):
            ps = [p for p in points if p["metric"] == metric and p["task"] == task]
            if not ps:
                continue
            ys = [_scaled(p["value"], metric) for p in ps]
            up = [(_scaled(p["hi"], metric) - y) if p["hi"] is not None else 0.0 for p, y in zip(ps, ys)]
            down = [(y - _scaled(p["lo"], metric)) if p["lo"] is not None else 0.0 for p, y in zip(ps, ys)]
            fig.add_trace(go.Scatter(x=[p["method"] for p in ps], y=ys, mode="markers", name=task, legendgroup=task,
                                     marker=dict(size=9, color=qualitative.Plotly[i % 10], line=dict(width=1, color="white")),
                                     error_y=dict(type="data", symmetric=False, array=up, arrayminus=down, thickness=1.2, width=3),
                                     hovertext=[_hover(p) for p in ps], hoverinfo="text", visible=metric == metrics[0]))
            visible.append(metric)
    buttons = [dict(label=labels.METRICS[m].label, method="update",
                    args=[{"visible": [v == m for v in visible]}, {"yaxis": {"title": {"text": _axis_title(m)}}}]) for m in metrics]
    fig.update_layout(title=dict(text=table.title, font=dict(size=14)), scattermode="group", height=380, font=_FONT,
                      margin=dict(l=60, r=20, t=70, b=90), yaxis_title=_axis_title(metrics[0]), legend_title_text="Task",
                      xaxis=dict(categoryorder="array", categoryarray=methods, tickangle=-30),
                      plot_bgcolor="#fbfcfe", updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.18)]
                      if len(metrics) > 1 else [])
    return fig


def _filtered(results: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    df = prepare_results(results)
    mask = ~df["task"].astype(str).str.startswith(labels.PDE_PREFIX)
    if options.tasks:
        mask &= df["task"].isin(list(options.tasks))
    if options.solvers:
        mask &= df["solver"].isin(list(options.solvers))
    if options.report_on:
        mask &= df["dataset"].isin(list(options.report_on))
    return df[mask]


def _influence(frame: pd.DataFrame) -> pd.Series:
    grad, obj = (frame.get(f"mean:{c}", pd.Series(float("nan"), index=frame.index)).astype(float) for c in labels.INFLUENCE_COLUMNS)
    return grad.where(grad.notna(), obj)


def lambda_charts(results: pd.DataFrame, sets: pd.DataFrame | None, metrics: Sequence[str], primary: str,
                  options: ReportOptions = ReportOptions()) -> list[go.Figure]:
    """A figure per (dataset, sigma_y, metric) with a panel per task; empty when no EquiReg rows
    carry a lambda."""
    summary = summarize_prepared(_filtered(results, options), sets)
    if summary.empty:
        return []
    reg = summary[(summary["regularizer"] != "none") & summary["lam"].notna()]
    if reg.empty:
        return []
    per_lam = selection.select(reg, "best", primary, ("dataset", "sigma_y", *selection.METHOD_KEYS, "lam"))
    per_lam = per_lam.assign(_infl=_influence(per_lam))
    base = selection.select(summary[summary["regularizer"] == "none"], "best", primary)
    solvers = sorted(set(summary["solver"]), key=lambda s: labels.method_sort_key(s, "none", 0))
    colors = {s: qualitative.Plotly[i % 10] for i, s in enumerate(solvers)}
    dash = {"equi": "solid", "equicon": "dot"}
    figs = []
    for (dataset, sigma_y), part in per_lam.groupby(["dataset", "sigma_y"], sort=True, dropna=False):
        tasks = sorted(set(part["task"]), key=labels.task_sort_key)
        for metric in metrics:
            col = f"mean:{metric}"
            if col not in part or part[col].isna().all():
                continue
            fig = make_subplots(rows=1, cols=len(tasks), subplot_titles=[labels.task_label(t) for t in tasks], horizontal_spacing=0.06)
            shown: set[str] = set()
            drawn: set[tuple] = set()
            for i, task in enumerate(tasks, start=1):
                lines = part[part["task"] == task]
                for (solver, regularizer, steps), line in sorted(lines.groupby(["solver", "regularizer", "num_steps"], sort=False),
                                                                 key=lambda kv: labels.method_sort_key(*kv[0])):
                    line = line.sort_values("lam")
                    name = labels.method_label(solver, regularizer)
                    hover = [f"<b>{name}</b> λ={labels.format_setting(lam)}<br>{labels.METRICS[metric].label} {labels.format_number(v, metric)}"
                             f" (n={int(n)})<br>influence {labels.format_ratio(infl)}"
                             for lam, v, n, infl in zip(line["lam"], line[col], line["n_ok"], line["_infl"])]
                    fig.add_trace(go.Scatter(x=line["lam"], y=[_scaled(v, metric) for v in line[col]], mode="lines+markers", name=name,
                                             legendgroup=name, showlegend=name not in shown, hovertext=hover, hoverinfo="text",
                                             line=dict(color=colors[solver], dash=dash.get(regularizer, "dashdot"))), row=1, col=i)
                    shown.add(name)
                    ref = base[(base["dataset"] == dataset) & (base["sigma_y"] == sigma_y) & (base["task"] == task)
                               & (base["solver"] == solver) & (base["num_steps"] == steps)]
                    if len(ref) and pd.notna(ref[col].iloc[0]) and (task, solver, steps) not in drawn:
                        drawn.add((task, solver, steps))
                        bname = labels.method_label(solver, "none")
                        y = _scaled(ref[col].iloc[0], metric)
                        fig.add_trace(go.Scatter(x=[line["lam"].min(), line["lam"].max()], y=[y, y], mode="lines", name=bname,
                                                 legendgroup=bname, showlegend=bname not in shown, hoverinfo="text",
                                                 hovertext=f"<b>{bname}</b> (no EquiReg) {labels.format_number(ref[col].iloc[0], metric)}",
                                                 line=dict(color=colors[solver], dash="dash", width=1)), row=1, col=i)
                        shown.add(bname)
                lams = lines["lam"].astype(float)
                if (lams > 0).all() and lams.max() / lams.min() >= 10:
                    fig.update_xaxes(type="log", row=1, col=i)
                fig.update_xaxes(title_text="λ", row=1, col=i)
            fig.update_yaxes(title_text=_axis_title(metric), row=1, col=1)
            fig.update_layout(title=dict(text=f"{labels.METRICS[metric].label} against λ: dataset {dataset}, σ_y = {labels.format_setting(sigma_y)}",
                                         font=dict(size=14)), height=400, font=_FONT, margin=dict(l=60, r=20, t=80, b=50), plot_bgcolor="#fbfcfe")
            figs.append(fig)
    return figs


def chart_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a ``<div>`` and the script that draws it (the bundle is inlined once by the page)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config=_CONFIG)
