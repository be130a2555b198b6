"""Paper-style tables from the results store: aggregate, select, lay out, format.

The pipeline is four small steps over DataFrames, so tests can feed hand-made rows to each:

1. ``summarize(results, sets)``: one row per setting (a config up to its seed: the seed is part
   of ``config_id``, and seeds pool). Per-image metrics are the mean and standard deviation
   (ddof=1) over the setting's images with status ``ok``; ``diverged`` and ``failed`` images are
   counted, never averaged. FID/KID come from each config's newest ok row of the sets table
   (averaged over seeds). A (config, sample, seed) stored in several runs counts once (the ok row,
   then the newest).
2. ``select(summary, rule, primary)``: one row per *method* (solver, regularizer, steps) and task.
   A sweep usually holds several lambdas / step sizes / MPE choices per method; the ``best`` rule
   (default) keeps the config with the best mean of the primary metric (PSNR for images, relative
   L2 for PDEs; direction from ``schema.LOWER_IS_BETTER``), ties going to the smallest lambda, then
   step size, then config id. The same rule applies to the baselines (regularizer ``none``), so
   every method is tuned alike. ``all`` keeps every config as its own row.
3. A layout (``LAYOUTS``) turns the selected rows of one section (dataset, noise level) into a
   ``Table``: columns, rows, bold marks, deltas and notes. Every Equi/EquiCon row carries its delta
   against the base solver's selected row (same solver, regularizer none, same task, sigma_y and
   steps); the best value per column is bold (ties at display precision all bold).
4. A format (``FORMATS``) renders tables as text: Markdown, LaTeX (booktabs), HTML or CSV.

Output is deterministic: rows and columns are sorted, floats have fixed decimals, and nothing
depends on the clock, so the same store renders byte-identical text.
"""
from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from orchestrator.schema import LOWER_IS_BETTER

__all__ = [
    "METRICS",
    "LAYOUTS",
    "FORMATS",
    "SELECTIONS",
    "Column",
    "Cell",
    "Row",
    "Table",
    "ReportOptions",
    "prepare_results",
    "summarize",
    "select",
    "section_mask",
    "format_setting",
    "build_tables",
    "render",
    "make_report",
    "write_report",
    "print_comparison",
    "write_demo_report",
    "method_label",
    "task_label",
]


# ---------------------------------------------------------------------------------- registries
@dataclass(frozen=True)
class Metric:
    """How a metric is shown: header label, fixed decimals, where it comes from."""

    label: str
    decimals: int
    source: str = "image"  # "image": averaged over per-image rows; "set": from the sets table
    percent: bool = False  # shown as a percentage (relative L2, as in the paper's Table 4)
    std_column: str | None = None  # for set metrics: the sets column holding a std, if any


#: Metrics a table may show (keys are result/set column names).
METRICS: dict[str, Metric] = {
    "lpips": Metric("LPIPS", 3),
    "fid": Metric("FID", 2, source="set"),
    "kid_mean": Metric("KID", 4, source="set", std_column="kid_std"),
    "psnr": Metric("PSNR", 2),
    "ssim": Metric("SSIM", 3),
    "rel_l2": Metric("Rel. L2", 2, percent=True),
    "y_residual": Metric("||y-A(x)||", 3),
    "wall_s": Metric("s/img", 2),
}

#: Per-image columns averaged into the summary (the naive baseline's PSNR included).
IMAGE_COLUMNS = tuple(m for m, spec in METRICS.items() if spec.source == "image") + ("naive_psnr",)


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


#: Paper spelling and solver space (latent / pixel) per solver; unknown solvers keep their name.
SOLVER_LABELS = {
    "psld": "PSLD",
    "resample": "ReSample",
    "latent_daps": "LatentDAPS",
    "dps": "DPS",
    "daps": "DAPS",
    "fundps": "FunDPS",
    "diffusionpde": "DiffusionPDE",
}
SOLVER_SPACE = {"psld": "latent", "resample": "latent", "latent_daps": "latent", "dps": "pixel", "daps": "pixel"}
SPACE_LABELS = {"latent": "Latent", "pixel": "Pixel-based", "other": "Other"}
SPACE_ORDER = ("latent", "pixel", "other")
REGULARIZER_PREFIX = {"none": "", "equi": "Equi-", "equicon": "EquiCon-"}
REGULARIZER_ORDER = ("none", "equi", "equicon")
NAIVE_LABEL = "Naive inverse"

#: Task names (operator registry names) in the paper's order, their labels and kinds.
TASK_LABELS = {
    "gaussian_blur": "Gaussian deblur",
    "motion_blur": "Motion deblur",
    "super_resolution": "Super-resolution",
    "box_inpainting": "Box inpainting",
    "random_inpainting": "Random inpainting",
    "hdr": "HDR",
    "phase_retrieval": "Phase retrieval",
    "nonlinear_blur": "Nonlinear deblur",
    "identity": "Denoising",
}
TASK_KIND = {
    "gaussian_blur": "Linear",
    "motion_blur": "Linear",
    "super_resolution": "Linear",
    "box_inpainting": "Linear",
    "random_inpainting": "Linear",
    "identity": "Linear",
    "hdr": "Nonlinear",
    "phase_retrieval": "Nonlinear",
    "nonlinear_blur": "Nonlinear",
}
KIND_ORDER = ("Linear", "Nonlinear", "Other")
PDE_PREFIX = "pde_"
PDE_LABELS = {"helmholtz": "Helmholtz", "navier_stokes": "Navier-Stokes", "darcy": "Darcy", "poisson": "Poisson"}
PDE_DIRECTIONS = {"forward": "Forward", "inverse": "Inverse"}

