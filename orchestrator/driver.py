"""The driver: spec -> grid -> plan -> actors -> store, resumable, with progress.

1. Expand the grid and drop every (config, sample) already stored with status ok (resume).
2. Plan the rest into WorkUnits (lambda-grid batches of <= batch_size rows).
3. Start N ``Worker`` actors (fractional CPUs/GPUs from the spec) and keep each fed with up to
   ``inflight_per_actor`` units; a ``ray.wait`` loop collects results as they finish.
4. The driver is the single writer: each finished unit's rows go to its own Parquet file
   (atomic, deterministic name), images to an npz; then progress is updated.
5. When all rows of a config have been attempted, its set metrics (FID/KID) are computed on an
   actor (null when the Inception weights are absent) and written to ``sets``.

Failures: a dead actor is restarted by Ray and its call retried (``max_task_retries=-1``); a unit
whose call raises (a bug outside the solver) is retried up to ``max_attempts`` times, then its rows
are stored as ``failed`` with the error; a solver exception is already a ``failed`` unit result.
"""
from __future__ import annotations

import datetime as _dt
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator import grid as _grid
from orchestrator import guards as _guards
from orchestrator import plan as _plan
from orchestrator import run_identity as _identity
from orchestrator import store
from orchestrator.cluster import (REPO_ROOT, actor_died, auto_actors, code_version, ensure_ray, local_resources,  # noqa: F401
                                  reissue_warnings, start_actors)
from orchestrator.progress import Progress
from orchestrator.spec import SET_METRICS, SweepSpec


@dataclass
class SweepResult:
    run_id: str
    total_rows: int
    skipped_rows: int  # already stored ok before this run
    units: int = 0
    units_done: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    rows_diverged: int = 0
    retries: int = 0
    sets_written: int = 0
    wall_s: float = 0.0
    stopped_early: bool = False
    errors: list = field(default_factory=list)

    @property
    def computed_nothing(self) -> bool:
        return self.units == 0 and self.sets_written == 0


def _config_images(store_dir, run_id: str, config_id: str):
    """Stacked (x_hat, x_true) of a config's ok rows, from the store's image files."""
    df = store.load(store_dir, run=run_id, filters={"config_id": config_id, "status": "ok"},
                    columns=["unit_id", "sample_id"])
    if df.empty:
        return None, None
    imgs = store.load_images(store_dir, run_id, sorted(set(df["unit_id"])))
    keys = [(f"{config_id}:{s}", str(s)) for s in sorted(set(df["sample_id"].tolist()))]
    keys = [(k, s) for k, s in keys if k in imgs["x_hat"] and s in imgs["x_true"]]
    if not keys:
        return None, None
    return np.stack([imgs["x_hat"][k] for k, _ in keys]), np.stack([imgs["x_true"][s] for _, s in keys])


