"""Bootstrap intervals over images, resampling by cluster: the uncertainty every report shows.

Images that share a source (crops of one photo, a block of seeds) are not independent, so the
resampling unit is the *cluster*: a resample draws as many clusters as there are, with
replacement, and takes all of their images (the cluster bootstrap). Without cluster labels every
value is its own cluster (the ordinary iid bootstrap). Intervals are percentile intervals of the
resampled means (default 95%, 10,000 resamples, seed 0), so the same data always give the same
interval.

* ``mean_interval(values, clusters)``: the mean and its interval.
* ``paired_delta(method, baseline, clusters)``: the delta per image (``method - baseline`` on the
  same image) and the interval of its mean; a constant per-image shift gives a zero-width interval.
* ``unpaired_delta(...)``: the two sides resampled independently (what ignoring the pairing
  would claim; for comparison only).

Every result is an ``Interval`` carrying ``n_images`` (values used) and ``n_clusters``. Fewer than
two clusters have no interval (``lo``/``hi`` are NaN): resampling one cluster only ever returns it.
Resampled means are computed in blocks of resamples, vectorised over clusters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Interval", "N_RESAMPLES", "LEVEL", "SEED", "mean_interval", "paired_delta", "unpaired_delta",
           "bootstrap_means", "cluster_codes"]

N_RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0
#: about this many cluster draws per block of resamples (bounds memory for large sets)
_BLOCK = 2_000_000


@dataclass(frozen=True)
class Interval:
    """A mean (or mean delta) with its bootstrap percentile interval."""

    estimate: float
    lo: float
    hi: float
    n_images: int
    n_clusters: int
    clustered: bool  # cluster labels were given (False: each image its own cluster)
    level: float = LEVEL
    n_resamples: int = N_RESAMPLES

    @property
    def defined(self) -> bool:
        return not (math.isnan(self.lo) or math.isnan(self.hi))

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2 if self.defined else math.nan

    @property
    def excludes_zero(self) -> bool:
        """The interval lies entirely above or below 0 (never true without an interval)."""
        return self.defined and (self.lo > 0 or self.hi < 0)


def cluster_codes(clusters: Sequence | None, n: int) -> tuple[np.ndarray, int, bool]:
    """(integer code per value, number of clusters, labels given); ``None``: one cluster each."""
    if clusters is None:
        return np.arange(n), n, False
    labels = np.asarray([str(c) for c in clusters], dtype=object)
    if len(labels) != n:
        raise ValueError(f"{len(labels)} cluster labels for {n} values")
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64), int(codes.max()) + 1 if n else 0, True


def _clean(values, clusters) -> tuple[np.ndarray, list | None]:
    v = np.asarray(values, dtype=float).ravel()
    keep = np.isfinite(v)
    if clusters is not None:
        clusters = [c for c, k in zip(list(clusters), keep) if k]
    return v[keep], clusters


def bootstrap_means(values, clusters: Sequence | None = None, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """The ``n_resamples`` cluster-bootstrap means of ``values`` (finite values only).

    Each resample draws K of the K clusters with replacement and averages all their images
    (clusters of different sizes weigh by size). Values are centred on their mean first, so equal
    values give exactly equal resampled means.
    """
    v, clusters = _clean(values, clusters)
    if v.size == 0:
        return np.full(n_resamples, np.nan)
    codes, k, _ = cluster_codes(clusters, v.size)
    centre = float(v.mean())
    sums = np.bincount(codes, weights=v - centre, minlength=k)
    counts = np.bincount(codes, minlength=k).astype(float)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples)
    block = max(1, _BLOCK // max(k, 1))
    for start in range(0, n_resamples, block):
        m = min(block, n_resamples - start)
        idx = rng.integers(0, k, size=(m, k))
        out[start:start + m] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    return out + centre


def _interval(boot: np.ndarray, estimate: float, n: int, k: int, clustered: bool, level: float, n_resamples: int) -> Interval:
    if k < 2 or not np.isfinite(boot).all():
        lo = hi = math.nan
    else:
        alpha = (1.0 - level) / 2.0
        lo, hi = (float(q) for q in np.quantile(boot, [alpha, 1.0 - alpha]))
    return Interval(float(estimate), lo, hi, int(n), int(k), clustered, level, n_resamples)


def _check(level: float, n_resamples: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")


def mean_interval(values, clusters: Sequence | None = None, *, level: float = LEVEL, n_resamples: int = N_RESAMPLES,
                  seed: int = SEED) -> Interval:
    """The mean of the finite ``values`` and its cluster-bootstrap percentile interval."""
    _check(level, n_resamples)
    v, cl = _clean(values, clusters)
    _, k, given = cluster_codes(cl, v.size)
    estimate = float(v.mean()) if v.size else math.nan
    boot = bootstrap_means(v, cl, n_resamples, seed) if k >= 2 else np.full(1, np.nan)
    return _interval(boot, estimate, v.size, k, given, level, n_resamples)


def paired_delta(method, baseline, clusters: Sequence | None = None, *, level: float = LEVEL,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """Mean of ``method[i] - baseline[i]`` (the same image i on both sides) with its interval;
    clusters resample the per-image deltas. Pairs with a non-finite side are left out."""
    m = np.asarray(method, dtype=float).ravel()
    b = np.asarray(baseline, dtype=float).ravel()
    if m.shape != b.shape:
        raise ValueError(f"paired values differ in length: {m.size} vs {b.size}")
    return mean_interval(m - b, clusters, level=level, n_resamples=n_resamples, seed=seed)


def unpaired_delta(method, baseline, clusters_method: Sequence | None = None, clusters_baseline: Sequence | None = None, *,
                   level: float = LEVEL, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> Interval:
    """``mean(method) - mean(baseline)`` with both sides resampled independently (the interval a
    comparison that ignores the pairing would report). ``n_images``/``n_clusters``: the smaller side."""
    _check(level, n_resamples)
    a, ca = _clean(method, clusters_method)
    b, cb = _clean(baseline, clusters_baseline)
    _, ka, given_a = cluster_codes(ca, a.size)
    _, kb, given_b = cluster_codes(cb, b.size)
    estimate = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    k = min(ka, kb)
    boot = (bootstrap_means(a, ca, n_resamples, seed) - bootstrap_means(b, cb, n_resamples, seed + 1)) if k >= 2 else np.full(1, np.nan)
    return _interval(boot, estimate, min(a.size, b.size), k, given_a and given_b, level, n_resamples)