#: A method is one row of a table; a variant is one hyperparameter setting of it.
METHOD_KEYS = ("task", "solver", "regularizer", "num_steps")
VARIANT_KEYS = ("lam", "step_size", "mpe", "group", "lam_schedule", "prior")
CONFIG_ATTRS = ("dataset", "prior", "task", "sigma_y", "num_steps", "solver", "regularizer", "mpe", "group", "lam_schedule", "lam", "step_size")


def solver_label(solver: str) -> str:
    return SOLVER_LABELS.get(solver, str(solver)) if _present(solver) else "-"


def method_label(solver: str, regularizer: str) -> str:
    """Paper spelling: ``DPS``, ``Equi-DPS``, ``EquiCon-PSLD``."""
    return REGULARIZER_PREFIX.get(regularizer, f"{regularizer}-") + solver_label(solver)


def task_label(task: str) -> str:
    if not _present(task):
        return "-"
    if task in TASK_LABELS:
        return TASK_LABELS[task]
    if str(task).startswith(PDE_PREFIX):
        problem, direction = pde_parts(task)
        return f"{problem} {direction}".strip()
    return str(task).replace("_", " ").capitalize()


def pde_parts(task: str) -> tuple[str, str]:
    """``pde_navier_stokes_inverse`` -> ("Navier-Stokes", "Inverse")."""
    name = str(task)[len(PDE_PREFIX):]
    head, _, tail = name.rpartition("_")
    if head and tail in PDE_DIRECTIONS:
        name, direction = head, PDE_DIRECTIONS[tail]
    else:
        direction = ""
    return PDE_LABELS.get(name, name.replace("_", " ").title()), direction


def task_sort_key(task: str) -> tuple:
    order = list(TASK_LABELS)
    if task in TASK_LABELS:
        return (0, order.index(task), "")
    if str(task).startswith(PDE_PREFIX):
        problem, direction = pde_parts(task)
        return (1, 0, f"{problem}\0{list(PDE_DIRECTIONS.values()).index(direction) if direction in PDE_DIRECTIONS.values() else 9}")
    return (2, 0, str(task))


def _index(seq: Sequence, value, default: int = 99) -> int:
    return seq.index(value) if value in seq else default


def method_sort_key(solver: str, regularizer: str, num_steps) -> tuple:
    space = SOLVER_SPACE.get(solver, "other")
    solvers = list(SOLVER_LABELS)
    return (
        _index(SPACE_ORDER, space),
        _index(solvers, solver),
        str(solver),
        _index(REGULARIZER_ORDER, regularizer),
        str(regularizer),
        _num(num_steps),
    )


def _num(value) -> float:
    """A sortable number (None/NaN last)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(f) else f


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not pd.isna(value)


# ------------------------------------------------------------------------------ 1. summarize
def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """Store rows made uniform: every column present, regularizer ``none`` for nulls, one row per
    (config, sample, seed) across runs, and a ``setting`` column (the config up to its seed)."""
    df = results.copy()
    for col in ("config_id", "sample_id", "seed", "status", "regularizer", "run_id", "started_at", *CONFIG_ATTRS, *IMAGE_COLUMNS):
        if col not in df:
            df[col] = None
    df["regularizer"] = df["regularizer"].fillna("none")
    df["config_id"] = df["config_id"].fillna("").astype(str)
    df["status"] = df["status"].fillna("failed")
    for col in IMAGE_COLUMNS + ("sigma_y", "lam", "step_size"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    # one row per (config, sample, seed) across runs: the ok row, then the newest
    df = df.assign(_ok=(df["status"] == "ok"))
    df = df.sort_values(["_ok", "started_at", "run_id"], ascending=False, kind="mergesort", na_position="last")
    df = df.drop_duplicates(["config_id", "sample_id", "seed"], keep="first").drop(columns="_ok")
    # a setting is a config up to its seed (the seed is part of config_id): seeds pool into one
    # table row, named by the config of the smallest seed
    df = df.sort_values(["seed", "config_id"], kind="mergesort", na_position="last")
    df["setting"] = df.groupby(list(CONFIG_ATTRS), dropna=False, sort=False)["config_id"].transform("first") if len(df) else df["config_id"]
    return df.sort_values(["config_id", "sample_id", "seed"], kind="mergesort", na_position="last").reset_index(drop=True)


def _prepare_sets(sets: pd.DataFrame | None) -> pd.DataFrame:
    cols = ["config_id"] + [f"mean:{m}" for m, s in METRICS.items() if s.source == "set"] + [f"std:{m}" for m, s in METRICS.items() if s.source == "set"]
    if sets is None or len(sets) == 0:
        return pd.DataFrame(columns=cols)
    df = sets.copy()
    if "status" in df:
        df = df[df["status"].fillna("ok") == "ok"]
    sort_cols = [c for c in ("computed_at", "run_id") if c in df]
    df = df.sort_values(sort_cols, ascending=False, kind="mergesort", na_position="last") if sort_cols else df
    df = df.drop_duplicates("config_id", keep="first")
    out = pd.DataFrame({"config_id": df["config_id"].astype(str).to_numpy()})
    for m, spec in METRICS.items():
        if spec.source != "set":
            continue
        out[f"mean:{m}"] = pd.to_numeric(df[m], errors="coerce").to_numpy(dtype=float) if m in df else np.nan
        std = spec.std_column
        out[f"std:{m}"] = pd.to_numeric(df[std], errors="coerce").to_numpy(dtype=float) if std and std in df else np.nan
    return out


def summarize(results: pd.DataFrame, sets: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per setting (a config up to its seed): attributes, ``mean:<metric>`` /
    ``std:<metric>``, and image counts.

    ``config_id`` names the setting by its smallest seed's config; ``config_ids`` lists them all.
    Means and stds are over the images of every seed with status ok; ``n_ok``, ``n_diverged`` and
    ``n_failed`` count images (anything neither ok nor diverged counts as failed). Set metrics are
    the mean over the setting's configs.
    """
    return _summarize_prepared(prepare_results(results), sets)


