"""Paper-style figures from the results store (matplotlib, Agg canvas, PNG and PDF).

* ``metric-vs-sigma``: a metric against the measurement noise sigma_y, one line per method, a panel
  per task (the paper's Figure 5).
* ``metric-vs-lambda``: a metric against the EquiReg weight lambda, one curve per task/solver and
  regularizer, the base solver as a dashed horizontal line; on a second (right, log) axis each
  method's mean lambda influence ``||grad(lambda R)|| / ||grad(data)||`` with the inert (< 1e-3)
  and dominant (> 10) bands shaded.
* ``qualitative``: ground truth, naive inverse (the measurement's stand-in), baseline and EquiReg
  reconstructions for chosen sample ids, from the images saved in the store.
* ``improvement-histogram``: per-image improvement of each EquiReg method over its base solver
  (the paper's Figure 13), rows paired on (dataset, task, sigma_y, steps, sample_id, seed), with the
  mean's 95% cluster-bootstrap interval in each panel's title.

Every figure uses the same selection as the tables (``selection.select``, rule ``best``): for each
method, the config with the best mean primary metric, so a figure and a table of the same store
show the same configs. Figures are drawn on ``matplotlib.figure.Figure`` with an Agg canvas, never
through pyplot, so no global backend or figure state is touched.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from orchestrator import image_grid, stats
from orchestrator.reporting import labels, selection
from orchestrator.reporting import summary as summaries

__all__ = ["FIGURES", "FigureContext", "write_figures", "save_figure"]

REG_STYLE = {"none": ("--", "o"), "equi": ("-", "s"), "equicon": (":", "^")}


@dataclass
class FigureContext:
    """What every figure reads: the rows, their per-config summary, and where images live."""

    results: pd.DataFrame
    summary: pd.DataFrame
    store_dir: Path | None
    metrics: tuple[str, ...] = ("psnr",)
    primary: str = "psnr"
    sample_ids: tuple[int, ...] | None = None
    n_samples: int = 4


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (no creation date in the PDF)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    fig.savefig(png, dpi=100)
    fig.savefig(pdf, metadata={"CreationDate": None})
    return [png, pdf]


def _panels(n: int, ncols: int, width: float = 3.4, height: float = 2.8, nrows: int | None = None):
    ncols = max(1, min(ncols, n))
    nrows = nrows or max(1, -(-n // ncols))
    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _empty(message: str) -> Figure:
    fig = Figure(figsize=(4, 2))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def _solver_colors(solvers: Iterable[str]) -> dict[str, str]:
    ordered = sorted(set(solvers), key=lambda s: labels.method_sort_key(s, "none", 0))
    return {s: f"C{i % 10}" for i, s in enumerate(ordered)}


def _image_tasks(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[~summary["task"].astype(str).str.startswith(labels.PDE_PREFIX)] if not summary.empty else summary


def _ylabel(metric: str) -> str:
    arrow = "lower is better" if labels.lower_is_better(metric) else "higher is better"
    return f"{labels.METRICS[metric].label} ({arrow})"


def _method_lines(selected: pd.DataFrame):
    """(solver, regularizer, steps) groups of ``selected`` in paper order."""
    groups = selected.groupby(["solver", "regularizer", "num_steps"], dropna=False, sort=False)
    return sorted(groups, key=lambda kv: labels.method_sort_key(*kv[0]))


def _panel_keys(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple]:
    uniq = df[list(keys)].drop_duplicates().itertuples(index=False, name=None)
    return sorted(uniq, key=lambda k: tuple((labels.task_sort_key(v) if c == "task" else (str(v),)) for c, v in zip(keys, k)))


def _panel_title(keys: Sequence[str], values: Sequence, varying: set[str]) -> str:
    parts = []
    for k, v in zip(keys, values):
        if k == "task":
            parts.insert(0, labels.task_label(v))
        elif k in varying:
            parts.append(f"{'σ_y' if k == 'sigma_y' else k}={labels.format_setting(v)}")
    return ", ".join(parts)


def _varying(df: pd.DataFrame, keys: Sequence[str]) -> set[str]:
    return {k for k in keys if df[k].astype(str).nunique() > 1}


# ----------------------------------------------------------------------------- the figures
def plot_metric_vs_sigma(ctx: FigureContext, out_dir: Path) -> list[Path]:
    """A panel per (dataset, task): each metric's mean against sigma_y, a line per method."""
    summary = _image_tasks(ctx.summary)
    paths: list[Path] = []
    for metric in ctx.metrics:
        stem = f"metric_vs_sigma_{metric}"
        if summary.empty:
            paths += save_figure(_empty("no image-task rows in the store"), out_dir, stem)
            continue
        selected = selection.select(summary, "best", ctx.primary)
        keys = ["dataset", "task"]
        panels = _panel_keys(selected, keys)
        varying = _varying(selected, keys)
        colors = _solver_colors(selected["solver"])
        fig, axes = _panels(len(panels), 3)
        for ax, values in zip(axes.flat, panels):
            part = selected[selection.section_mask(selected, keys, values)]
            for (solver, reg, steps), line in _method_lines(part):
                line = line.sort_values("sigma_y")
                style, marker = REG_STYLE.get(reg, ("-.", "x"))
                ax.errorbar(line["sigma_y"], line[f"mean:{metric}"], yerr=line[f"std:{metric}"] if f"std:{metric}" in line else None,
                            color=colors[solver], linestyle=style, marker=marker, capsize=2, label=labels.method_label(solver, reg))
            ax.set_title(_panel_title(keys, values, varying))
            ax.set_xlabel("measurement noise σ_y")
            ax.set_ylabel(_ylabel(metric))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        paths += save_figure(fig, out_dir, stem)
    return paths