class _Sweep:
    """State of one driver run (kept in one place so ``run_sweep`` reads top to bottom)."""

    def __init__(self, spec: SweepSpec, store_dir, backend, progress: Progress, context: dict, max_attempts: int,
                 retry: dict | None = None):
        self.spec, self.store_dir, self.backend = spec, Path(store_dir), backend
        self.progress, self.context, self.max_attempts = progress, context, max_attempts
        self.attempts: dict[str, int] = defaultdict(int)
        self.retry = dict(retry or {})  # old unit file -> diverged keys a retried unit replaces

    def store_unit(self, unit: _plan.WorkUnit, result: dict) -> tuple[int, int, int]:
        rows = result["rows"]
        path = store.write_unit(self.store_dir, self.spec.name, unit.unit_id, rows, grid_hash=self.context.get("grid_hash"))
        if self.retry:  # --retry-diverged: the new rows replace the old ones, never doubling them
            keys = {(r.config_id, r.sample_id) for r in unit.rows}
            for old, old_keys in list(self.retry.items()):
                if old != path and old_keys & keys:
                    store.drop_rows(old, old_keys & keys)
                    self.retry[old] = old_keys - keys
        if result.get("images"):
            store.save_images(self.store_dir, self.spec.name, unit.unit_id, result["images"])
        ok = sum(r["status"] == "ok" for r in rows)
        failed = sum(r["status"] == "failed" for r in rows)
        return ok, failed, sum(r["status"] == "diverged" for r in rows)

    def failed_result(self, unit: _plan.WorkUnit, error: str) -> dict:
        """Rows marking every row of ``unit`` failed (a unit that kept raising outside the solver)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        rows = []
        for r in unit.rows:
            cfg = unit.configs[r.config_id]
            rows.append({**cfg.store_columns(), "run_id": self.spec.name, "run_kind": self.context.get("run_kind", "sweep"),
                         "trial_id": self.context.get("trial_id"), "unit_id": unit.unit_id, "sample_id": r.sample_id,
                         "row_seed": r.row_seed, "lam": r.lam, "step_size": r.step_size, "status": "failed",
                         "error": error[-2000:], "started_at": now, "code_version": self.context.get("code_version")})
        return {"rows": rows, "images": {}}


def _set_row(spec: SweepSpec, cfg: _grid.Config, n: int, got: dict, context: dict, complete: bool) -> dict:
    cols = cfg.store_columns()
    status = "ok" if complete and not got.get("error") else ("failed" if got.get("error") else "partial")
    return {
        "run_id": spec.name, "run_kind": context.get("run_kind", "sweep"), "trial_id": context.get("trial_id"),
        "config_id": cfg.config_id, "solver": cols["solver"], "regularizer": cols["regularizer"], "lam": cols["lam"],
        "step_size": cols["step_size"], "task": cols["task"], "sigma_y": cols["sigma_y"], "num_steps": cols["num_steps"],
        "n_images": n, "fid": got.get("fid"), "kid_mean": got.get("kid_mean"), "kid_std": got.get("kid_std"),
        "status": status, "error": got.get("error"), "computed_at": _dt.datetime.now(_dt.timezone.utc),
        "code_version": context.get("code_version"), "config_json": cols["config_json"],
    }


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: what was stored stays stored, a rerun resumes exactly."""

    def __init__(self, run_id: str, rows_stored: int, rows_total_ok: int, total: int):
        super().__init__(f"interrupted: {rows_stored} rows stored by this run ({rows_total_ok} of {total} in the store "
                         f"for run {run_id!r}); rerun the same command to resume")
        self.run_id, self.rows_stored, self.rows_total_ok, self.total = run_id, rows_stored, rows_total_ok, total


def run_sweep(spec: SweepSpec, store_dir, *, address: str | None = None, num_actors: int | None = None,
              backend: str | None = None, progress: Progress | None = None, quiet: bool = False,
              inflight_per_actor: int = 2, max_attempts: int = 3, stop_after_units: int | None = None,
              context: dict | None = None, actors: list | None = None, actor_wait_s: float = 600.0,
              force: bool = False, extend: bool = False, retry_diverged: bool = False,
              compact: bool | None = None) -> SweepResult:
    """Run (or resume) ``spec`` into ``store_dir``; see the module docstring.

    ``stop_after_units`` stops the driver after storing that many units, as if it had been killed
    (a test hook for resume). ``context`` adds run_kind/trial_id (Tune trials use the same path).
    ``actors``: existing ``Worker`` handles to use (and leave running), e.g. shared by Tune trials
    or a test module, so their resident models are reused across sweeps. ``force`` skips the grid
    size and resource guards; ``extend`` lets the run name take another grid; ``retry_diverged``
    recomputes stored diverged rows, replacing them. Ctrl-C raises ``SweepInterrupted``.
    Nothing is written before every check has passed, and nothing at all when there is nothing to do.
    A finished run is compacted (``store.compact_after_sweep``; ``compact`` defaults to ``spec.compact``).
    """
    t0 = time.perf_counter()
    progress_box: list = []
    try:
        return store.compact_after_sweep(spec, store_dir, _run_sweep(
                          spec, store_dir, t0, progress_box, address=address, num_actors=num_actors, backend=backend,
                          progress=progress, quiet=quiet, inflight_per_actor=inflight_per_actor,
                          max_attempts=max_attempts, stop_after_units=stop_after_units, context=context, actors=actors,
                          actor_wait_s=actor_wait_s, force=force, extend=extend, retry_diverged=retry_diverged), compact)
    except KeyboardInterrupt as exc:
        if isinstance(exc, SweepInterrupted):
            raise
        done = len(store.completed_keys(store_dir, spec.name)) if Path(store_dir).is_dir() else 0
        total = progress_box[0] if progress_box else 0
        rows = progress_box[1].rows if len(progress_box) > 1 else 0
        raise SweepInterrupted(spec.name, rows, done, total) from None