def _summarize_prepared(df: pd.DataFrame, sets: pd.DataFrame | None) -> pd.DataFrame:
    attrs = list(CONFIG_ATTRS)
    if df.empty:
        return pd.DataFrame(columns=["config_id", "config_ids", "n_seeds", *attrs, "n_ok", "n_diverged", "n_failed"])
    grouped = df.groupby("setting", sort=True)
    summary = grouped[attrs].first()
    summary["config_ids"] = grouped["config_id"].agg(lambda ids: ",".join(sorted(set(ids))))
    summary["n_seeds"] = grouped["seed"].nunique(dropna=False)
    ok = df[df["status"] == "ok"].groupby("setting", sort=True)
    for col in IMAGE_COLUMNS:
        summary[f"mean:{col}"] = ok[col].mean()
        summary[f"std:{col}"] = ok[col].std(ddof=1)
    status = df["status"].where(df["status"].isin(["ok", "diverged"]), "failed")
    counts = pd.crosstab(df["setting"], status)
    for name in ("ok", "diverged", "failed"):
        summary[f"n_{name}"] = counts[name].reindex(summary.index).fillna(0).astype(int) if name in counts else 0
    set_metrics = df[["config_id", "setting"]].drop_duplicates().merge(_prepare_sets(sets), on="config_id", how="inner")
    set_metrics = set_metrics.drop(columns="config_id").groupby("setting", sort=True).mean()
    summary = summary.join(set_metrics, how="left").rename_axis("config_id").reset_index()
    summary["regularizer"] = summary["regularizer"].fillna("none")
    return summary.sort_values("config_id", kind="mergesort").reset_index(drop=True)


# --------------------------------------------------------------------------------- 2. select
def _score(summary: pd.DataFrame, primary: str) -> pd.Series:
    col = f"mean:{primary}"
    values = summary[col].astype(float) if col in summary else pd.Series(np.nan, index=summary.index)
    return values if lower_is_better(primary) else -values


def _tuned(summary: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    """Per row: the variant columns that take several values within the row's method group."""
    if summary.empty:
        return pd.Series([], dtype=object)
    variants = summary[list(VARIANT_KEYS)].astype(str)
    group_ids = summary.groupby(list(keys), dropna=False, sort=False).ngroup()
    counts = variants.groupby(group_ids).transform("nunique")
    flags = counts.to_numpy() > 1
    return pd.Series([",".join(k for k, f in zip(VARIANT_KEYS, row) if f) for row in flags], index=summary.index, dtype=object)


def _select_best(summary: pd.DataFrame, keys: Sequence[str], primary: str) -> pd.DataFrame:
    """The config with the best mean primary metric per group (ties: smallest variant values)."""
    if summary.empty:
        return summary.assign(n_variants=[], tuned=[])
    df = summary.assign(_score=_score(summary, primary), tuned=_tuned(summary, keys))
    df["n_variants"] = df.groupby(list(keys), dropna=False)["config_id"].transform("size")
    df = df.sort_values([*keys, "_score", *VARIANT_KEYS, "config_id"], kind="mergesort", na_position="last")
    return df.drop_duplicates(list(keys), keep="first").drop(columns="_score").reset_index(drop=True)


def _select_all(summary: pd.DataFrame, keys: Sequence[str], primary: str) -> pd.DataFrame:
    """Every config as its own row."""
    df = summary.assign(tuned=_tuned(summary, keys)) if not summary.empty else summary.assign(tuned=[])
    df["n_variants"] = 1
    return df.sort_values([*keys, *VARIANT_KEYS, "config_id"], kind="mergesort", na_position="last").reset_index(drop=True)


#: Selection rules: how several configs of one method become table rows.
SELECTIONS: dict[str, Callable[[pd.DataFrame, Sequence[str], str], pd.DataFrame]] = {
    "best": _select_best,
    "all": _select_all,
}


def select(summary: pd.DataFrame, rule: str = "best", primary: str = "psnr", keys: Sequence[str] = ("dataset", "sigma_y", *METHOD_KEYS)) -> pd.DataFrame:
    """Rows of ``summary`` to show, one per group of ``keys`` under rule ``best``."""
    if rule not in SELECTIONS:
        raise ValueError(f"unknown selection {rule!r}; allowed: {sorted(SELECTIONS)}")
    if primary not in METRICS:
        raise ValueError(f"unknown metric {primary!r} to select by; allowed: {sorted(METRICS)}")
    return SELECTIONS[rule](summary, list(keys), primary)


# ----------------------------------------------------------------------------- 3. the tables
@dataclass(frozen=True)
class Column:
    """A table column: a text column (``metric`` None) or a metric column under a group header."""

    label: str
    metric: str | None = None
    group: str = ""
    merge: bool = False  # blank repeated values in consecutive rows (task names in Table 1)
    key: str = ""  # the CSV header, when the label is not machine-friendly


@dataclass(frozen=True)
class Cell:
    text: str = ""
    value: float | None = None
    std: float | None = None
    delta: float | None = None
    bold: bool = False


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...] = ()
    header: str | None = None  # a group row spanning the table ("Latent", "Linear")
    bold_group: Hashable = None  # rows compared for bold marks


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportOptions:
    """What the user chose; ``None`` means the layout's default."""

    metrics: tuple[str, ...] | None = None
    select: str = "best"
    select_by: str | None = None
    baseline_only: tuple[str, ...] = ()
    naive: bool = True
    tasks: tuple[str, ...] | None = None
    solvers: tuple[str, ...] | None = None


