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
import os
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from orchestrator import grid as _grid
from orchestrator import plan as _plan
from orchestrator import store
from orchestrator.progress import Progress
from orchestrator.spec import SET_METRICS, SweepSpec

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def code_version() -> str:
    """``git describe`` of the checkout (``-dirty`` when modified), else the package version."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return f"equibench-{version('equibench')}"
    except Exception:  # noqa: BLE001
        return "unknown"


def ensure_ray(address: str | None = None) -> bool:
    """Connect to ``address`` or start local Ray with this machine's CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
    kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=False, runtime_env=env)
    if address:
        ray.init(address=address, **kwargs)
        return True
    # address='local' always starts a fresh local Ray, never attaching to another process's
    # cluster (ray.init() alone may connect to the latest one found under /tmp/ray). On an
    # overloaded machine the raylet can miss Ray's start-up deadline: retry once before failing.
    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), **kwargs)
            return True
        except Exception:  # noqa: BLE001 - Ray raises several types for a start-up timeout
            if attempt == 2:
                raise
            ray.shutdown()
            time.sleep(2.0)
    return True


def auto_actors(spec: SweepSpec, n_units: int) -> int:
    """As many actors as the cluster can hold (GPUs / num_gpus, or CPUs / threads), at most n_units."""
    import ray

    res = ray.cluster_resources()
    r = spec.resources
    if r.num_gpus > 0:
        n = int(res.get("GPU", 0) // r.num_gpus)
    else:
        n = int(res.get("CPU", 1) // max(r.threads, r.num_cpus))
    return max(1, min(n, n_units))


def start_actors(spec: SweepSpec, n: int, backend: str | None = None, name: str | None = None) -> list:
    """``n`` Worker actors with the spec's resources (fractional CPUs/GPUs, explicit threads)."""
    from orchestrator.worker import Worker

    r = spec.resources
    return [
        Worker.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus).remote(
            backend=backend, threads=r.threads, use_gpu=r.num_gpus > 0, metric_weights=dict(spec.metric_weights),
            name=f"{name or spec.name}-{i}")
        for i in range(n)
    ]


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

    def __init__(self, spec: SweepSpec, store_dir, backend, progress: Progress, context: dict, max_attempts: int):
        self.spec, self.store_dir, self.backend = spec, Path(store_dir), backend
        self.progress, self.context, self.max_attempts = progress, context, max_attempts
        self.attempts: dict[str, int] = defaultdict(int)

    def store_unit(self, unit: _plan.WorkUnit, result: dict) -> tuple[int, int, int]:
        rows = result["rows"]
        store.write_unit(self.store_dir, self.spec.name, unit.unit_id, rows)
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


def run_sweep(spec: SweepSpec, store_dir, *, address: str | None = None, num_actors: int | None = None,
              backend: str | None = None, progress: Progress | None = None, quiet: bool = False,
              inflight_per_actor: int = 2, max_attempts: int = 3, stop_after_units: int | None = None,
              context: dict | None = None, actors: list | None = None, actor_wait_s: float = 600.0) -> SweepResult:
    """Run (or resume) ``spec`` into ``store_dir``; see the module docstring.

    ``stop_after_units`` stops the driver after storing that many units, as if it had been killed
    (a test hook for resume). ``context`` adds run_kind/trial_id (Tune trials use the same path).
    ``actors``: existing ``Worker`` handles to use (and leave running), e.g. shared by Tune trials
    or a test module, so their resident models are reused across sweeps.
    """
    t0 = time.perf_counter()
    run_id = spec.name
    context = {"run_id": run_id, "run_kind": "sweep", "code_version": code_version(),
               "save_images": spec.save_images or any(m in SET_METRICS for m in spec.metrics),
               "metrics": list(spec.metrics), **(context or {})}
    configs = _grid.expand(spec, backend)
    samples = _grid.sample_ids(spec)
    total = len(configs) * len(samples)
    store.register_run(store_dir, run_id, spec.canonical(), total, n_configs=len(configs), n_samples=len(samples))
    done = store.completed_keys(store_dir, run_id, context.get("trial_id"))
    units = _plan.plan(configs, samples, spec.batch_size, done)
    skipped = sum(1 for c in configs for s in samples if (c.config_id, s) in done)
    result = SweepResult(run_id, total, skipped, units=len(units))

    # Configs whose set metrics are still owed: pending rows count down as units come back.
    want_sets = [m for m in spec.metrics if m in SET_METRICS]
    by_id = {c.config_id: c for c in configs}
    pending = defaultdict(int)
    for u in units:
        for r in u.rows:
            pending[r.config_id] += 1
    sets_todo: list[str] = []
    if want_sets:
        have_sets = set(store.load_sets(store_dir, run=run_id, columns=["config_id"])["config_id"])
        sets_todo = [cid for cid in by_id if pending[cid] == 0 and cid not in have_sets]

    progress = progress or Progress(run_id, len(units), sum(u.size for u in units), skipped, quiet=quiet)
    if not units and not sets_todo:
        progress.log(f"[{run_id}] nothing to compute: all {total} rows already stored ok in {store_dir}")
        result.wall_s = time.perf_counter() - t0
        return result

    import ray

    started_ray = ensure_ray(address)
    own_actors = actors is None
    if own_actors:
        n_actors = num_actors or spec.resources.num_actors or auto_actors(spec, max(len(units), 1))
        n_actors = max(1, min(n_actors, max(len(units), 1)))
        actors = start_actors(spec, n_actors, backend)
    n_actors = len(actors)
    sweep = _Sweep(spec, store_dir, backend, progress, context, max_attempts)
    progress.start()
    progress.log(f"[{run_id}] {len(units)} units on {n_actors} actor(s); {skipped}/{total} rows already stored")
    queue = list(units)
    inflight: dict = {}  # ObjectRef -> (kind, payload, actor index)
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
                    except ray.exceptions.RayActorError:
                        mark_down(i)
                        submit_sets(cid)
                        continue
                    except Exception as exc:  # noqa: BLE001
                        got = {"error": f"{type(exc).__name__}: {exc}"}
                    store.write_sets(store_dir, run_id, cid, [_set_row(spec, by_id[cid], n, got, context, n == len(samples))])
                    result.sets_written += 1
                    continue
                unit = payload
                try:
                    res = ray.get(ref)
                except ray.exceptions.RayActorError:  # the actor died (node lost, killed): not the unit's fault
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
