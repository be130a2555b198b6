"""The ``calibration`` layout: how well each setting samples the exact posterior, from the store's
``posterior/`` part (``orchestrator.posterior_sets``), not from the per-image rows.

One table per section (dataset, noise level); a row per task x solver x regularizer x step (and
lambda / step count where several ran); per metric the mean over measurements with its 95%
bootstrap interval (``orchestrator.stats``; each measurement its own cluster, so ``n`` is the
number of measurements, not of samples), SW next to its floor and their ratio; Equi/EquiCon rows
carry the paired difference to the same solver, task and step without EquiReg, measurement by
measurement. ``cal.`` applies the stated criterion (``SW_FACTOR``, ``COVERAGE_TOL``) to the means.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from orchestrator import stats
from orchestrator.reporting.labels import METRICS, format_setting, method_label, method_sort_key, num, task_label, task_sort_key
from orchestrator.reporting.model import Cell, Column, ReportOptions, Row, Table
from solvers import SOLVERS

__all__ = ["COLUMNS", "SW_FACTOR", "COVERAGE_TOL", "calibration_tables", "load_posterior", "calibrated"]

#: the metric columns, in table order (``sw_ratio`` = sw / sw_floor per measurement)
COLUMNS = ("sw", "sw_floor", "sw_ratio", "mean_err", "std_ratio", "mode_tv", "cov50", "cov90", "mmse_gap")
#: calibrated: mean SW/floor at most this, and mean 90% coverage within ``COVERAGE_TOL`` of 0.9
SW_FACTOR = 2.0
COVERAGE_TOL = 0.1
_GROUP = ("task", "solver", "regularizer", "num_steps", "step_size", "lam")
_BASE = ("task", "solver", "num_steps", "step_size")


def load_posterior(store_dir, runs: Sequence[str] | None = None) -> pd.DataFrame:
    """The store's posterior rows (empty, with the schema's columns, when it has none)."""
    from orchestrator import posterior_sets
    from orchestrator.schema import POSTERIOR_SCHEMA

    if not posterior_sets.posterior_dir(store_dir).is_dir():
        return POSTERIOR_SCHEMA.empty_table().to_pandas()
    return posterior_sets.load(store_dir, run=list(runs) if runs else None)


def calibrated(sw_ratio: float | None, cov90: float | None) -> bool | None:
    """The criterion on a setting's means (None when either is missing: a point estimate)."""
    if sw_ratio is None or cov90 is None or not (math.isfinite(sw_ratio) and math.isfinite(cov90)):
        return None
    return sw_ratio <= SW_FACTOR and abs(cov90 - 0.9) <= COVERAGE_TOL