def plot_metric_vs_lambda(ctx: FigureContext, out_dir: Path) -> list[Path]:
    """A panel per (dataset, task, sigma_y): the metric against lambda for each EquiReg method (the
    best other hyperparameters per lambda), the base solver's selected value as a dashed line."""
    summary = _image_tasks(ctx.summary)
    paths: list[Path] = []
    for metric in ctx.metrics:
        stem = f"metric_vs_lambda_{metric}"
        reg = summary[(summary["regularizer"] != "none") & summary["lam"].notna()] if not summary.empty else summary
        if reg.empty:
            paths += save_figure(_empty("no EquiReg rows with a lambda in the store"), out_dir, stem)
            continue
        per_lam = selection.select(reg, "best", ctx.primary, ("dataset", "sigma_y", *selection.METHOD_KEYS, "lam"))
        base = selection.select(summary[summary["regularizer"] == "none"], "best", ctx.primary)
        keys = ["dataset", "task", "sigma_y"]
        panels = _panel_keys(per_lam, keys)
        varying = _varying(per_lam, keys)
        colors = _solver_colors(summary["solver"])
        fig, axes = _panels(len(panels), 3, width=4.4 if (_influence(per_lam) > 0).any() else 3.4)
        for ax, values in zip(axes.flat, panels):
            part = per_lam[selection.section_mask(per_lam, keys, values)]
            for (solver, regularizer, steps), line in _method_lines(part):
                line = line.sort_values("lam")
                style, marker = REG_STYLE.get(regularizer, ("-.", "x"))
                ax.plot(line["lam"], line[f"mean:{metric}"], color=colors[solver], linestyle=style, marker=marker, label=labels.method_label(solver, regularizer))
            base_part = base[selection.section_mask(base, keys, values)]
            for (solver, _, _), line in _method_lines(base_part):
                if solver in set(part["solver"]):
                    ax.axhline(float(line[f"mean:{metric}"].iloc[0]), color=colors[solver], linestyle="--", linewidth=1, label=labels.method_label(solver, "none"))
            if (part["lam"] > 0).all() and part["lam"].max() / part["lam"].min() >= 10:
                ax.set_xscale("log")
            _influence_axis(ax, part, colors)
            ax.set_title(_panel_title(keys, values, varying), fontsize=9)
            ax.set_xlabel("λ")
            ax.set_ylabel(_ylabel(metric))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        fig.tight_layout()
        paths += save_figure(fig, out_dir, stem)
    return paths