@dataclass
class Section:
    """One section's data handed to a layout: everything already selected."""

    title: str
    summary: pd.DataFrame  # every config of the section
    rows: pd.DataFrame  # the selected rows
    base: dict  # (task, solver, num_steps) -> the base solver's selected row
    naive: dict  # task -> (mean, std) of the naive inverse's PSNR
    metrics: tuple[str, ...]
    primary: str
    rule: str
    records: list[dict]  # ``rows`` as dicts, converted once


def format_number(value: float, metric: str, signed: bool = False) -> str:
    spec = METRICS[metric]
    v = float(value) * (100.0 if spec.percent else 1.0)
    text = f"{v:+.{spec.decimals}f}" if signed else f"{v:.{spec.decimals}f}"
    if float(text) == 0.0:  # no "-0.00"
        text = ("+" if signed else "") + text.lstrip("+-")
    return text


def format_setting(value) -> str:
    """A hyperparameter as shown: ``0.001``, ``1e-05``, ``500``; missing (or the ``_num``
    stand-in for missing, inf) as ``-``."""
    if isinstance(value, (float, int, np.floating, np.integer)) and _present(value):
        return "-" if math.isinf(float(value)) else format(float(value), "g")
    return "-" if not _present(value) else str(value)


def _method_cells(rec: Mapping, metrics: Sequence[str], base: Mapping | None, with_std: bool) -> list[Cell]:
    cells = []
    for m in metrics:
        value = rec.get(f"mean:{m}")
        value = float(value) if _present(value) else None
        std = rec.get(f"std:{m}") if with_std else None
        std = float(std) if _present(std) else None
        delta = None
        if base is not None and value is not None and _present(base.get(f"mean:{m}")):
            delta = value - float(base[f"mean:{m}"])
        cells.append(Cell(value=value, std=std, delta=delta))
    return cells


def _naive_cells(naive: tuple[float, float] | None, metrics: Sequence[str], with_std: bool) -> list[Cell]:
    cells = []
    for m in metrics:
        if m == "psnr" and naive is not None and _present(naive[0]):
            std = float(naive[1]) if with_std and _present(naive[1]) else None
            cells.append(Cell(value=float(naive[0]), std=std))
        else:
            cells.append(Cell())
    return cells


def _records(df: pd.DataFrame) -> list[dict]:
    return df.to_dict("records")


def _row_key(rec: Mapping, rule: str) -> tuple:
    variant = tuple(format_setting(rec.get(k)) for k in VARIANT_KEYS) if rule == "all" else ()
    return (rec["solver"], rec["regularizer"], _num(rec["num_steps"]), variant)


def _method_order(section: Section) -> list[tuple]:
    """Row keys of the section's methods, in paper order (latent, pixel; none, equi, equicon)."""
    keys = {_row_key(r, section.rule): r for r in section.records}
    return sorted(keys, key=lambda k: (method_sort_key(k[0], k[1], k[2]), k[3]))


def _labels(section: Section, steps_column: bool = False, lam_column: bool = False) -> dict[tuple, str]:
    """Row key -> label: ``Equi-DPS``, plus ``(N steps)`` when a method ran at several step counts,
    plus, under rule ``all``, the hyperparameters that vary for the method anywhere in the section
    (lambda left out where the table has a lambda column)."""
    recs = section.records
    steps: dict[tuple, set] = {}
    tuned: dict[tuple, set] = {}
    for r in recs:
        steps.setdefault((r["solver"], r["regularizer"]), set()).add(_num(r["num_steps"]))
        tuned.setdefault(_row_key(r, "best"), set()).update(k for k in str(r.get("tuned") or "").split(",") if k)
    out = {}
    for r in recs:
        label = method_label(r["solver"], r["regularizer"])
        if not steps_column and len(steps[(r["solver"], r["regularizer"])]) > 1:
            label += f" ({format_setting(r['num_steps'])} steps)"
        shown = [k for k in VARIANT_KEYS if k in tuned[_row_key(r, "best")] and not (lam_column and k == "lam")]
        if section.rule == "all" and shown:
            label += " (" + ", ".join(f"{k}={format_setting(r.get(k))}" for k in shown) + ")"
        out[_row_key(r, section.rule)] = label
    return out


def _base_for(section: Section, rec: Mapping) -> Mapping | None:
    if rec["regularizer"] == "none":
        return None
    return section.base.get((rec["task"], rec["solver"], _num(rec["num_steps"])))


def _notes(section: Section, labels: Mapping[tuple, str], with_lam_column: bool, bold_scope: str) -> tuple[str, ...]:
    metric = METRICS[section.primary].label
    direction = "lowest" if lower_is_better(section.primary) else "highest"
    notes = [
        "Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.",
        f"[+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best {bold_scope}.",
    ]
    if section.rule == "best":
        notes.append(f"Selection: per task and method, the config with the {direction} mean {metric} over its hyperparameters (ties: smallest lam, then step size).")
    else:
        notes.append(f"Selection: every config is a row; deltas against the base solver's config with the {direction} mean {metric}.")
    chosen: dict[str, list[str]] = {}
    failures: dict[str, list[str]] = {}
    for r in section.records:
        label = labels[_row_key(r, section.rule)]
        tuned = [k for k in str(r.get("tuned") or "").split(",") if k and not (with_lam_column and k == "lam")]
        if section.rule == "best" and tuned and int(r.get("n_variants", 1)) > 1:
            setting = ", ".join(f"{k}={format_setting(r.get(k))}" for k in tuned)
            chosen.setdefault(label, []).append(f"{task_label(r['task'])}: {setting} (of {int(r['n_variants'])})")
        bad = [f"{int(r[f'n_{s}'])} {s}" for s in ("diverged", "failed") if int(r.get(f"n_{s}", 0) or 0) > 0]
        if bad:
            failures.setdefault(label, []).append(f"{task_label(r['task'])}: {', '.join(bad)}")
    for label in sorted(chosen):
        notes.append(f"Chosen for {label}: " + "; ".join(chosen[label]) + ".")
    for label in sorted(failures):
        notes.append(f"Not in the means, {label}: " + "; ".join(failures[label]) + ".")
    return tuple(notes)


