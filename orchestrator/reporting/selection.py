"""Which configs become table rows: one per *method* (solver, regularizer, steps) and task.

A sweep usually holds several lambdas / step sizes / MPE choices per method; the ``best`` rule
(default) keeps the config with the best mean of the primary metric (PSNR for images, relative L2
for PDEs; direction from ``schema.LOWER_IS_BETTER``), ties going to the smallest lambda, then step
size, then config id. The same rule applies to the baselines (regularizer ``none``) and the
classical solvers, so every method is tuned alike. ``all`` keeps every config as its own row.

Selecting on the images a table reports makes its best rows optimistic; ``select_across`` picks
on one split's summary (e.g. ``embedded/tune``) and returns the matching configs of another
(``embedded/report``), matched on every config attribute but the dataset.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd

from orchestrator.reporting.labels import METRICS, format_setting, lower_is_better, present
from orchestrator.reporting.summary import CONFIG_ATTRS

__all__ = ["METHOD_KEYS", "VARIANT_KEYS", "SELECTIONS", "select", "select_across", "section_mask"]

#: A method is one row of a table; a variant is one hyperparameter setting of it.
METHOD_KEYS = ("task", "solver", "regularizer", "num_steps")
VARIANT_KEYS = ("lam", "step_size", "mpe", "group", "lam_schedule", "prior")


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


def _match_keys(df: pd.DataFrame) -> pd.Series:
    cols = [c for c in CONFIG_ATTRS if c != "dataset"]
    return pd.Series([tuple(format_setting(v) for v in row) for row in df[cols].itertuples(index=False, name=None)],
                     index=df.index, dtype=object)


def select_across(select_summary: pd.DataFrame, report_summary: pd.DataFrame, keys: Sequence[str], primary: str
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rule ``best`` on ``select_summary`` per ``keys`` (no ``dataset`` among them), applied to every
    dataset of ``report_summary``: (the report configs of the chosen settings, the chosen settings
    that no report config matches). Report rows carry ``select_score`` (the selection split's
    mean primary metric), ``select_n`` (its images) and the selection's ``tuned`` / ``n_variants``."""
    keys = [k for k in keys if k != "dataset"]
    chosen = select(select_summary, "best", primary, keys)
    if chosen.empty or report_summary.empty:
        return report_summary.iloc[0:0].assign(select_score=[], select_n=[], tuned=[], n_variants=[]), chosen
    chosen = chosen.assign(_key=_match_keys(chosen))
    info = {k: (r[f"mean:{primary}"] if f"mean:{primary}" in r else np.nan, int(r["n_ok"]), r["tuned"], int(r["n_variants"]))
            for k, r in zip(chosen["_key"], chosen.to_dict("records"))}
    rep = report_summary.assign(_key=_match_keys(report_summary))
    rep = rep[rep["_key"].isin(set(info))]
    rep = rep.assign(select_score=[float(info[k][0]) for k in rep["_key"]], select_n=[info[k][1] for k in rep["_key"]],
                     tuned=[info[k][2] for k in rep["_key"]], n_variants=[info[k][3] for k in rep["_key"]])
    missing = chosen[~chosen["_key"].isin(set(rep["_key"]))].drop(columns="_key")
    rep = rep.drop(columns="_key").sort_values(["dataset", *keys, "config_id"], kind="mergesort", na_position="last")
    return rep.reset_index(drop=True), missing.reset_index(drop=True)


def section_mask(df: pd.DataFrame, keys: Sequence[str], values: Sequence) -> pd.Series:
    """Rows of ``df`` whose ``keys`` equal ``values`` (a missing value matches missing)."""
    mask = pd.Series(True, index=df.index)
    for k, v in zip(keys, values):
        mask &= df[k].isna() if not present(v) else (df[k] == v)
    return mask
