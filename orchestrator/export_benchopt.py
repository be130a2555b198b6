"""Store rows in benchopt's result schema: ``equibench export --store DIR --format benchopt --out FILE``.

One row per stored image result with status ok (benchopt records no failed runs), in the columns
benchopt writes and reads, so the results can feed benchopt's plots, ``benchopt merge`` and the
leaderboards built on its files. Checked against benchopt/benchopt (commit f6de3e2, 2026-07-23):

* ``benchopt/_generate_runs.py`` (the ``meta`` of every run): ``objective_name``,
  ``obj_description``, ``solver_name``, ``solver_description``, ``dataset_name``, ``idx_rep``,
  ``sampling_strategy`` and one ``p_obj_<k>`` / ``p_solver_<k>`` / ``p_dataset_<k>`` column per
  parameter of the objective / solver / dataset.
* ``benchopt/runner.py``: each result row adds ``stop_val`` and ``time``; ``benchopt/base.py``
  (``Objective``) names each value of ``evaluate_result`` ``objective_<k>``.
* ``benchopt/utils/parametrized_name_mixin.py`` (``__repr__``): a parametrized name is
  ``name[k=v,...]``, keys sorted, values as Python prints them.
* ``benchopt/results/__init__.py`` (``read_results``): the legacy column ``data_name`` is renamed
  ``dataset_name`` on reading; ``doc/benchmark_workflow/manage_benchmark_results.rst`` documents
  ``data_name``. We write ``data_name``, which readers old and new accept.
* ``doc/.../manage_benchmark_results.rst``: system columns include ``benchmark-git-tag`` (here the
  store's ``code_version``); ``save_results`` adds ``run_date`` when missing (here ``started_at``).

Mapping: the solver is the store's solver with the settings that define a method
(regularizer, lambda, step size, steps, prior, EquiReg's MPE / group / schedule / reduction,
solver noise, scalar solver options); the objective is the inverse problem (task, operator, its
scalar parameters, sigma_y); the dataset is the store's dataset with its split. ``idx_rep`` is the
solver seed, ``stop_val`` the number of steps, ``time`` the seconds per image (``wall_s``);
``objective_<metric>`` the per-image metrics, and FID / KID of the config (its newest ok set row,
the same value on every image row of a config). Provenance: ``run_id``, ``run_kind``,
``trial_id``, ``config_id``, ``unit_id``, ``sample_id``, ``cluster``, ``worker``, ``started_at``,
``code_version``. Rows of one (data, objective, solver, idx_rep, stop_val) are the images of one
run, so merge such files with ``benchopt merge --keep all`` (``last`` keeps one image).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow as pa

from orchestrator.reporting import labels
from orchestrator.reporting.summary import prepare_sets

__all__ = ["OBJECTIVE_NAME", "OBJECTIVE_METRICS", "PROVENANCE", "benchopt_frame", "parametrized_name", "write_benchopt"]

#: benchopt's ``objective_name`` stem: the benchmark's one objective, parametrized by the problem
OBJECTIVE_NAME = "EquiBench"
#: per-image store columns exported as ``objective_<column>`` (``wall_s`` is benchopt's ``time``)
OBJECTIVE_METRICS = tuple(c for c in labels.IMAGE_COLUMNS if c != "wall_s")
#: set metrics joined per config
SET_METRICS = tuple(m for m, spec in labels.METRICS.items() if spec.source == "set")
PROVENANCE = ("run_id", "run_kind", "trial_id", "config_id", "unit_id", "sample_id", "cluster", "worker", "started_at", "code_version")
#: EquiReg settings read from ``config_json`` (only for a regularized row)
_REG_FIELDS = ("mpe", "group", "lam_schedule", "reduction", "freq", "cutoff_frac")


def _scalar(value) -> bool:
    return isinstance(value, (bool, int, float, str)) and not (isinstance(value, float) and math.isnan(value))


def parametrized_name(name: str, params: dict) -> str:
    """benchopt's ``name[k=v,...]`` (keys sorted; no brackets without parameters)."""
    return f"{name}[{','.join(f'{k}={params[k]}' for k in sorted(params))}]" if params else str(name)


