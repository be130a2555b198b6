"""Store rows -> tables: filter, summarize, select (on these images or on another split), and hand
each section (dataset, noise level) with its evidence to the layout."""
from __future__ import annotations

from typing import Sequence

import pandas as pd

from orchestrator.reporting.evidence import Evidence
from orchestrator.reporting.labels import METRICS, format_setting, lower_is_better, method_label, num, solver_family, task_label
from orchestrator.reporting.layouts import LAYOUTS, Layout
from orchestrator.reporting.model import ReportOptions, Section, Table
from orchestrator.reporting.selection import METHOD_KEYS, select, select_across, section_mask
from orchestrator.reporting.summary import prepare_results, summarize_prepared

__all__ = ["build_tables"]


def _section_title(keys: Sequence[str], values: Sequence) -> str:
    return ", ".join(f"sigma_y = {format_setting(v)}" if k == "sigma_y" else f"{k} {format_setting(v)}" for k, v in zip(keys, values))


def _filter(results: pd.DataFrame, layout: Layout, options: ReportOptions) -> pd.DataFrame:
    df = results
    if "regularizer" in df:
        df = df.assign(regularizer=df["regularizer"].fillna("none"))
    mask = df["task"].map(lambda t: bool(layout.tasks(str(t)))) if len(df) else pd.Series([], dtype=bool)
    if options.tasks:
        mask &= df["task"].isin(list(options.tasks))
    if options.solvers:
        mask &= df["solver"].isin(list(options.solvers))
    if options.baseline_only:
        mask &= ~(df["solver"].isin(list(options.baseline_only)) & (df["regularizer"] != "none"))
    return df[mask] if len(df) else df


def _check_datasets(results: pd.DataFrame, options: ReportOptions) -> None:
    known = sorted(set(results["dataset"].dropna().astype(str))) if "dataset" in results else []
    asked = ([options.select_on] if options.select_on else []) + list(options.report_on or ())
    unknown = [d for d in asked if d not in known]
    if unknown:
        raise ValueError(f"no rows of dataset(s) {unknown} in the store; datasets: {known}")
    if options.select_on and options.select_on in (options.report_on or ()):
        raise ValueError(f"--select-on {options.select_on} is also a --report-on dataset: select and report on different splits")


def _split_rows(rows: pd.DataFrame, options: ReportOptions) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(rows to report, rows to select on or None for the same rows)."""
    report = rows
    if options.report_on:
        report = rows[rows["dataset"].isin(list(options.report_on))]
    elif options.select_on:
        report = rows[rows["dataset"] != options.select_on]
    chooser = rows[rows["dataset"] == options.select_on] if options.select_on else None
    return report, chooser


def _missing_notes(missing: pd.DataFrame, select_on: str) -> list[tuple[float, str]]:
    return [(num(r["sigma_y"]), f"Selected on {select_on} but not run on this table's images: {method_label(r['solver'], r['regularizer'])} "
             f"({task_label(r['task'])}, lam={format_setting(r['lam'])}, step_size={format_setting(r['step_size'])}).")
            for r in missing.to_dict("records")]


def _best_classical(rows: pd.DataFrame, primary: str) -> dict:
    """task -> the classical row with the best selection score (the selection split's mean when
    selecting on another split, else this table's mean)."""
    out: dict = {}
    sign = 1.0 if lower_is_better(primary) else -1.0
    for rec in rows.to_dict("records"):
        if solver_family(rec["solver"]) != "classical" or rec["regularizer"] != "none":
            continue
        score = sign * num(rec.get("select_score", rec.get(f"mean:{primary}")))
        best = out.get(rec["task"])
        if best is None or (score, rec["config_id"]) < (sign * num(best.get("select_score", best.get(f"mean:{primary}"))), best["config_id"]):
            out[rec["task"]] = rec
    return out


def build_tables(results: pd.DataFrame, sets: pd.DataFrame | None, layout: str, options: ReportOptions = ReportOptions(),
                 posterior: pd.DataFrame | None = None) -> list[Table]:
    """The tables of ``layout`` for these rows: one per section (dataset, noise level); a layout of the
    posterior part (``calibration``) is built from ``posterior`` (none given: no tables)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {sorted(LAYOUTS)}")
    spec = LAYOUTS[layout]
    if spec.source == "posterior":
        from orchestrator.reporting.calibration import calibration_tables

        return calibration_tables(posterior, options) if posterior is not None else []
    metrics = tuple(options.metrics or spec.metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; allowed: {sorted(METRICS)}")
    primary = options.select_by or spec.primary
    _check_datasets(results, options)
    rows = prepare_results(_filter(results, spec, options))
    report_rows, chooser_rows = _split_rows(rows, options)
    summary = summarize_prepared(report_rows, sets)
    if summary.empty:
        return []
    section_keys = list(spec.sections)
    keys = [*section_keys, *METHOD_KEYS]
    missing: list[tuple[float, str]] = []
    if chooser_rows is not None:
        best, gone = select_across(summarize_prepared(chooser_rows, sets), summary, keys, primary)
        missing = _missing_notes(gone, options.select_on)
    else:
        best = select(summary, "best", primary, keys)
        best = best.assign(select_score=best[f"mean:{primary}"] if f"mean:{primary}" in best else float("nan"))
    selected = best if options.select == "best" else select(summary, options.select, primary, keys)
    if selected.empty:
        return []
    evidence = Evidence(report_rows, options.level, options.n_resamples, options.ci_seed)
    tables = []
    for values, part in selected.groupby(section_keys, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        in_best = best[section_mask(best, section_keys, values)]
        base = {(r["task"], r["solver"], num(r["num_steps"])): r
                for r in in_best[(in_best["regularizer"] == "none")].to_dict("records") if solver_family(r["solver"]) != "classical"}
        used = part if options.select == "best" else in_best[in_best["regularizer"] == "none"]
        chosen_here = chooser_rows is None and bool(len(used)) and bool((used["n_variants"].astype(int) > 1).any())
        naive = evidence.naive(report_rows[section_mask(report_rows, section_keys, values)]) if spec.naive and options.naive else {}
        sigma = num(values[section_keys.index("sigma_y")]) if "sigma_y" in section_keys else None
        extra = tuple(text for s, text in missing if sigma is None or s == sigma)
        section = Section(_section_title(section_keys, values), summary[section_mask(summary, section_keys, values)], part, base, naive,
                          metrics, primary, options.select, part.to_dict("records"), evidence, _best_classical(in_best, primary),
                          options.select_on if chooser_rows is not None else None, chosen_here, extra)
        tables.append(spec.build(section))
    return tables