def _mark_bold(table: Table) -> Table:
    """Bold the best displayed value per metric column within each row's ``bold_group``.

    Values are compared as shown (rounded), so equal-looking values are all bold; a column with
    a single value, or only tied values, in a group has no best and gets no bold.
    """
    rows = list(table.rows)
    for j, col in enumerate(table.columns):
        if col.metric is None:
            continue
        groups: dict[Hashable, list[tuple[int, float]]] = {}
        for i, row in enumerate(rows):
            if row.header is None and row.cells[j].value is not None:
                groups.setdefault(row.bold_group, []).append((i, float(format_number(row.cells[j].value, col.metric))))
        for members in groups.values():
            values = [v for _, v in members]
            if len(set(values)) < 2:  # one value, or all tied: nothing is best
                continue
            best = min(values) if lower_is_better(col.metric) else max(values)
            for i, v in members:
                if v == best:
                    cells = list(rows[i].cells)
                    cells[j] = replace(cells[j], bold=True)
                    rows[i] = replace(rows[i], cells=tuple(cells))
    return replace(table, rows=tuple(rows))


def _per_task_table(section: Section, with_std: bool) -> Table:
    """Rows task x method (Table 1; with ``with_std`` Table 7's ``mean (std)``)."""
    metrics = section.metrics
    columns = (Column("Task", merge=True), Column("Method"), Column("λ", key="lam")) + tuple(Column(METRICS[m].label, m) for m in metrics) + (Column("n"),)
    labels = _labels(section, lam_column=True)
    by_task: dict[str, dict[tuple, dict]] = {}
    for r in section.records:
        by_task.setdefault(r["task"], {})[_row_key(r, section.rule)] = r
    order = _method_order(section)
    rows: list[Row] = []
    kinds = {TASK_KIND.get(t, "Other") for t in by_task}
    kind = None
    for task in sorted(by_task, key=task_sort_key):
        if len(kinds) > 1 and TASK_KIND.get(task, "Other") != kind:
            kind = TASK_KIND.get(task, "Other")
            rows.append(Row(header=kind))
        for key in order:
            rec = by_task[task].get(key)
            if rec is None:
                continue
            lam = format_setting(rec["lam"]) if rec["regularizer"] != "none" else "-"
            cells = [Cell(task_label(task)), Cell(labels[key]), Cell(lam)]
            cells += _method_cells(rec, metrics, _base_for(section, rec), with_std)
            cells.append(Cell(str(int(rec["n_ok"]))))
            rows.append(Row(tuple(cells), bold_group=task))
        if task in section.naive:
            cells = [Cell(task_label(task)), Cell(NAIVE_LABEL), Cell("-")] + _naive_cells(section.naive[task], metrics, with_std) + [Cell(str(section.naive[task][2]))]
            rows.append(Row(tuple(cells), bold_group=task))
    table = Table(section.title, columns, tuple(rows), _notes(section, labels, with_lam_column=True, bold_scope="per task and column"))
    return _mark_bold(table)


def _tasks_by_method(section: Section) -> Table:
    return _per_task_table(section, with_std=False)


def _mean_std(section: Section) -> Table:
    return _per_task_table(section, with_std=True)


def _grouped_by_task(section: Section, space_groups: bool, steps_column: bool, task_group: Callable[[str], tuple[str, str]]) -> Table:
    """Rows methods, column groups per task (Tables 2-4). ``task_group(task, metric)`` names a
    column's (group, label)."""
    metrics = section.metrics
    tasks = sorted(set(section.rows["task"]), key=task_sort_key)
    columns = [Column("Method")] + ([Column("Steps")] if steps_column else [])
    for task in tasks:
        for m in metrics:
            group, label = task_group(task, m)
            columns.append(Column(label, m, group))
    labels = _labels(section, steps_column=steps_column)
    cells_of: dict[tuple, dict[str, dict]] = {}
    for r in section.records:
        cells_of.setdefault(_row_key(r, section.rule), {})[r["task"]] = r
    rows: list[Row] = []
    space = None
    for key in _method_order(section):
        this_space = SOLVER_SPACE.get(key[0], "other")
        if space_groups and this_space != space:
            space = this_space
            rows.append(Row(header=SPACE_LABELS[space]))
        cells = [Cell(labels[key])] + ([Cell(format_setting(key[2]))] if steps_column else [])
        for task in tasks:
            rec = cells_of[key].get(task)
            cells += _method_cells(rec, metrics, _base_for(section, rec), False) if rec else [Cell() for _ in metrics]
        rows.append(Row(tuple(cells)))
    if section.naive:
        if space_groups:
            rows.append(Row(header="Reference"))
        cells = [Cell(NAIVE_LABEL)] + ([Cell("-")] if steps_column else [])
        for task in tasks:
            cells += _naive_cells(section.naive.get(task), metrics, False)
        rows.append(Row(tuple(cells)))
    table = Table(section.title, tuple(columns), tuple(rows), _notes(section, labels, with_lam_column=False, bold_scope="per column"))
    return _mark_bold(table)


def _image_task_group(task: str, metric: str) -> tuple[str, str]:
    return task_label(task), METRICS[metric].label


def _pde_task_group(task: str, metric: str) -> tuple[str, str]:
    problem, direction = pde_parts(task)
    return problem, (direction or METRICS[metric].label) if metric == "rel_l2" else f"{direction} {METRICS[metric].label}".strip()