def _run_sweep(spec, store_dir, t0, progress_box, *, address, num_actors, backend, progress, quiet,
               inflight_per_actor, max_attempts, stop_after_units, context, actors, actor_wait_s,
               force, extend, retry_diverged) -> SweepResult:
    run_id = spec.name
    _guards.check_grid_size(spec, force=force, backend=backend)
    _guards.check_address(address)
    configs = _grid.expand(spec, backend)
    samples = _grid.sample_ids(spec)
    total = len(configs) * len(samples)
    progress_box.append(total)
    ghash = _identity.grid_hash([c.config_id for c in configs], samples)
    record = store.read_run(store_dir, run_id) if Path(store_dir).is_dir() else None
    accepted = _identity.check(record, run_id, store_dir, ghash, len(configs), len(samples), extend=extend)
    context = {"run_id": run_id, "run_kind": "sweep", "code_version": code_version(),
               **store.image_context(spec, samples),  # save_images / image_samples / image_format for the worker
               "metrics": list(spec.metrics), "grid_hash": ghash, **(context or {})}
    grid = {(c.config_id, s) for c in configs for s in samples}
    statuses = ("ok",) if retry_diverged else ("ok", "diverged")
    done = store.completed_keys(store_dir, run_id, context.get("trial_id"), statuses=statuses) & grid
    retry = {}  # unit file -> its diverged keys being recomputed (dropped from it once replaced)
    if retry_diverged and Path(store_dir).is_dir():
        retry = {f: k & grid for f, k in store.files_with_keys(store_dir, run_id, "diverged").items()}
        done -= {k for keys in retry.values() for k in keys}
    units = _plan.plan(configs, samples, spec.batch_size, done)
    skipped = len(done)
    result = SweepResult(run_id, total, skipped, units=len(units))

    # Configs whose set metrics are still owed: pending rows count down as units come back.
    want_sets = [m for m in spec.metrics if m in SET_METRICS]
    by_id = {c.config_id: c for c in configs}
    pending = defaultdict(int)
    for u in units:
        for r in u.rows:
            pending[r.config_id] += 1
    sets_todo: list[str] = []
    if want_sets and Path(store_dir).is_dir():
        have_sets = set(store.load_sets(store_dir, run=run_id, columns=["config_id"])["config_id"])
        sets_todo = [cid for cid in by_id if pending[cid] == 0 and cid not in have_sets]

    progress = progress or Progress(run_id, len(units), sum(u.size for u in units), skipped, quiet=quiet)
    progress_box.append(progress)
    if not units and not sets_todo:
        if record is None or accepted != record.get("grid_hashes"):  # identity to record, no rows to write
            store.check_writable(store_dir)
            store.register_run(store_dir, run_id, spec.canonical(), total, n_configs=len(configs),
                               n_samples=len(samples), grid_hash=ghash, grid_hashes=accepted)
        progress.log(f"[{run_id}] nothing to compute: all {total} rows already stored in {store_dir}")
        result.wall_s = time.perf_counter() - t0
        return result

    import ray

    own_actors = actors is None
    if own_actors and not force and address in (None, "local") and not ray.is_initialized():
        # the local Ray to start gets this machine's resources: a request it cannot place is refused
        # now, before the store is touched or Ray starts (minutes on a loaded machine); re-checked once it runs
        _guards.check_resources(spec, local_resources(), num_actors or spec.resources.num_actors)
    store.check_writable(store_dir)
    started_ray = ensure_ray(address)
    if own_actors:
        if not force:  # before any actor starts: an actor that cannot be placed waits forever
            try:
                _guards.check_resources(spec, ray.cluster_resources(), num_actors or spec.resources.num_actors)
            except _guards.GuardError:
                if started_ray:
                    ray.shutdown()
                raise
        store.register_run(store_dir, run_id, spec.canonical(), total, n_configs=len(configs),
                           n_samples=len(samples), grid_hash=ghash, grid_hashes=accepted)
        n_actors = num_actors or spec.resources.num_actors or auto_actors(spec, max(len(units), 1))
        n_actors = max(1, min(n_actors, max(len(units), 1)))
        actors = start_actors(spec, n_actors, backend)
    else:
        store.register_run(store_dir, run_id, spec.canonical(), total, n_configs=len(configs),
                           n_samples=len(samples), grid_hash=ghash, grid_hashes=accepted)
    n_actors = len(actors)
    sweep = _Sweep(spec, store_dir, backend, progress, context, max_attempts, retry)
    progress.start()
    progress.log(f"[{run_id}] {len(units)} units on {n_actors} actor(s); {skipped}/{total} rows already stored")
    queue = list(units)
    inflight: dict = {}  # ObjectRef -> (kind, payload, actor index)
    seen_warnings: set = set()  # the workers' warnings already printed (cluster.reissue_warnings)
    load = [0] * n_actors
    down: dict[int, float] = {}  # actor index -> since when its calls fail (node lost, process killed)

    def submit_units():
        while queue:
            free = [i for i in range(n_actors) if i not in down and load[i] < inflight_per_actor]
            if not free:
                return
            i = min(free, key=lambda k: load[k])
            unit = queue.pop(0)
            sweep.attempts[unit.unit_id] += 1
            # the driver, not Ray, retries unit calls: a dead actor's refs fail fast and move elsewhere
            inflight[actors[i].run_unit.options(max_task_retries=0).remote(unit, context)] = ("unit", unit, i)
            load[i] += 1

    def mark_down(i):
        if i not in down:
            down[i] = time.monotonic()
            inflight[actors[i].ping.remote()] = ("ping", None, i)  # returns when Ray has restarted it

    def submit_sets(cid):
        xh, xt = _config_images(store_dir, run_id, cid)
        if xh is None:
            return
        i = min((k for k in range(n_actors) if k not in down), key=lambda k: load[k], default=0)
        inflight[actors[i].set_metrics.options(max_task_retries=0).remote(xh, xt, want_sets)] = ("sets", (cid, len(xh)), i)
        load[i] += 1

    try:
        for cid in sets_todo:
            submit_sets(cid)
        submit_units()
        while queue or any(k != "ping" for k, _, _ in inflight.values()):
            if len(down) == n_actors and time.monotonic() - max(down.values()) > actor_wait_s:
                raise RuntimeError(f"[{run_id}] no live actor for {actor_wait_s:.0f}s (cluster lost its capacity); "
                                   f"{len(queue)} unit(s) not run; rerun to resume")
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            progress.tick()
            for ref in ready:
                kind, payload, i = inflight.pop(ref)
                if kind == "ping":
                    down.pop(i, None)
                    continue
                load[i] -= 1
                if kind == "sets":
                    cid, n = payload
                    try:
                        got = ray.get(ref)
                        reissue_warnings(got.pop("warnings", None), seen_warnings)
                    except ray.exceptions.RayActorError as exc:
                        actor_died(exc, seen_warnings)
                        mark_down(i)
                        submit_sets(cid)
                        continue
                    except Exception as exc:  # noqa: BLE001
                        got = {"error": f"{type(exc).__name__}: {exc}"}
                    store.write_sets(store_dir, run_id, cid, [_set_row(spec, by_id[cid], n, got, context, n == len(samples))],
                                     grid_hash=ghash)
                    result.sets_written += 1
                    continue
                unit = payload
                try:
                    res = ray.get(ref)
                    reissue_warnings(res.pop("warnings", None), seen_warnings)  # each distinct one once per sweep
                except ray.exceptions.RayActorError as exc:  # the actor died (node lost, killed): not the unit's fault
                    actor_died(exc, seen_warnings)
                    sweep.attempts[unit.unit_id] -= 1
                    queue.insert(0, unit)
                    mark_down(i)
                    continue
                except Exception as exc:  # noqa: BLE001 - the worker raised outside the solver
                    if sweep.attempts[unit.unit_id] < max_attempts:
                        result.retries += 1
                        progress.retries += 1
                        progress.log(f"[{run_id}] unit {unit.unit_id} raised ({type(exc).__name__}); retrying")
                        queue.insert(0, unit)
                        continue
                    res = sweep.failed_result(unit, f"{type(exc).__name__}: {exc}")
                    result.errors.append((unit.unit_id, str(exc)[-500:]))
                ok, failed, diverged = sweep.store_unit(unit, res)
                result.units_done += 1
                result.rows_ok += ok
                result.rows_failed += failed
                result.rows_diverged += diverged
                if failed:
                    err = next((r.get("error") for r in res["rows"] if r.get("error")), "")
                    progress.log(f"[{run_id}] unit {unit.unit_id}: {failed} row(s) failed: {str(err).splitlines()[0] if err else ''}")
                progress.unit_done(len(res["rows"]), failed, diverged)
                if stop_after_units is not None and result.units_done >= stop_after_units:
                    result.stopped_early = True
                    return result
                for r_ in unit.rows:
                    pending[r_.config_id] -= 1
                    if want_sets and pending[r_.config_id] == 0:
                        submit_sets(r_.config_id)
            submit_units()
    finally:
        progress.close()
        if own_actors:
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        if started_ray:
            ray.shutdown()
        result.wall_s = time.perf_counter() - t0
    progress.log(f"[{run_id}] done: {result.rows_ok} ok, {result.rows_diverged} diverged, {result.rows_failed} failed"
                 f" rows in {result.wall_s:.1f}s ({result.units_done} units, {result.sets_written} set-metric rows)")
    return result