def _influence(line: pd.DataFrame) -> pd.Series:
    """Mean influence per row: the gradient ratio, else the objective ratio (ReSample)."""
    grad, obj = (line.get(f"mean:{c}", pd.Series(np.nan, index=line.index)).astype(float) for c in labels.INFLUENCE_COLUMNS)
    return grad.where(grad.notna(), obj)


def _influence_axis(ax, part: pd.DataFrame, colors: dict) -> None:
    """A right-hand log axis with each method's mean influence against lambda (dotted, x markers)
    and the inert / dominant bounds shaded; nothing when no row recorded an influence."""
    infl = _influence(part)
    if not (infl > 0).any():
        return
    ax2 = ax.twinx()
    for (solver, regularizer, steps), line in _method_lines(part.assign(_infl=infl)):
        line = line[line["_infl"] > 0].sort_values("lam")
        ax2.plot(line["lam"], line["_infl"], color=colors[solver], linestyle=":", marker="x", alpha=0.7, linewidth=1)
    ax2.set_yscale("log")
    lo, hi = min(ax2.get_ylim()[0], labels.INERT_BELOW / 2), max(ax2.get_ylim()[1], labels.DOMINANT_ABOVE * 2)
    ax2.axhspan(lo, labels.INERT_BELOW, color="0.5", alpha=0.12, linewidth=0)
    ax2.axhspan(labels.DOMINANT_ABOVE, hi, color="C3", alpha=0.08, linewidth=0)
    ax2.set_ylim(lo, hi)
    ax2.set_ylabel("influence ||∇λR||/||∇data|| (x, dotted)\nshaded: inert < 1e-3, dominant > 10", fontsize=6)
    ax2.tick_params(labelsize=6)


