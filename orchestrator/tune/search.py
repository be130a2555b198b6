"""``run_search``: the driver of a search (state file, fixed cells, experiments, summary, outputs).

``OUT/tune/search.json`` holds the spec's fingerprint, so a changed spec is refused instead of
being mixed into an old search; without ``--resume`` an existing search is never overwritten.
The driver registers the run, starts Ray and the worker pool (workers, the one writer, the
dispatcher), evaluates the fixed cells through the dispatcher, runs every (variant, cell)
experiment, waits until every unit is stored, and computes the summary from the store.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import ray

from orchestrator import cluster as _cluster
from orchestrator import store
from orchestrator.tune.analysis import analyse
from orchestrator.tune.cells import Cell, experiment_name, fixed_key, make_cells
from orchestrator.tune.experiments import CHECKPOINT_PERIOD_S, CLOCK, DONE_FILE, run_experiment, tune_env
from orchestrator.tune.pool import WorkerPool
from orchestrator.tune.trainable import TrialJob, trial_context, trial_units
from orchestrator.tune.trial_store import stored_trial_rows
from orchestrator.tune.tunespec import TuneSpec
from orchestrator.tune.values import now
from orchestrator.tune.writers import write_outputs


@dataclass
class TuneResult:
    """What ``run_search`` produced: the summary (also in summary.json) and the files written."""

    run_id: str
    out_dir: Path
    summary: dict
    files: dict = field(default_factory=dict)
    wall_s: float = 0.0


def _start_state(ts: TuneSpec, tune_dir: Path, resume: bool) -> None:
    state = tune_dir / "search.json"
    if state.exists():
        prev = json.loads(state.read_text())
        if not resume:
            raise ValueError(f"{tune_dir.parent} already holds search {prev.get('run_id')!r} (started "
                             f"{prev.get('started_at')}); pass --resume to continue it, or choose another --out")
        if prev.get("fingerprint") != ts.fingerprint:
            raise ValueError(f"the spec changed since the search in {tune_dir.parent} started; resume it with the "
                             "same spec, or start the new search with another --out")
        return
    tune_dir.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"run_id": ts.run_id, "fingerprint": ts.fingerprint, "started_at": now(),
                                 "source": ts.source, "spec": ts.canonical()}, indent=2, default=str))


def _fixed_units(ts: TuneSpec, cells: list[Cell], store_dir: Path) -> list:
    """Units of the cells with nothing to search, for the tuning images they have not stored yet."""
    units = []
    for cell in cells:
        if cell.searched:
            continue
        have = stored_trial_rows(store_dir, ts.run_id, fixed_key(cell), columns=[])
        todo = [s for s in ts.tuning_ids if have.get(s, {}).get("status") not in ("ok", "diverged")]
        units += trial_units(cell.template, todo, ts.sweep.unit_rows, fixed_key(cell)) if todo else []
    return units


def run_search(ts: TuneSpec, store_dir, out_dir, *, resume: bool = False, address: Optional[str] = None,
               num_actors: Optional[int] = None, quiet: bool = False) -> TuneResult:
    """Run (or, with ``resume``, continue) the search of ``ts``; see ``orchestrator.tune``."""
    t0 = time.perf_counter()
    store_dir, out_dir = Path(store_dir).resolve(), Path(out_dir).resolve()
    tune_dir = out_dir / "tune"
    _start_state(ts, tune_dir, resume)
    cells = make_cells(ts)
    planned = sum(c.n_trials(ts.tune) * len(ts.tuning_ids) * (len(ts.variants) if c.searched else 1) for c in cells)
    # n_trials / variants / finished_at let `equibench status` tell ASHA-stopped trials from unfinished work
    record = dict(run_kind="tune", n_configs=sum(c.n_trials(ts.tune) for c in cells), n_samples=len(ts.tuning_ids),
                  n_trials=sum(c.n_trials(ts.tune) * (len(ts.variants) if c.searched else 1) for c in cells),
                  variants=list(ts.variants))
    store.register_run(store_dir, ts.run_id, ts.canonical(), planned, **record, finished_at=None)
    fixed = {c.slug: fixed_key(c) for c in cells if not c.searched}
    fixed_units = _fixed_units(ts, cells, store_dir)
    searches = [(v, c) for v in ts.variants for c in cells if c.searched]
    pending = [(v, c) for v, c in searches if not (tune_dir / experiment_name(v, c) / DONE_FILE).exists()]
    experiments: dict[str, dict[str, list[dict]]] = {v: {} for v in ts.variants}
    writer = {"units": 0, "rows": 0}  # what the search's writer stored in this call
    if fixed_units or pending:
        workers, writer = _compute(ts, fixed_units, searches, experiments, store_dir, tune_dir, resume, address,
                           num_actors, quiet)
    else:  # a finished search resumed: nothing to compute, no Ray; the summary is rebuilt from the store
        for v, c in searches:
            experiments[v][c.slug] = json.loads((tune_dir / experiment_name(v, c) / DONE_FILE).read_text())["trials"]
        previous = out_dir / "summary.json"
        workers = json.loads(previous.read_text()).get("workers", []) if previous.exists() else []
        if not quiet:
            print(f"[{ts.run_id}] nothing to compute: the search in {tune_dir} is finished", flush=True)
    summary = analyse(ts, cells, store_dir, experiments, fixed, workers)
    summary["writer"] = writer
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    files = write_outputs(ts, cells, summary, out_dir)
    store.register_run(store_dir, ts.run_id, ts.canonical(), planned, **record, finished_at=now())
    return TuneResult(ts.run_id, out_dir, summary, files, summary["wall_s"])


def _compute(ts: TuneSpec, fixed_units: list, searches: list, experiments: dict, store_dir: Path,
             tune_dir: Path, resume: bool, address: Optional[str], num_actors: Optional[int], quiet: bool) -> tuple[list[dict], dict]:
    """Start Ray and the worker pool, evaluate the fixed cells, run every (variant, cell) experiment
    (finished ones are read from their done file); returns the workers' info (model loads) and
    the units and rows the writer stored."""
    started_ray = _cluster.ensure_ray(address)
    pool = None
    try:
        n = num_actors or ts.sweep.resources.num_actors or _cluster.auto_actors(ts.sweep, 1 << 20)
        pool = WorkerPool.start(ts.sweep, n, f"tune-{ts.run_id}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
                                store_dir, ts.run_id)
        context = {"code_version": _cluster.code_version(), "metrics": ts.row_metrics}
        ray.get([pool.dispatcher.run_and_store.remote(u, trial_context(context, ts.run_id, u.unit_id.rsplit(".", 1)[0]))
                 for u in fixed_units])
        if fixed_units and not quiet:
            print(f"[{ts.run_id}] evaluated the fixed cells on {len(ts.tuning_ids)} tuning images", flush=True)
        max_concurrent = ts.tune.max_concurrent or len(pool.workers)
        CLOCK.start(sum(cell.n_trials(ts.tune) for _, cell in searches))  # "trial k/N, ETA" lines
        with tune_env(TUNE_GLOBAL_CHECKPOINT_S=CHECKPOINT_PERIOD_S, RAY_AIR_NEW_OUTPUT="0"):
            for variant, cell in searches:
                job = TrialJob(ts.run_id, variant, cell, ts.chunks, ts.sweep.unit_rows, ts.metric, ts.mode,
                               pool.name, context)
                experiments[variant][cell.slug] = run_experiment(ts, cell, variant, job, tune_dir, resume,
                                                                 max_concurrent, quiet)
        pool.drain()
        return ray.get(pool.dispatcher.info.remote()), ray.get(pool.writer.stats.remote())
    finally:
        if pool is not None:
            pool.close()
        if started_ray:
            ray.shutdown()
