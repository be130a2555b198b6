"""Per-solver lambda ranges calibrated from the measured influence ratio (issue 12, section 3).

The influence ratio of a row, ``influence_grad = mean_t ||grad(lambda_t R)|| / ||grad(data)||``,
says whether the penalty is inert (``< INERT``), dominant (``> DOMINANT``) or in between. A solver's
calibrated range is the interval of lambdas whose *median* ratio over images lies in
``[lo, hi]`` (default 1e-2 .. 1: the penalty moves the iterate by 1% to 100% of the data term),
interpolated log-linearly between the measured lambdas of a grid run on the tune split. Grids
that never reach ``lo`` or ``hi`` give an open end, reported as such: extend the grid.
"""
from __future__ import annotations

import math

import numpy as np

INERT, DOMINANT = 1e-3, 10.0
TARGET = (1e-2, 1.0)


def influence_label(ratio) -> str:
    """``inert`` | ``dominant`` | ``ok`` | ``-`` (no penalty / no value) for one ratio."""
    if ratio is None or not np.isfinite(ratio):
        return "-"
    return "inert" if ratio < INERT else ("dominant" if ratio > DOMINANT else "ok")


def _crossing(lams: np.ndarray, ratios: np.ndarray, level: float) -> float | None:
    """The lambda where the (log-log interpolated) median ratio first crosses ``level`` upwards."""
    ll, lr, lv = np.log(lams), np.log(ratios), math.log(level)
    for i in range(len(ll) - 1):
        a, b = lr[i], lr[i + 1]
        if a <= lv <= b and b > a:
            return float(math.exp(ll[i] + (lv - a) * (ll[i + 1] - ll[i]) / (b - a)))
    return None


def lambda_range(lams, ratios, target=TARGET) -> dict:
    """Calibrated range from per-lambda median ratios (lambdas > 0, any order)."""
    order = np.argsort(np.asarray(lams, dtype=float))
    lam = np.asarray(lams, dtype=float)[order]
    rat = np.clip(np.asarray(ratios, dtype=float)[order], 1e-300, None)
    lo_level, hi_level = target
    if rat[0] >= lo_level:
        lo, lo_open = float(lam[0]), rat[0] > lo_level
    else:
        lo, lo_open = _crossing(lam, rat, lo_level), False
    if rat[-1] <= hi_level:
        hi, hi_open = float(lam[-1]), rat[-1] < hi_level
    else:
        hi, hi_open = _crossing(lam, rat, hi_level), False
    return {"lo": lo, "hi": hi, "lo_open": bool(lo_open), "hi_open": bool(hi_open),
            "lambdas": lam.tolist(), "median_ratio": rat.tolist()}


def calibrate(df, target=TARGET, by=("solver", "regularizer", "task")) -> dict:
    """``{(solver, regularizer, task): lambda_range}`` from store rows with ``lam > 0`` and a ratio;
    rows are pooled over images and step sizes (the median per lambda)."""
    rows = df[(df["lam"] > 0) & df["influence_grad"].notna() & (df["status"] == "ok")]
    out = {}
    for key, g in rows.groupby(list(by)):
        med = g.groupby("lam")["influence_grad"].median()
        if len(med) >= 2:
            out[key if isinstance(key, tuple) else (key,)] = lambda_range(med.index.values, med.values, target)
    return out


def solver_ranges(cal: dict) -> dict:
    """One range per (solver, regularizer): the intersection over tasks where it exists, else the
    union (marked); what the solver table's lambda search uses."""
    per: dict = {}
    for (solver, reg, *_), r in cal.items():
        if r["lo"] is None or r["hi"] is None:
            continue
        per.setdefault((solver, reg), []).append((r["lo"], r["hi"]))
    out = {}
    for key, spans in per.items():
        lo, hi = max(s[0] for s in spans), min(s[1] for s in spans)
        common = lo <= hi
        if not common:
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
        out[key] = {"lo": lo, "hi": hi, "common_to_all_tasks": common, "tasks": len(spans)}
    return out