def _filtered(df: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    df = df.copy()
    df["regularizer"] = df["regularizer"].fillna("none")
    if options.tasks:
        df = df[df["task"].isin(list(options.tasks))]
    if options.solvers:
        df = df[df["solver"].isin(list(options.solvers))]
    if options.baseline_only:
        df = df[~(df["solver"].isin(list(options.baseline_only)) & (df["regularizer"] != "none"))]
    if options.report_on:
        df = df[df["dataset"].isin(list(options.report_on))]
    with np.errstate(divide="ignore", invalid="ignore"):
        df["sw_ratio"] = df["sw"].astype(float) / df["sw_floor"].astype(float)
    return df


def _metric_cell(part: pd.DataFrame, base: pd.DataFrame | None, metric: str, options: ReportOptions) -> tuple[Cell, float | None]:
    kw = dict(level=options.level, n_resamples=options.n_resamples, seed=options.ci_seed)
    part = part[part["status"].isin(["ok", "partial"])]
    base = base[base["status"].isin(["ok", "partial"])] if base is not None else None
    values = part[metric].astype(float)
    if not np.isfinite(values).any():
        return Cell(), None
    iv = stats.mean_interval(values.to_numpy(), part["cluster"].tolist(), **kw)
    lo, hi = (iv.lo, iv.hi) if iv.defined else (None, None)
    cell = Cell(value=iv.estimate, lo=lo, hi=hi)
    if base is not None and metric != "sw_floor":  # the floor is the measurement's: no delta
        pair = part[["measurement", "cluster", metric]].merge(base[["measurement", metric]], on="measurement", suffixes=("", "_b"))
        ok = np.isfinite(pair[metric].astype(float)) & np.isfinite(pair[f"{metric}_b"].astype(float))
        if ok.any():
            d = stats.paired_delta(pair[metric][ok].astype(float).to_numpy(), pair[f"{metric}_b"][ok].astype(float).to_numpy(),
                                   pair["cluster"][ok].tolist(), **kw)
            cell = Cell(value=iv.estimate, lo=lo, hi=hi, delta=d.estimate, d_lo=d.lo if d.defined else None,
                        d_hi=d.hi if d.defined else None)
    return cell, iv.estimate


def _section(title: str, df: pd.DataFrame, metrics: tuple[str, ...], options: ReportOptions) -> Table:
    groups = {k: g for k, g in df.groupby(list(_GROUP), dropna=False, sort=False)}
    bases = {tuple(k[i] for i in (0, 1, 3, 4)): g for k, g in groups.items() if k[2] == "none"}
    steps_vary = df.groupby(["solver", "regularizer"])["num_steps"].nunique().max() > 1
    lam_vary = df[df["regularizer"] != "none"].groupby(["solver", "regularizer", "task"])["lam"].nunique().max() > 1
    columns = [Column("Task", merge=True), Column("Method", merge=True)] + ([Column("Steps")] if steps_vary else [])
    columns += [Column("step", key="step_size")] + ([Column("λ", key="lam")] if lam_vary else [])
    columns += [Column(METRICS[m].label, m) for m in metrics]
    columns += [Column("cal.", key="calibrated"), Column("n"), Column("S", key="samples")]

    def order(key):
        task, solver, reg, steps, step, lam = key
        return (task_sort_key(task), method_sort_key(solver, reg, num(steps)), num(step), num(lam))

    rows, failed = [], []
    for key in sorted(groups, key=order):
        task, solver, reg, steps, step, lam = key
        part = groups[key]
        base = bases.get((task, solver, steps, step)) if reg != "none" else None
        cells = [Cell(task_label(task)), Cell(method_label(solver, reg))] + ([Cell(format_setting(steps))] if steps_vary else [])
        has_step = getattr(SOLVERS.get(solver), "step_param", "step_size") is not None  # biharmonic: no weight
        cells += [Cell(format_setting(step) if has_step else "-")] + ([Cell(format_setting(lam) if reg != "none" else "-")] if lam_vary else [])
        means = {}
        for m in metrics:
            cell, means[m] = _metric_cell(part, base, m, options)
            cells.append(cell)
        if "sw_ratio" not in means or "cov90" not in means:  # the verdict needs both, shown or not
            means.update({m: _metric_cell(part, None, m, options)[1] for m in ("sw_ratio", "cov90")})
        verdict = calibrated(means["sw_ratio"], means["cov90"])
        good = part[part["status"].isin(["ok", "partial"])]
        n = good["n_samples"].astype(int)
        samples = "0" if n.empty else (f"{n.min()}" if n.min() == n.max() else f"{n.min()}-{n.max()}")
        verdict_text = "failed" if good.empty else ("-" if verdict is None else ("yes" if verdict else "no"))
        cells += [Cell(verdict_text), Cell(str(good["measurement"].nunique())), Cell(samples)]
        if good.empty:
            failed.append(f"{method_label(solver, reg)} on {task_label(task)}, step {format_setting(step)}: "
                          f"{str(part['error'].dropna().iloc[0] if part['error'].notna().any() else 'failed').splitlines()[0]}")
        rows.append(Row(tuple(cells), bold_group=task))
    pct = int(round(options.level * 100))
    notes = (
        "Posterior set metrics per (setting, measurement) against the exact posterior, then the mean over measurements "
        f"± half the width of its {pct}% percentile bootstrap interval ({options.n_resamples} resamples, seed "
        f"{options.ci_seed}); n = measurements (each its own cluster), S = samples per measurement (rows stored ok).",
        "sw: sliced Wasserstein-2 to an exact posterior set of S draws (256 fixed directions); sw_floor: the same distance "
        "between two exact sets of S draws (what exact sampling scores at this S); SW/floor: their ratio per measurement.",
        "mean_err: ||sample mean - E[x|y]|| / ||E[x] - E[x|y]|| (0: the posterior mean, 1: as far as the prior mean); "
        "std_ratio: geometric mean over pixels of sd(samples) / sd(x|y) (< 1 overconfident); mode_tv: total variation "
        "of mode weights; cov50 / cov90: exact posterior mass inside the samples' central 50% / 90% per-pixel intervals "
        "(nominal 50% / 90%); mmse_gap: mean over samples of ||x - E[x|y]||^2 / tr Cov[x|y] (1 for exact samples, 0 "
        "for the MMSE estimate).",
        f"cal. = yes when mean SW/floor <= {SW_FACTOR:g} and |mean cov90 - 90%| <= {COVERAGE_TOL * 100:g} points "
        "(criterion stated before the runs); '-' for point estimates (classical baselines: mean_err and mmse_gap only).",
        "[Δ (lo, hi)] = paired difference to the same solver, task and step without EquiReg, measurement by measurement, "
        "with its interval; † = the interval excludes 0. Coverage deltas are in percentage points.",
    ) + tuple(f"No posterior set (every measurement failed): {f}" for f in failed)
    return Table(title, tuple(columns), tuple(rows), notes, "No selection: every setting that ran is shown.")


def calibration_tables(posterior: pd.DataFrame, options: ReportOptions = ReportOptions()) -> list[Table]:
    """The calibration tables of the store's posterior rows, one per (dataset, sigma_y)."""
    if posterior is None or posterior.empty:
        return []
    metrics = tuple(m for m in (options.metrics or COLUMNS) if m in COLUMNS)
    if not metrics:
        raise ValueError(f"the calibration layout shows posterior metrics; allowed --metrics: {', '.join(COLUMNS)}")
    df = _filtered(posterior, options)
    tables = []
    for (dataset, sigma), part in df.groupby(["dataset", "sigma_y"], sort=True):
        tables.append(_section(f"dataset {dataset}, sigma_y = {format_setting(sigma)}", part, metrics, options))
    return tables
