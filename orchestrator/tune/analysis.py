"""The search's summary, computed from the store rows of its own trials (not Tune's reports).

Only trials that evaluated *every* tuning image can be the best: an ASHA-stopped trial's running
mean covers fewer images and is not comparable. Each cell also gets its flags: a best value on
the edge of its search range (widen the range) and an inert / dominant lambda (its influence).
"""
from __future__ import annotations

import math
import numbers
from typing import Optional

from orchestrator import store
from orchestrator.tune.cells import Cell, baseline_cell
from orchestrator.tune.values import fmt

#: a best value within this fraction of its range's ends (log scale for log ranges) is on the edge
EDGE_FRACTION = 0.05
TRIAL_STATUSES = ("complete", "stopped", "diverged", "failed", "errored", "empty")


def _trial_stats(rows, metric: str, n_images: int) -> dict:
    """Rows of one trial (a DataFrame) -> mean objective, counts and status."""
    n_rows = int(len(rows))
    if n_rows == 0:
        return {"mean": None, "n_images": 0, "n_rows": 0, "status": "empty"}
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()]
    bad = n_rows - int(len(ok))
    mean = float(ok[metric].mean()) if len(ok) else None
    if bad:
        status = "diverged" if (rows["status"] == "diverged").any() else "failed"
    else:
        status = "complete" if len(ok) == n_images else "stopped"
    return {"mean": mean, "n_images": int(len(ok)), "n_rows": n_rows, "status": status}


def _trial_influence(rows) -> Optional[float]:
    """Mean lambda influence over a trial's ok rows: ``influence_grad``, else ``influence_obj``."""
    for col in ("influence_grad", "influence_obj"):
        if col in rows and len(rows):
            v = rows.loc[rows["status"] == "ok", col].astype(float)
            v = v[v.notna() & (v.abs() != float("inf"))]
            if len(v):
                return float(v.mean())
    return None