def _clean(value):
    """A store value as a plain Python scalar (numpy types and NaN/NaT out)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _row_params(rec: dict) -> tuple[dict, dict, dict]:
    """(solver, objective, dataset) parameters of one store row."""
    text = rec.get("config_json")
    try:
        doc = json.loads(text) if isinstance(text, str) else {}
    except ValueError:  # an unreadable config_json reads as absent, as in the report
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    reg = rec.get("regularizer") or "none"
    solver = {"regularizer": reg, "lam": _clean(rec.get("lam")), "step_size": _clean(rec.get("step_size")),
              "num_steps": _clean(rec.get("num_steps")), "prior": _clean(rec.get("prior")), "solver_noise": doc.get("solver_noise")}
    if reg != "none":
        solver.update({k: _clean(rec.get(k)) if k in rec else doc.get(k) for k in _REG_FIELDS})
        solver["lam_schedule"] = _clean(rec.get("lam_schedule")) or doc.get("schedule")
    for k, v in sorted((doc.get("solver_options") or {}).items()):
        if _scalar(v) and k not in solver:
            solver[k] = v
    objective = {"task": _clean(rec.get("task")), "sigma_y": _clean(rec.get("sigma_y")), "operator": doc.get("operator")}
    for k, v in sorted((doc.get("op_params") or {}).items()):
        if k not in objective:
            objective[k] = v if _scalar(v) else json.dumps(v, sort_keys=True, separators=(",", ":"))
    dataset = str(_clean(rec.get("dataset")) or "")
    name, _, split = dataset.partition("/")
    data = {"split": split} if split else {}
    drop = lambda d: {k: v for k, v in d.items() if v is not None}  # noqa: E731
    return drop(solver), drop(objective), (name, drop(data))


def benchopt_frame(results: pd.DataFrame, sets: pd.DataFrame | None = None) -> pd.DataFrame:
    """The ok rows of ``results`` (store rows, ``store.load``) in benchopt's schema (module docstring)."""
    ok = results[results["status"] == "ok"].copy() if "status" in results else results.iloc[0:0].copy()
    set_values = prepare_sets(sets).set_index("config_id") if sets is not None else pd.DataFrame()
    sort = [c for c in ("run_id", "config_id", "seed", "sample_id") if c in ok]
    records = []
    for rec in ok.sort_values(sort, kind="mergesort").to_dict("records"):
        solver_p, obj_p, (data_name, data_p) = _row_params(rec)
        row = {"objective_name": parametrized_name(OBJECTIVE_NAME, obj_p), "obj_description": labels.task_label(rec.get("task")),
               "solver_name": parametrized_name(str(rec.get("solver")), solver_p),
               "solver_description": labels.method_label(rec.get("solver"), rec.get("regularizer") or "none"),
               "data_name": parametrized_name(data_name, data_p), "idx_rep": _clean(rec.get("seed")),
               "sampling_strategy": "Run_once", "stop_val": _clean(rec.get("num_steps")), "time": _clean(rec.get("wall_s"))}
        row.update({f"p_obj_{k}": v for k, v in obj_p.items()})
        row.update({f"p_solver_{k}": v for k, v in solver_p.items()})
        row.update({f"p_dataset_{k}": v for k, v in data_p.items()})
        row.update({f"objective_{m}": _clean(rec.get(m)) for m in OBJECTIVE_METRICS})
        cid = rec.get("config_id")
        row.update({f"objective_{m}": _clean(set_values.at[cid, f"mean:{m}"]) if cid in set_values.index else None for m in SET_METRICS})
        row.update({c: _clean(rec.get(c)) for c in PROVENANCE})
        row["benchmark-git-tag"] = row["code_version"]
        started = row["started_at"]
        row["run_date"] = pd.Timestamp(started).isoformat() if started is not None else None
        records.append(row)
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return frame
    for col in frame:
        kinds = {type(v) for v in frame[col].dropna()}
        if col in ("idx_rep", "stop_val", "sample_id") or (kinds and kinds <= {int}):
            frame[col] = frame[col].astype("Int64")
        elif len(kinds - {int, float}) and len(kinds) > 1:  # one parameter, several types across solvers: text
            frame[col] = frame[col].map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v))
    front = ["objective_name", "obj_description", "solver_name", "solver_description", "data_name", "idx_rep", "sampling_strategy", "stop_val", "time"]
    params = sorted(c for c in frame if c.startswith("p_"))
    objectives = [c for c in frame if c.startswith("objective_") and c != "objective_name"]
    return frame[front + params + objectives + [c for c in frame if c not in set(front + params + objectives)]]


def write_benchopt(store_dir, out, runs: Sequence[str] | None = None) -> tuple[Path, int, int]:
    """Write the store's ok rows (of ``runs``, default all) to ``out`` (.parquet or .csv, outside the
    store, atomically); returns (path, rows written, rows skipped as not ok)."""
    from orchestrator import store

    store.check_readable(store_dir)
    path, fmt = store.check_export_path(out, store_dir)
    results = store.load(store_dir, run=list(runs) if runs else None)
    if results.empty:
        raise ValueError(f"no result rows in {store_dir}" + (f" for runs {sorted(runs)}" if runs else ""))
    frame = benchopt_frame(results, store.load_sets(store_dir, run=list(runs) if runs else None))
    if frame.empty:
        raise ValueError(f"no rows with status ok in {store_dir}: nothing to export")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    store.write_extract(table, path, fmt)
    return path, len(frame), len(results) - len(frame)