def _methods_by_tasks(section: Section) -> Table:
    return _grouped_by_task(section, space_groups=True, steps_column=False, task_group=_image_task_group)


def _pde(section: Section) -> Table:
    return _grouped_by_task(section, space_groups=False, steps_column=True, task_group=_pde_task_group)


def _is_pde(task) -> bool:
    return str(task).startswith(PDE_PREFIX)


@dataclass(frozen=True)
class Layout:
    """A table layout: how one section becomes a table, and its defaults."""

    build: Callable[[Section], Table]
    metrics: tuple[str, ...]
    primary: str
    sections: tuple[str, ...]  # columns that split the data into separate tables
    tasks: Callable[[str], bool]
    naive: bool  # whether the naive inverse's row is meaningful here
    description: str


LAYOUTS: dict[str, Layout] = {
    "tasks-by-method": Layout(_tasks_by_method, ("lpips", "fid", "psnr", "ssim"), "psnr", ("dataset", "sigma_y"), lambda t: not _is_pde(t), True, "Table 1: rows task x method, columns LPIPS, FID, PSNR, SSIM"),
    "methods-by-tasks": Layout(_methods_by_tasks, ("lpips", "fid", "psnr", "ssim"), "psnr", ("dataset", "sigma_y"), lambda t: not _is_pde(t), True, "Tables 2-3: rows methods (latent / pixel), column groups per task"),
    "mean-std": Layout(_mean_std, ("lpips", "psnr", "ssim"), "psnr", ("dataset", "sigma_y"), lambda t: not _is_pde(t), True, "Table 7: mean (std) per task x method"),
    "pde": Layout(_pde, ("rel_l2",), "rel_l2", ("sigma_y",), _is_pde, False, "Table 4: relative L2 per PDE forward / inverse problem"),
}


def _section_title(keys: Sequence[str], values: Sequence) -> str:
    parts = []
    for k, v in zip(keys, values):
        if k == "sigma_y":
            parts.append(f"sigma_y = {format_setting(v)}")
        else:
            parts.append(f"{k} {format_setting(v)}")
    return ", ".join(parts)


def _naive_stats(results: pd.DataFrame) -> dict:
    """task -> (mean, std, n) of the naive inverse's PSNR over the distinct (sample, seed) pairs."""
    if "naive_psnr" not in results or results.empty:
        return {}
    df = results[["task", "sample_id", "seed", "naive_psnr"]].copy()
    df["naive_psnr"] = pd.to_numeric(df["naive_psnr"], errors="coerce")
    df = df.dropna(subset=["naive_psnr"])
    if df.empty:
        return {}
    per_image = df.groupby(["task", "sample_id", "seed"], dropna=False, sort=True)["naive_psnr"].mean()
    out = {}
    for task, values in per_image.groupby(level="task", sort=True):
        out[task] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan"), int(len(values)))
    return out


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