def cell_flags(entry: dict) -> list[str]:
    """Warnings about a cell's best trial: a searched value on the edge of its range (the optimum
    may lie outside it: widen the range) and an inert / dominant lambda (its mean influence)."""
    from orchestrator.reporting.notes import influence_warning

    best, ranges = entry.get("best"), (entry.get("cell") or {}).get("ranges") or {}
    if not best:
        return []
    flags = []
    for key, value in (best.get("params") or {}).items():
        r = ranges.get(key)
        if not r or not isinstance(value, numbers.Real) or not r["hi"] > r["lo"]:
            continue
        lo, hi, v = float(r["lo"]), float(r["hi"]), float(value)
        if r.get("log") and lo > 0 and v > 0:
            pos = (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        else:
            pos = (v - lo) / (hi - lo)
        if pos <= EDGE_FRACTION or pos >= 1 - EDGE_FRACTION:
            side = "lower" if pos <= EDGE_FRACTION else "upper"
            flags.append(f"best {key}={fmt(v)} is on the {side} edge of its search range [{fmt(lo)}, {fmt(hi)}]: widen the range")
    infl = best.get("influence")
    if infl is not None and "lam" in (best.get("params") or {}):
        w = influence_warning(float(infl), entry["cell"].get("label", ""), f"(λ={fmt(float(best['params']['lam']))})")
        if w:
            flags.append(w)
    return flags


def _best(trials: list[dict], mode: str) -> Optional[dict]:
    complete = [t for t in trials if t["status"] == "complete" and t["mean"] is not None]
    if not complete:
        return None
    sign = 1 if mode == "max" else -1
    return max(sorted(complete, key=lambda t: t["trial_key"]), key=lambda t: sign * t["mean"])


def cell_info(cell: Cell) -> dict:
    """A cell's names, searched keys and their ranges (``lo``, ``hi``, ``log``: log-spaced)."""
    ranges = {}
    for key, p in cell.params.items():
        lo, hi = p.bounds
        log = p.loguniform is not None or (p.values is not None and lo > 0 and hi / lo >= 10)
        ranges[key] = {"lo": float(lo), "hi": float(hi), "log": bool(log)}
    return {"solver": cell.solver.name, "regularizer": cell.reg.kind, "task": cell.task.label,
            "searched": sorted(cell.params), "label": cell.label, "ranges": ranges}


def _searched_entry(cell: Cell, records: list[dict], groups: dict, empty, metric: str, mode: str, n_img: int) -> dict:
    """A searched cell of one variant: every trial Tune listed, scored on its stored rows."""
    trials = []
    for rec in records:
        key = rec.get("trial_key")
        rows = groups.get(key, empty) if key else empty
        st = _trial_stats(rows, metric, n_img)
        if rec.get("error") and st["status"] in ("stopped", "empty"):
            st["status"] = "errored"
        params = cell.params_of(rec.get("config") or {})
        trials.append({"trial_key": key, "params": params, "config_id": cell.config(params).config_id,
                       "tune_objective": rec.get("objective"), "error": rec.get("error"), **st,
                       "influence": _trial_influence(rows) if key else None})
    return {"cell": cell_info(cell), "fixed": False, "trials": trials, "best": _best(trials, mode),
            "counts": {s: sum(t["status"] == s for t in trials) for s in TRIAL_STATUSES}}


def _fixed_entry(cell: Cell, key: str, groups: dict, empty, metric: str, n_img: int) -> dict:
    rows = groups.get(key, empty)
    entry = {"trial_key": key, "params": {}, "config_id": cell.template.config_id,
             **_trial_stats(rows, metric, n_img), "influence": _trial_influence(rows)}
    return {"cell": cell_info(cell), "fixed": True, "trials": [entry],
            "best": entry if entry["status"] == "complete" else None}


def analyse(ts, cells: list[Cell], store_dir, experiments: dict, fixed: dict, workers: list) -> dict:
    """The search's summary, computed from the store rows of its own trials (not Tune's reports)."""
    metric, mode, n_img = ts.metric, ts.mode, len(ts.tuning_ids)
    df = store.load(store_dir, run=ts.run_id, filters={"run_kind": "tune"},
                    columns=list(dict.fromkeys(["trial_id", "sample_id", "status", metric, "config_id", "influence_grad", "influence_obj"])))
    df = df[df["sample_id"].isin(ts.tuning_ids)]
    groups = {k: g for k, g in df.groupby("trial_id")}
    empty = df.iloc[0:0]
    variants = {}
    for variant in ts.variants:
        vcells = {}
        for cell in cells:
            vcells[cell.slug] = (_searched_entry(cell, experiments.get(variant, {}).get(cell.slug, []), groups, empty,
                                                 metric, mode, n_img)
                                 if cell.searched else _fixed_entry(cell, fixed[cell.slug], groups, empty, metric, n_img))
        for cell in cells:
            base = baseline_cell(cell, cells)
            entry = vcells[cell.slug]
            entry["baseline"] = None
            if base is not None and vcells[base.slug]["best"] is not None:
                b = vcells[base.slug]["best"]
                entry["baseline"] = {"cell": base.slug, "mean": b["mean"], "params": b["params"]}
            entry["flags"] = cell_flags(entry)
        searched = [e for e in vcells.values() if not e["fixed"]]
        n_trials = sum(len(e["trials"]) for e in searched)
        variants[variant] = {"cells": vcells, "trials": n_trials,
                             "evaluations": sum(t["n_rows"] for e in searched for t in e["trials"]),
                             "full_budget": n_trials * n_img}
    fixed_evals = sum(int(len(groups.get(k, empty))) for k in fixed.values())
    return {
        "run_id": ts.run_id, "objective": {"metric": metric, "mode": mode}, "searcher": ts.tune.searcher,
        "primary": ts.variants[0], "variants_run": ts.variants,
        "tuning_images": {"dataset": ts.sweep.dataset.name, "split": ts.split, "ids": ts.tuning_ids},
        "chunk_size": ts.chunk_size, "n_chunks": len(ts.chunks), "variants": variants,
        "fixed_evaluations": fixed_evals, "workers": workers,
        "model_loads": {w.get("name"): w.get("loads") for w in workers},
    }
