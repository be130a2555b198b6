"""The Tune trainable: one trial evaluates one configuration on the tuning images, chunk by chunk.

After each chunk of ``chunk_size`` images a trial reports the running mean of the objective
(``objective``) so ASHA can stop it early. A trial with a diverged or failed row reports a penalty
(``PENALTY``, signed against the objective's direction) and stops: it cannot be the best. Trials
only wait on the dispatcher (``orchestrator.tune.pool``): its workers compute, its writer stores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import ray
from ray import tune

from orchestrator import grid as _grid
from orchestrator import plan as _plan
from orchestrator.tune.cells import Cell, trial_key
from orchestrator.tune.pool import NAMESPACE

#: Objective reported by a trial with a diverged/failed row (signed against the direction): finite,
#: so ASHA and Optuna rank it last instead of choking on NaN.
PENALTY = 1e6


def trial_units(cfg: _grid.Config, samples: list[int], batch_size: int, trial_id: str) -> list[_plan.WorkUnit]:
    """Units for ``cfg`` on ``samples``, their ids prefixed with the trial id (one file per trial unit)."""
    units = _plan.plan([cfg], samples, batch_size)
    for u in units:
        u.unit_id = f"{trial_id}.{u.unit_id}"
    return units


def run_units(dispatcher, units: list[_plan.WorkUnit], context: dict) -> list[dict]:
    """Run ``units`` through the dispatcher (all submitted at once); their rows, once stored."""
    rows: list[dict] = []
    for got in ray.get([dispatcher.run_and_store.remote(u, context) for u in units]):
        rows += got
    return rows


def rows_status(rows: list[dict], metric: str) -> str:
    """``ok`` when every row is ok with a value of ``metric``; else the first problem's status."""
    for r in rows:
        if r.get("status") != "ok":
            return str(r.get("status") or "failed")
        v = r.get(metric)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "missing"
    return "ok"


def penalty(mode: str) -> float:
    """The objective a trial with a diverged/failed row reports: the worst finite value."""
    return -PENALTY if mode == "max" else PENALTY


def trial_context(context: dict, run_id: str, key: str) -> dict:
    """What the workers need to label a trial's rows (``run_kind`` tune, ``trial_id``, no images)."""
    return {**context, "run_id": run_id, "run_kind": "tune", "trial_id": key, "save_images": False}


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one experiment shares (passed with ``tune.with_parameters``)."""

    run_id: str
    variant: str
    cell: Cell
    chunks: list
    batch_size: int
    metric: str
    mode: str
    dispatcher: str
    context: dict


def run_trial(config: dict, job: TrialJob) -> None:
    """A Tune trial: evaluate one configuration chunk by chunk, reporting the running mean.

    Rows the trial stored before an interruption are read back (through the dispatcher's writer),
    not recomputed (``failed`` rows are recomputed), so a restored trial re-reports its earlier
    chunks at once.
    """
    key = trial_key(job.variant, job.cell.slug, tune.get_context().get_trial_id())
    cfg = job.cell.config(config)
    dispatcher = ray.get_actor(job.dispatcher, namespace=NAMESPACE)
    context = trial_context(job.context, job.run_id, key)
    have = ray.get(dispatcher.stored_rows.remote(key, [job.metric]))
    values: list[float] = []
    evaluated = 0
    images = 0
    for k, chunk in enumerate(job.chunks):
        todo = [s for s in chunk if have.get(s, {}).get("status") not in ("ok", "diverged")]
        if todo:
            for row in run_units(dispatcher, trial_units(cfg, todo, job.batch_size, key), context):
                have[int(row["sample_id"])] = row
            evaluated += len(todo)
        rows = [have[s] for s in chunk]
        images += len(chunk)
        status = rows_status(rows, job.metric)
        if status == "ok":
            values += [float(r[job.metric]) for r in rows]
        mean = sum(values) / len(values) if status == "ok" else float("nan")
        tune.report({"objective": mean if status == "ok" else penalty(job.mode), "mean": mean, "images": images,
                     "evaluated": evaluated, "chunk": k + 1, "status": status, "trial_key": key})
        if status != "ok":
            return
