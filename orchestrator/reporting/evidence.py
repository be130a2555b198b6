"""Per-image evidence behind a table's numbers: intervals of means and of paired deltas, influence.

Rows pair across configs on the image: (dataset, task, sigma_y, sample_id) within a section, and
for a regularizer comparison of one solver setting also on the seed (with shared solver noise the
two rows then drew the same sampler noise). The baseline-vs-classical comparison averages each
side over its seeds per image first (classical solvers need not share the seeds). Intervals come
from ``orchestrator.stats`` (cluster bootstrap over the rows' ``cluster``); every interval counts
images as distinct sample ids.
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import pandas as pd

from orchestrator import stats
from orchestrator.reporting.labels import INFLUENCE_COLUMNS, METRICS, present

__all__ = ["Evidence", "noise_paired"]

PAIR_KEYS = ("sample_id", "seed")


def noise_paired(rec: Mapping, base: Mapping) -> bool:
    """Whether a regularized row and its baseline drew the same sampler noise: both run with
    ``solver_noise: shared`` and the same solver setting (solver, step size, steps)."""
    return (rec.get("solver_noise") == "shared" and base.get("solver_noise") == "shared"
            and rec.get("solver") == base.get("solver") and rec.get("num_steps") == base.get("num_steps")
            and np.isclose(float(rec.get("step_size") or 0.0), float(base.get("step_size") or 0.0)))


class Evidence:
    """The ok rows of a report, grouped by setting, with cached intervals."""

    def __init__(self, rows: pd.DataFrame, level: float = stats.LEVEL, n_resamples: int = stats.N_RESAMPLES, seed: int = stats.SEED):
        ok = rows[rows["status"] == "ok"] if len(rows) else rows
        self._by = {s: g.reset_index(drop=True) for s, g in ok.groupby("setting", sort=False)} if len(ok) else {}
        self.level, self.n_resamples, self.seed = level, n_resamples, seed
        self._cache: dict = {}

    def _kw(self) -> dict:
        return {"level": self.level, "n_resamples": self.n_resamples, "seed": self.seed}

    def rows(self, setting: str) -> pd.DataFrame:
        return self._by.get(setting, pd.DataFrame(columns=["sample_id", "seed", "cluster", "cluster_given"]))

    def clusters_given(self, setting: str) -> bool:
        df = self.rows(setting)
        return bool(len(df)) and bool(df["cluster_given"].all())

    @staticmethod
    def _with_images(iv: stats.Interval, sample_ids) -> stats.Interval:
        return dataclasses.replace(iv, n_images=int(pd.Series(list(sample_ids)).nunique()))

    def mean(self, setting: str, metric: str) -> stats.Interval | None:
        """The interval of a setting's mean ``metric`` over its ok images (per-image metrics only)."""
        if METRICS.get(metric) is not None and METRICS[metric].source != "image":
            return None
        key = ("mean", setting, metric)
        if key not in self._cache:
            df = self.rows(setting)
            df = df[np.isfinite(df[metric].astype(float))] if metric in df else df.iloc[0:0]
            iv = None
            if len(df):
                iv = stats.mean_interval(df[metric].to_numpy(float), list(df["cluster"]), **self._kw())
                iv = self._with_images(iv, df["sample_id"])
            self._cache[key] = iv
        return self._cache[key]

    def delta(self, setting: str, base: str, metric: str, per_image: bool = False) -> stats.Interval | None:
        """Paired ``setting - base`` on ``metric``: rows matched on (sample_id, seed), or with
        ``per_image`` each side averaged over its seeds and matched on sample_id."""
        if METRICS.get(metric) is not None and METRICS[metric].source != "image":
            return None
        key = ("delta", setting, base, metric, per_image)
        if key not in self._cache:
            a, b = self._side(setting, metric, per_image), self._side(base, metric, per_image)
            on = ["sample_id"] if per_image else list(PAIR_KEYS)
            pairs = a.merge(b, on=on, suffixes=("", "_b"))
            iv = None
            if len(pairs):
                iv = stats.paired_delta(pairs["v"].to_numpy(float), pairs["v_b"].to_numpy(float), list(pairs["cluster"]), **self._kw())
                iv = self._with_images(iv, pairs["sample_id"])
            self._cache[key] = iv
        return self._cache[key]

    def _side(self, setting: str, metric: str, per_image: bool) -> pd.DataFrame:
        df = self.rows(setting)
        if metric not in df or not len(df):
            return pd.DataFrame(columns=[*PAIR_KEYS, "cluster", "v"])
        df = df[[*PAIR_KEYS, "cluster", metric]].rename(columns={metric: "v"})
        df = df[np.isfinite(df["v"].astype(float))]
        if per_image:
            df = df.groupby("sample_id", as_index=False, sort=True).agg(cluster=("cluster", "first"), v=("v", "mean"))
        return df

    def counts(self, setting: str) -> tuple[int, int]:
        """(distinct images, distinct clusters) among a setting's ok rows."""
        df = self.rows(setting)
        return int(df["sample_id"].nunique()), int(df["cluster"].nunique())

    def influence(self, setting: str) -> tuple[float | None, str | None]:
        """(mean influence, which ratio): ``influence_grad`` where recorded, else ``influence_obj``;
        (None, None) when the setting recorded neither."""
        df = self.rows(setting)
        for col, kind in zip(INFLUENCE_COLUMNS, ("grad", "obj")):
            if col in df:
                v = pd.to_numeric(df[col], errors="coerce").astype(float)
                v = v[np.isfinite(v)]
                if len(v):
                    return float(v.mean()), kind
        return None, None

    def naive(self, rows: pd.DataFrame) -> dict:
        """task -> (mean, std, n, Interval) of the naive inverse's PSNR over the distinct
        (sample, seed) pairs of ``rows`` (their mean over configs)."""
        if "naive_psnr" not in rows or rows.empty:
            return {}
        df = rows[["task", "sample_id", "seed", "cluster", "naive_psnr"]].copy()
        df["naive_psnr"] = pd.to_numeric(df["naive_psnr"], errors="coerce")
        df = df.dropna(subset=["naive_psnr"])
        if df.empty:
            return {}
        per_image = df.groupby(["task", "sample_id", "seed"], dropna=False, sort=True).agg(
            naive_psnr=("naive_psnr", "mean"), cluster=("cluster", "first")).reset_index()
        out = {}
        for task, part in per_image.groupby("task", sort=True):
            values = part["naive_psnr"].to_numpy(float)
            iv = self._with_images(stats.mean_interval(values, list(part["cluster"]), **self._kw()), part["sample_id"])
            std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            out[task] = (float(values.mean()), std, int(len(values)), iv)
        return out


def finite(value) -> float | None:
    return float(value) if present(value) and np.isfinite(float(value)) else None