def _load_unit_images(store_dir: Path, rows: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    from orchestrator import store

    merged: dict[str, dict[str, np.ndarray]] = {"x_hat": {}, "naive": {}, "x_true": {}}
    units = rows[["run_id", "unit_id"]].dropna().drop_duplicates().sort_values(["run_id", "unit_id"])
    for run_id, part in units.groupby("run_id", sort=True):
        images = store.load_images(store_dir, run_id, list(part["unit_id"]))
        for group, items in images.items():
            merged.setdefault(group, {}).update(items)
    return merged


def plot_qualitative(ctx: FigureContext, out_dir: Path) -> list[Path]:
    """A grid per (task, solver) with saved images: rows are samples (``sample_ids``, default the
    first ``n_samples`` stored); columns ground truth, naive inverse, the base solver and each
    EquiReg variant (selected configs), each with its PSNR underneath. A store without images gets
    one ``qualitative`` placeholder that says so."""
    summary = _image_tasks(ctx.summary)
    if summary.empty or ctx.store_dir is None:
        return save_figure(_empty("no images: no image-task rows or no store"), out_dir, "qualitative")
    selected = selection.select(summary, "best", ctx.primary)
    rows = ctx.results[ctx.results["setting"].isin(set(selected["config_id"]))].dropna(subset=["sample_id"])
    images = _load_unit_images(Path(ctx.store_dir), rows)
    # (setting, sample) -> the row of its smallest seed: its own config_id names its images
    first = rows.sort_values(["seed", "config_id"], kind="mergesort").drop_duplicates(["setting", "sample_id"])
    row_of = {(r.setting, int(r.sample_id)): r for r in first.itertuples()}
    paths: list[Path] = []
    keys = ["dataset", "sigma_y", "task", "solver", "num_steps"]
    varying = _varying(selected, ["dataset", "sigma_y", "num_steps"])
    for values in _panel_keys(selected, keys):
        part = selected[selection.section_mask(selected, keys, values)]
        methods = sorted(part.to_dict("records"), key=lambda r: labels.method_sort_key(r["solver"], r["regularizer"], r["num_steps"]))
        available = sorted({sid for (setting, sid), r in row_of.items() for m in methods
                            if setting == m["config_id"] and f"{r.config_id}:{sid}" in images["x_hat"]})
        sample_ids = [s for s in (ctx.sample_ids or available) if s in available][: ctx.n_samples if ctx.sample_ids is None else None]
        dataset, sigma_y, task, solver, steps = values
        suffix = "_".join(str(labels.format_setting(v)) for k, v in zip(keys, values) if k in varying)
        stem = re.sub(r"[^A-Za-z0-9_.\-]+", "_", f"qualitative_{labels.format_setting(task)}_{labels.format_setting(solver)}" + (f"_{suffix}" if suffix else ""))
        if not sample_ids:  # this task / solver saved no images
            continue
        base_id = next((m["config_id"] for m in methods if m["regularizer"] == "none"), methods[0]["config_id"])
        columns = [("Ground truth", "x_true", None), ("Naive inverse", "naive", base_id)]
        columns += [(labels.method_label(m["solver"], m["regularizer"]) + (f"\nλ={labels.format_setting(m['lam'])}" if m["regularizer"] != "none" else ""), "x_hat", m["config_id"]) for m in methods]
        cells, notes = [], []
        for sid in sample_ids:
            cells.append([])
            notes.append([])
            for _, group, setting in columns:
                row = row_of.get((setting, sid))
                key = str(sid) if group == "x_true" else f"{row.config_id}:{sid}" if row is not None else ""
                arr = images.get(group, {}).get(key)
                if arr is None and group == "naive":  # any selected config's naive inverse will do
                    naive_keys = [f"{row_of[(m['config_id'], sid)].config_id}:{sid}" for m in methods if (m["config_id"], sid) in row_of]
                    arr = next((images["naive"][k] for k in naive_keys if k in images["naive"]), None)
                cells[-1].append(arr)
                value = None if row is None or group == "x_true" else row.psnr if group == "x_hat" else row.naive_psnr
                notes[-1].append(image_grid.psnr_note(value))
        title = f"{labels.task_label(task)}, {labels.solver_label(solver)}"
        if varying:
            title += " (" + ", ".join(f"{k}={labels.format_setting(v)}" for k, v in zip(keys, values) if k in varying) + ")"
        fig = image_grid.draw(cells, [c[0] for c in columns], notes, [f"#{sid}" for sid in sample_ids], title)
        paths += save_figure(fig, out_dir, stem)
    return paths or save_figure(_empty("no reconstructions saved in the store"), out_dir, "qualitative")


def improvements(results: pd.DataFrame, summary: pd.DataFrame, metric: str, primary: str) -> pd.DataFrame:
    """Per-image improvement of each selected EquiReg setting over its selected base setting.

    ``results`` are prepared rows (``summaries.prepare_results``). Pairs ok rows on (dataset, task,
    sigma_y, num_steps, solver, sample_id, seed); ``improvement`` is signed so that positive is
    better (base - equi for lower-is-better metrics).
    """
    selected = selection.select(summary, "best", primary)
    rows = results[results["status"] == "ok"]
    chosen = selected[["config_id"]].rename(columns={"config_id": "setting"})
    rows = rows.merge(chosen, on="setting")
    pair = ["dataset", "task", "sigma_y", "num_steps", "solver", "sample_id", "seed"]
    base = rows[rows["regularizer"] == "none"][pair + [metric]].rename(columns={metric: "base"})
    equi = rows[rows["regularizer"] != "none"][pair + ["regularizer", "lam", "cluster", metric]]
    merged = equi.merge(base, on=pair, how="inner").dropna(subset=[metric, "base"])
    sign = -1.0 if labels.lower_is_better(metric) else 1.0
    merged["improvement"] = sign * (merged[metric] - merged["base"])
    return merged.sort_values(pair + ["regularizer"], kind="mergesort").reset_index(drop=True)


def plot_improvement_histogram(ctx: FigureContext, out_dir: Path) -> list[Path]:
    """Rows: EquiReg methods; columns: (dataset, task, sigma_y); a histogram of per-image
    improvement with the mean and the share of images improved."""
    paths: list[Path] = []
    summary = _image_tasks(ctx.summary)
    for metric in ctx.metrics:
        stem = f"improvement_{metric}"
        pairs = improvements(ctx.results, summary, metric, ctx.primary) if not summary.empty else pd.DataFrame()
        if pairs.empty:
            paths += save_figure(_empty("no EquiReg rows paired with a base-solver row"), out_dir, stem)
            continue
        methods = sorted(pairs[["solver", "regularizer", "num_steps"]].drop_duplicates().itertuples(index=False, name=None), key=lambda k: labels.method_sort_key(*k))
        keys = ["dataset", "task", "sigma_y"]
        panels = _panel_keys(pairs, keys)
        varying = _varying(pairs, keys)
        fig, axes = _panels(len(methods) * len(panels), len(panels), width=3.0, height=2.2, nrows=len(methods))
        for i, (solver, reg, steps) in enumerate(methods):
            for j, values in enumerate(panels):
                ax = axes[i, j]
                sel = pairs[selection.section_mask(pairs, keys, values) & (pairs["solver"] == solver) & (pairs["regularizer"] == reg) & (pairs["num_steps"] == steps)]
                ax.axvline(0.0, color="k", linewidth=0.8)
                if sel.empty:
                    ax.set_xticks([])
                    ax.set_yticks([])
                    ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes)
                else:
                    v = sel["improvement"].to_numpy(dtype=float)
                    ax.hist(v, bins=max(5, min(20, len(v) // 2)), color="C2" if v.mean() >= 0 else "C3", alpha=0.8)
                    iv = stats.mean_interval(v, list(sel["cluster"]))
                    ci = f" ({iv.lo:+.3g}, {iv.hi:+.3g})" if iv.defined else ""
                    ax.set_title(f"mean {v.mean():+.3g}{ci}, {100 * (v > 0).mean():.0f}% better, n={len(v)}/{iv.n_clusters} cl.", fontsize=7)
                if i == len(methods) - 1:
                    ax.set_xlabel(f"{_panel_title(keys, values, varying)}\nΔ {labels.METRICS[metric].label} (positive = better)", fontsize=8)
                if j == 0:
                    ax.set_ylabel(f"{labels.method_label(solver, reg)}\nimages", fontsize=8)
        fig.tight_layout()
        paths += save_figure(fig, out_dir, stem)
    return paths


#: Figure name -> drawer(context, out_dir) -> written paths.
FIGURES: dict[str, Callable[[FigureContext, Path], list[Path]]] = {
    "metric-vs-sigma": plot_metric_vs_sigma,
    "metric-vs-lambda": plot_metric_vs_lambda,
    "qualitative": plot_qualitative,
    "improvement-histogram": plot_improvement_histogram,
}


def write_figures(results: pd.DataFrame, store_dir, out_dir, names: Sequence[str] | None = None, metrics: Sequence[str] = ("psnr",),
                  primary: str = "psnr", sample_ids: Sequence[int] | None = None, n_samples: int = 4) -> list[Path]:
    """Draw the named figures (default: all) into ``out_dir``; returns every PNG and PDF written."""
    names = list(names or FIGURES)
    unknown = [n for n in names if n not in FIGURES] + [m for m in metrics if m not in labels.METRICS or labels.METRICS[m].source != "image"]
    if unknown:
        allowed = sorted(FIGURES) + sorted(m for m, s in labels.METRICS.items() if s.source == "image")
        raise ValueError(f"unknown figures or per-image metrics {unknown}; allowed: {allowed}")
    if primary not in labels.METRICS:
        raise ValueError(f"unknown metric {primary!r} to select by; allowed: {sorted(labels.METRICS)}")
    results = summaries.prepare_results(results)
    ctx = FigureContext(results, summaries.summarize(results), Path(store_dir) if store_dir else None, tuple(metrics), primary,
                        tuple(int(s) for s in sample_ids) if sample_ids else None, n_samples)
    out = Path(out_dir)
    paths: list[Path] = []
    for name in names:
        paths += FIGURES[name](ctx, out)
    return paths