def build_tables(results: pd.DataFrame, sets: pd.DataFrame | None, layout: str, options: ReportOptions = ReportOptions()) -> list[Table]:
    """The tables of ``layout`` for these rows: one per section (dataset, noise level)."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {sorted(LAYOUTS)}")
    spec = LAYOUTS[layout]
    metrics = tuple(options.metrics or spec.metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; allowed: {sorted(METRICS)}")
    primary = options.select_by or spec.primary
    all_rows = prepare_results(_filter(results, spec, options))
    summary = _summarize_prepared(all_rows, sets)
    if summary.empty:
        return []
    section_keys = list(spec.sections)
    keys = [*section_keys, *METHOD_KEYS]
    best = select(summary, "best", primary, keys)
    selected = best if options.select == "best" else select(summary, options.select, primary, keys)
    tables = []
    for values, part in selected.groupby(section_keys, dropna=False, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        in_section = section_mask(summary, section_keys, values)
        base = {
            (r["task"], r["solver"], _num(r["num_steps"])): r
            for r in _records(best[section_mask(best, section_keys, values) & (best["regularizer"] == "none")])
        }
        naive = _naive_stats(all_rows[section_mask(all_rows, section_keys, values)]) if spec.naive and options.naive else {}
        section = Section(_section_title(section_keys, values), summary[in_section], part, base, naive, metrics, primary, options.select, part.to_dict("records"))
        tables.append(spec.build(section))
    return tables


def section_mask(df: pd.DataFrame, keys: Sequence[str], values: Sequence) -> pd.Series:
    """Rows of ``df`` whose ``keys`` equal ``values`` (a missing value matches missing)."""
    mask = pd.Series(True, index=df.index)
    for k, v in zip(keys, values):
        mask &= df[k].isna() if not _present(v) else (df[k] == v)
    return mask


# --------------------------------------------------------------------------------- 4. formats
def _cell_parts(cell: Cell, col: Column) -> tuple[str, str, str]:
    """(value, std, delta) texts of a metric cell; value "-" when missing."""
    if cell.value is None:
        return "-", "", ""
    value = format_number(cell.value, col.metric)
    std = format_number(cell.std, col.metric) if cell.std is not None else ""
    delta = format_number(cell.delta, col.metric, signed=True) if cell.delta is not None else ""
    if METRICS[col.metric].percent:  # deltas stay in percentage points, without a sign
        value += "%"
        std = std + "%" if std else ""
    return value, std, delta


def _cell_text(cell: Cell, col: Column, bold: Callable[[str], str], escape: Callable[[str], str], delta: Callable[[str], str]) -> str:
    if col.metric is None:
        return escape(cell.text)
    value, std, d = _cell_parts(cell, col)
    text = bold(escape(value)) if cell.bold else escape(value)
    if std:
        text += f" ({escape(std)})"
    if d:
        text += delta(escape(d))
    return text


def _merged(table: Table, texts: list[list[str] | None]) -> list[list[str] | None]:
    """Blank repeated values of ``merge`` columns in consecutive rows."""
    previous: dict[int, str] = {}
    out = []
    for row in texts:
        if row is None:
            previous = {}
            out.append(None)
            continue
        row = list(row)
        for j, col in enumerate(table.columns):
            if col.merge:
                if previous.get(j) == row[j]:
                    row[j] = ""
                else:
                    previous[j] = row[j]
        out.append(row)
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(table: Table) -> list[str]:
    headers = [_md_escape(f"{c.group} {c.label}".strip() if c.group else c.label) for c in table.columns]
    texts = [
        None if row.header else [_cell_text(cell, col, lambda s: f"**{s}**", _md_escape, lambda s: f" [{s}]") for cell, col in zip(row.cells, table.columns)]
        for row in table.rows
    ]
    texts = _merged(table, texts)
    body = [[f"*{_md_escape(row.header)}*"] + [""] * (len(headers) - 1) if t is None else t for row, t in zip(table.rows, texts)]
    widths = [max([len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(headers)]
    right = [c.metric is not None for c in table.columns]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"
    return [line(headers), sep] + [line(r) for r in body]


def render_markdown(tables: Sequence[Table]) -> str:
    """GitHub Markdown: a heading per section, a padded table, notes as a bullet list."""
    out: list[str] = []
    for table in tables:
        out += [f"### {table.title}", ""] + _md_table(table) + [""]
        out += [f"- {n}" for n in table.notes] + ([""] if table.notes else [])
    return "\n".join(out).rstrip("\n") + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "λ": r"$\lambda$", "|": r"$|$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _column_groups(columns: Sequence[Column]) -> list[tuple[str, int, int]]:
    """(group, first, last) runs of consecutive columns (0-based, inclusive)."""
    runs: list[tuple[str, int, int]] = []
    for j, c in enumerate(columns):
        if runs and runs[-1][0] == c.group and c.group:
            runs[-1] = (c.group, runs[-1][1], j)
        else:
            runs.append((c.group, j, j))
    return runs


def render_latex(tables: Sequence[Table]) -> str:
    """A booktabs ``table`` environment per section (needs ``\\usepackage{booktabs}``)."""
    out: list[str] = []
    for table in tables:
        cols = table.columns
        n = len(cols)
        spec = "".join("r" if c.metric else "l" for c in cols)
        out += [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(table.title) + "}", r"\begin{tabular}{" + spec + "}", r"\toprule"]
        runs = _column_groups(cols)
        if any(g for g, _, _ in runs):
            head, rules = [], []
            for g, a, b in runs:
                if g:
                    head.append(r"\multicolumn{" + str(b - a + 1) + "}{c}{" + latex_escape(g) + "}")
                    rules.append(r"\cmidrule(lr){" + f"{a + 1}-{b + 1}" + "}")
                else:
                    head += [""] * (b - a + 1)
            out.append(" & ".join(head) + r" \\")
            out.append(" ".join(rules))
        out.append(" & ".join(latex_escape(c.label) for c in cols) + r" \\")
        out.append(r"\midrule")
        texts = [
            None if row.header else [_cell_text(cell, col, lambda s: r"\textbf{" + s + "}", latex_escape, lambda s: r" {\scriptsize[" + s + "]}") for cell, col in zip(row.cells, cols)]
            for row in table.rows
        ]
        for row, t in zip(table.rows, _merged(table, texts)):
            if t is None:
                out.append(r"\multicolumn{" + str(n) + "}{l}{\\textit{" + latex_escape(row.header) + r"}} \\")
            else:
                out.append(" & ".join(t) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if table.notes:
            out += [r"\par\smallskip", r"{\footnotesize\raggedright"] + [latex_escape(note) + r"\par" for note in table.notes] + ["}"]
        out += [r"\end{table}", ""]
    return "\n".join(out)


def render_html(tables: Sequence[Table]) -> str:
    """A standalone HTML page, a ``<table>`` per section with spanning task headers."""
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>EquiBench report</title>',
        "<style>table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
        "td.num{text-align:right}th{text-align:center}small{color:#666}</style>",
        "</head><body>",
    ]
    for table in tables:
        cols = table.columns
        out += [f"<h3>{esc(table.title)}</h3>", "<table>", "<thead>"]
        runs = _column_groups(cols)
        if any(g for g, _, _ in runs):
            out.append("<tr>" + "".join(f'<th colspan="{b - a + 1}">{esc(g)}</th>' if g else "<th></th>" * (b - a + 1) for g, a, b in runs) + "</tr>")
        out.append("<tr>" + "".join(f"<th>{esc(c.label)}</th>" for c in cols) + "</tr>")
        out += ["</thead>", "<tbody>"]
        texts = [
            None if row.header else [_cell_text(cell, col, lambda s: f"<b>{s}</b>", esc, lambda s: f" <small>[{s}]</small>") for cell, col in zip(row.cells, cols)]
            for row in table.rows
        ]
        for row, t in zip(table.rows, _merged(table, texts)):
            if t is None:
                out.append(f'<tr><td colspan="{len(cols)}"><i>{esc(row.header)}</i></td></tr>')
            else:
                out.append("<tr>" + "".join(f'<td class="num">{x}</td>' if c.metric else f"<td>{x}</td>" for x, c in zip(t, cols)) + "</tr>")
        out += ["</tbody>", "</table>"]
        if table.notes:
            out += ["<ul>"] + [f"<li>{esc(n)}</li>" for n in table.notes] + ["</ul>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _csv_number(value: float | None) -> str:
    return "" if value is None else format(float(value), ".10g")


def render_csv(tables: Sequence[Table]) -> str:
    """Machine-readable: one line per table row with raw numbers (``<col>``, ``<col> std``,
    ``<col> delta``), the section and the row group as columns; no bold, no rounding."""
    fields: list[str] = ["section", "group"]
    records: list[dict] = []
    for table in tables:
        group = ""
        names = [c.key or f"{c.group} {c.label}".strip() for c in table.columns]
        has_std = {j for j, c in enumerate(table.columns) if any(r.header is None and r.cells[j].std is not None for r in table.rows)}
        has_delta = {j for j, c in enumerate(table.columns) if any(r.header is None and r.cells[j].delta is not None for r in table.rows)}
        for j, name in enumerate(names):
            for f in [name] + ([f"{name} std"] if j in has_std else []) + ([f"{name} delta"] if j in has_delta else []):
                if f not in fields:
                    fields.append(f)
        for row in table.rows:
            if row.header is not None:
                group = row.header
                continue
            rec = {"section": table.title, "group": group}
            for j, (cell, col, name) in enumerate(zip(row.cells, table.columns, names)):
                if col.metric is None:
                    rec[name] = cell.text
                else:
                    rec[name] = _csv_number(cell.value)
                    if j in has_std:
                        rec[f"{name} std"] = _csv_number(cell.std)
                    if j in has_delta:
                        rec[f"{name} delta"] = _csv_number(cell.delta)
            records.append(rec)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


@dataclass(frozen=True)
class Format:
    render: Callable[[Sequence[Table]], str]
    extension: str


FORMATS: dict[str, Format] = {
    "md": Format(render_markdown, "md"),
    "latex": Format(render_latex, "tex"),
    "html": Format(render_html, "html"),
    "csv": Format(render_csv, "csv"),
}


def render(tables: Sequence[Table], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(FORMATS)}")
    return FORMATS[fmt].render(tables)


# ------------------------------------------------------------------------------- entry points
def load_store(store_dir, runs: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, sets) of the store, optionally only ``runs``; a missing store is an error."""
    from orchestrator import store

    if not Path(store_dir).is_dir():
        raise FileNotFoundError(f"no store at {store_dir}")
    run = list(runs) if runs else None
    results = store.load(store_dir, run=run)
    if results.empty:
        known = store.list_runs(store_dir)
        raise ValueError(f"no result rows in {store_dir}" + (f" for runs {sorted(run)}" if run else "") + f"; runs in the store: {known or 'none'}")
    return results, store.load_sets(store_dir, run=run)


