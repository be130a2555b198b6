"""Store rows made uniform, and one summary row per setting (a config up to its seed).

``prepare_results`` fills every column a report reads, keeps one row per (config, sample, seed)
across runs (the ok row, then the newest), names each row's ``setting`` (seeds pool), reads
``solver_noise`` and ``operator`` from ``config_json`` (a missing ``solver_noise`` is the old
default, ``per_config``), and gives every row a ``cluster``: the stored one, or, where the store has
none (older runs), the image itself (``cluster_given`` False).

``summarize`` averages per setting: ``mean:<metric>`` / ``std:<metric>`` (ddof=1) over the images
with status ok; ``diverged`` and ``failed`` images are counted, never averaged. FID/KID come from
each config's newest ok row of the sets table (averaged over seeds).
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from orchestrator.reporting.labels import IMAGE_COLUMNS, METRICS

__all__ = ["CONFIG_ATTRS", "SETTING_ATTRS", "prepare_results", "summarize", "summarize_prepared", "prepare_sets"]

CONFIG_ATTRS = ("dataset", "prior", "task", "sigma_y", "num_steps", "solver", "regularizer", "mpe", "group", "lam_schedule", "lam", "step_size")
#: a setting is a config up to its seed: the config's attributes and its solver-noise mode
SETTING_ATTRS = CONFIG_ATTRS + ("solver_noise",)
OLD_NOISE_DEFAULT = "per_config"


def _config_fields(config_json: pd.Series) -> tuple[pd.Series, pd.Series]:
    """(solver_noise, operator) per row from ``config_json`` (parsed once per distinct text)."""
    parsed: dict[str, dict] = {}
    for text in config_json.dropna().unique():
        try:
            doc = json.loads(text)
        except ValueError:  # an unreadable config_json reads as absent
            doc = {}
        parsed[text] = doc if isinstance(doc, dict) else {}
    docs = config_json.map(lambda t: parsed.get(t, {}) if isinstance(t, str) else {})
    noise = docs.map(lambda d: d.get("solver_noise") or OLD_NOISE_DEFAULT)
    operator = docs.map(lambda d: d.get("operator"))
    return noise.astype(object), operator.astype(object)


def prepare_results(results: pd.DataFrame) -> pd.DataFrame:
    """Store rows made uniform (see the module docstring)."""
    df = results.copy()
    for col in ("config_id", "sample_id", "seed", "status", "regularizer", "run_id", "started_at", "cluster", "config_json",
                *CONFIG_ATTRS, *IMAGE_COLUMNS):
        if col not in df:
            df[col] = None
    df["regularizer"] = df["regularizer"].fillna("none")
    df["config_id"] = df["config_id"].fillna("").astype(str)
    df["status"] = df["status"].fillna("failed")
    for col in IMAGE_COLUMNS + ("sigma_y", "lam", "step_size"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    df["solver_noise"], df["operator"] = _config_fields(df["config_json"]) if len(df) else (df["config_json"], df["config_json"])
    df["cluster_given"] = df["cluster_given"].astype(bool) if "cluster_given" in df else df["cluster"].notna()  # prepared twice: kept
    image = "image:" + df["sample_id"].astype(str)
    df["cluster"] = df["cluster"].astype(object).where(df["cluster_given"], image)
    # one row per (config, sample, seed) across runs: the ok row, then the newest
    df = df.assign(_ok=(df["status"] == "ok"))
    df = df.sort_values(["_ok", "started_at", "run_id"], ascending=False, kind="mergesort", na_position="last")
    df = df.drop_duplicates(["config_id", "sample_id", "seed"], keep="first").drop(columns="_ok")
    # seeds pool into one setting, named by the config of the smallest seed
    df = df.sort_values(["seed", "config_id"], kind="mergesort", na_position="last")
    df["setting"] = df.groupby(list(SETTING_ATTRS), dropna=False, sort=False)["config_id"].transform("first") if len(df) else df["config_id"]
    return df.sort_values(["config_id", "sample_id", "seed"], kind="mergesort", na_position="last").reset_index(drop=True)


def prepare_sets(sets: pd.DataFrame | None) -> pd.DataFrame:
    """Set metrics per config: ``mean:<metric>`` / ``std:<metric>`` of the newest ok row."""
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
    """One row per setting: attributes, ``mean:<metric>`` / ``std:<metric>``, image counts.

    ``config_id`` names the setting by its smallest seed's config; ``config_ids`` lists them all;
    ``n_ok``, ``n_diverged`` and ``n_failed`` count images (anything neither ok nor diverged counts
    as failed). Set metrics are the mean over the setting's configs.
    """
    return summarize_prepared(prepare_results(results), sets)


def summarize_prepared(df: pd.DataFrame, sets: pd.DataFrame | None) -> pd.DataFrame:
    attrs = list(SETTING_ATTRS) + ["operator"]
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
    set_metrics = df[["config_id", "setting"]].drop_duplicates().merge(prepare_sets(sets), on="config_id", how="inner")
    set_metrics = set_metrics.drop(columns="config_id").groupby("setting", sort=True).mean()
    summary = summary.join(set_metrics, how="left").rename_axis("config_id").reset_index()
    summary["regularizer"] = summary["regularizer"].fillna("none")
    return summary.sort_values("config_id", kind="mergesort").reset_index(drop=True)