def make_report(results: pd.DataFrame, sets: pd.DataFrame | None, layout: str, fmt: str, options: ReportOptions = ReportOptions()) -> str:
    """One layout in one format, as text."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(FORMATS)}")
    tables = build_tables(results, sets, layout, options)
    if not tables:
        raise ValueError(f"no rows for layout {layout!r} ({LAYOUTS[layout].description}) after filters")
    return render(tables, fmt)


def write_report(results: pd.DataFrame, sets: pd.DataFrame | None, out_dir, layouts: Iterable[str], formats: Iterable[str], options: ReportOptions = ReportOptions()) -> list[Path]:
    """Write ``<out>/<layout>.<ext>`` for every layout x format; returns the paths.

    A layout with no rows (``pde`` on an image-only store) is skipped; no rows for any layout is
    an error.
    """
    layouts, formats = list(layouts), list(formats)
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(FORMATS)}")
    built = {layout: build_tables(results, sets, layout, options) for layout in layouts}
    if not any(built.values()):
        raise ValueError(f"no rows for layouts {layouts} after filters")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for layout, tables in built.items():
        for fmt in formats if tables else []:
            path = out / f"{layout}.{FORMATS[fmt].extension}"
            path.write_text(render(tables, fmt), encoding="utf-8")
            paths.append(path)
    return paths


#: The demo's comparison columns: quality, then cost.
COMPARISON_METRICS = ("psnr", "ssim", "lpips", "wall_s")


def print_comparison(df: pd.DataFrame, sets: pd.DataFrame | None = None) -> str:
    """A compact Markdown table of PSNR/SSIM/LPIPS/seconds per image per task x method (best
    lambda per method by PSNR), with deltas against the base solver; ``make demo`` prints it."""
    options = ReportOptions(metrics=COMPARISON_METRICS)
    tables = build_tables(df, sets, "tasks-by-method", options)
    if not tables:
        return "(no image-task rows to compare)\n"
    return render_markdown(tables)


def write_demo_report(store_dir, out_dir, runs: Sequence[str] | None = None) -> Path:
    """Write ``<out_dir>/demo.md`` (comparison, Table-2 and Table-7 layouts, figure links) and
    every figure under ``<out_dir>/figures``; returns the Markdown file's path."""
    from orchestrator import figures

    results, sets = load_store(store_dir, runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_paths = figures.write_figures(results, store_dir, out / "figures")
    runs = sorted(set(results["run_id"].dropna().astype(str)))
    lines = [
        "# EquiBench demo report",
        "",
        f"Runs: {', '.join(runs)}. Rows: {len(results)} images ({int((results['status'] == 'ok').sum())} ok).",
        "",
        "## Comparison",
        "",
        print_comparison(results, sets).rstrip("\n"),
        "",
        "## Table 2 layout (methods x tasks)",
        "",
        render_markdown(build_tables(results, sets, "methods-by-tasks")).rstrip("\n"),
        "",
        "## Table 7 layout (mean (std))",
        "",
        render_markdown(build_tables(results, sets, "mean-std")).rstrip("\n"),
        "",
        "## Figures",
        "",
    ]
    for path in sorted(p for p in fig_paths if p.suffix == ".png"):
        rel = path.relative_to(out).as_posix()
        lines += [f"![{path.stem}]({rel})", ""]
    md = out / "demo.md"
    md.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    return md
