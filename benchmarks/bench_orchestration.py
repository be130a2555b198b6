"""Orchestration efficiency: a bare compute loop vs the Ray sweep's wall time, with 1 and 2 actors.

The same rows on every side: a DPS + Equi sweep (embedded pixel prior, box inpainting, ``k``
lambdas x ``n`` images), planned by ``orchestrator.plan`` into units of ``batch_size`` rows.

- bare: no Ray, no store, models already loaded: for each unit the loop builds the row batch as the
  worker does (images, one operator instance and noise per row, per-row lambda/step size and
  generators) and calls ``solvers.solve``. ``bare_compute`` is the sum of the ``solve()`` times
  (pure compute); the loop's total (batch building included) is reported as well.
- sweep: ``orchestrator.driver.run_sweep`` into a fresh store with ``num_actors`` = 1 or 2, on a
  Ray that is already running (a cluster is started once per session, not per sweep; its start-up
  time is measured and reported separately). The wall time includes starting the actors, loading
  the prior and MPE autoencoder in each, planning, the row metrics (PSNR only: metric networks are
  the resident-vs-reload benchmark's subject), the driver's ``ray.wait`` loop and the Parquet writes.

Definitions (every side runs torch with ``threads`` threads per process, default 1 = the spec's
per-actor default, so 2 actors use the machine's 2 cores):

    efficiency_1actor  = bare_compute / wall(1 actor)
    efficiency_2actors = bare_compute / (2 x wall(2 actors))     (1.0 = perfect 2-way scaling)

Sides alternate (bare, 1 actor, 2 actors, rotated), ``reps`` times; each efficiency is the median of
the per-repetition ratios. Where the time goes outside the solver is decomposed from the store:
each row records its unit's wall time inside the actor (``wall_s`` x rows), so ``wall - sum(unit
time) / actors`` is the actors' start-up, model loading and driver overhead.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import common as C

FULL = dict(images=16, lambdas=4, steps=8, batch_size=16, reps=2, threads=1)
QUICK = dict(images=2, lambdas=2, steps=1, batch_size=2, reps=1, threads=1)
TARGET_1 = 0.90
LAMBDAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 0.01, 30.0)


def spec_dict(name: str, *, images: int, lambdas: int, steps: int, batch_size: int, threads: int) -> dict:
    """The benchmark sweep as a spec dict (what a YAML file would hold)."""
    return {
        "name": name,
        "prior": "embedded",
        "dataset": {"name": "embedded", "split": "val", "count": images},
        "tasks": [{"operator": "box_inpainting", "sigma_y": [0.05]}],
        "solvers": [{"name": "dps", "num_steps": [steps], "step_sizes": [2.0]}],
        "regularizers": [{"kind": "equi", "group": "hflip", "lambdas": list(LAMBDAS[:lambdas])}],
        "seeds": [0],
        "metrics": ["psnr"],
        "batch_size": batch_size,
        "save_images": False,
        "resources": {"num_cpus": 0.5, "num_gpus": 0, "threads": threads},
    }


def sweep_backend() -> str | None:
    """``None`` (the real science) once trained weights exist, else the random-init stand-in."""
    return None if C.trained_weights_present() else C.BACKEND


def start_ray() -> float:
    """Start a local Ray the way the driver does (never joining someone else's); seconds taken."""
    import ray

    from orchestrator.driver import ensure_ray

    if ray.is_initialized():
        return 0.0
    os.environ.setdefault("RAY_ADDRESS", "local")  # a fresh local cluster, not one found in /tmp/ray
    t0 = time.perf_counter()
    ensure_ray(None)
    ray.get(ray.remote(lambda: 1).options(num_cpus=0).remote())  # the cluster is up, not just launching
    return time.perf_counter() - t0


def bare_loop(prior, units, *, autoencoder, threads: int) -> dict:
    """Solve every unit's rows in this process (see the module docstring); seconds."""
    import torch

    from operators import add_noise, build_operator
    from orchestrator import data
    from solvers import RegularizerSpec, RowBatch, solve
    from solvers.rng import make_generators

    solve_s = 0.0
    t0 = time.perf_counter()
    with C.torch_threads(threads):
        for unit in units:
            g, rows = unit.group, unit.rows
            x_true = data.load(g["dataset"], g["split"], [r.sample_id for r in rows])
            op = build_operator(g["operator"], image_shape=tuple(x_true.shape[1:]), seeds=[r.op_seed for r in rows],
                                **g["op_params"])
            with torch.no_grad():
                y = add_noise(op.forward(x_true), g["sigma_y"], make_generators([r.noise_seed for r in rows]))
            batch = RowBatch(y=y, operator=op, generators=make_generators([r.row_seed for r in rows]),
                             params={"lam": torch.tensor([r.lam for r in rows]),
                                     "step_size": torch.tensor([r.step_size for r in rows])}, x_true=x_true)
            reg = RegularizerSpec(kind=g["reg_kind"], mpe=g["mpe"], group=g["group"], reduction=g["reduction"],
                                  schedule=g["schedule"], freq=g["freq"], cutoff_frac=g["cutoff_frac"],
                                  autoencoder=autoencoder)
            ts = time.perf_counter()
            out = solve(g["solver"], prior, batch, int(g["num_steps"]), regularizer=reg, options=dict(g["solver_options"]))
            solve_s += time.perf_counter() - ts
            assert len(out.status) == len(rows)
    return {"solve_s": solve_s, "loop_s": time.perf_counter() - t0}


def sweep_once(spec, num_actors: int, backend: str | None, root: Path) -> dict:
    """One ``run_sweep`` into a fresh store; wall time and the per-unit decomposition."""
    from orchestrator import store
    from orchestrator.driver import run_sweep

    store_dir = Path(tempfile.mkdtemp(prefix=f"a{num_actors}-", dir=root))
    t0 = time.perf_counter()
    res = run_sweep(spec, store_dir, num_actors=num_actors, backend=backend, quiet=True)
    wall = time.perf_counter() - t0
    df = store.load(store_dir, columns=["unit_id", "wall_s", "status"])
    unit_s = float(df.groupby("unit_id")["wall_s"].sum().sum())
    shutil.rmtree(store_dir, ignore_errors=True)
    return {"wall_s": wall, "driver_wall_s": res.wall_s, "rows_ok": res.rows_ok, "rows": len(df),
            "rows_failed": res.rows_failed, "unit_time_s": unit_s,
            "errors": [e[1][:300] for e in res.errors][:3]}


def run(quick: bool = False, **sizes) -> dict:
    """Bare compute loop vs the sweep's wall time with 1 and 2 actors."""
    t0 = time.perf_counter()
    cfg = {**(QUICK if quick else FULL), **sizes}
    import ray

    from orchestrator import grid, plan
    from orchestrator import spec as spec_mod

    backend = sweep_backend()
    prior, ae, weights = C.pixel_world()
    spec = spec_mod.parse(spec_dict("bench-orchestration", images=cfg["images"], lambdas=cfg["lambdas"],
                                    steps=cfg["steps"], batch_size=cfg["batch_size"], threads=cfg["threads"]),
                          backend=backend)
    units = plan.plan(grid.expand(spec, backend), grid.sample_ids(spec), spec.batch_size)
    n_rows = sum(u.size for u in units)
    ray_started_here = not ray.is_initialized()
    ray_init_s = start_ray()
    tmp = Path(tempfile.mkdtemp(prefix="equibench-orch-", dir=os.environ.get("BENCH_TMPDIR")))
    reps: dict[str, list] = {"bare": [], "sweep1": [], "sweep2": []}
    try:
        sides = {
            "bare": lambda: reps["bare"].append(bare_loop(prior, units, autoencoder=ae, threads=cfg["threads"])),
            "sweep1": lambda: reps["sweep1"].append(sweep_once(spec, 1, backend, tmp)),
            "sweep2": lambda: reps["sweep2"].append(sweep_once(spec, 2, backend, tmp)),
        }
        C.interleave(sides, reps=cfg["reps"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ray_started_here:
            ray.shutdown()
    bare = [r["solve_s"] for r in reps["bare"]]
    w1 = [r["wall_s"] for r in reps["sweep1"]]
    w2 = [r["wall_s"] for r in reps["sweep2"]]
    eff1 = C.median([b / w for b, w in zip(bare, w1)])
    eff2 = C.median([b / (2 * w) for b, w in zip(bare, w2)])
    eff1_with_init = C.median([b / (w + ray_init_s) for b, w in zip(bare, w1)])
    bare_m, w1_m, w2_m = C.median(bare), C.median(w1), C.median(w2)
    unit1 = C.median([r["unit_time_s"] for r in reps["sweep1"]])
    unit2 = C.median([r["unit_time_s"] for r in reps["sweep2"]])
    ok = all(r["rows_ok"] == n_rows for r in reps["sweep1"] + reps["sweep2"])
    notes = [
        f"{n_rows} rows = {cfg['lambdas']} lambdas x {cfg['images']} images, DPS + Equi, {cfg['steps']} steps, "
        f"{len(units)} units of <= {cfg['batch_size']} rows, {cfg['threads']} torch thread(s) per process; weights: {weights}; "
        f"backend: {backend or 'real'}.",
        "efficiency_1actor = bare solve() time / sweep wall (1 actor); efficiency_2actors = bare / (2 x wall(2 actors)); "
        f"Ray already running (ray.init took {ray_init_s:.1f} s here; counted in, 1 actor: {eff1_with_init:.1%}).",
        f"1 actor: {w1_m:.1f} s wall = {unit1:.1f} s inside run_unit (solve + batch building + metrics + first-unit "
        f"model loading) + {w1_m - unit1:.1f} s outside (actor start-up, driver, store); bare solve {bare_m:.1f} s.",
        f"2 actors: {w2_m:.1f} s wall; the actors spent {unit2:.1f} s in run_unit together "
        f"({unit2 / 2:.1f} s each if balanced); {len(units)} units over 2 actors "
        + ("split evenly." if len(units) % 2 == 0 else "cannot split evenly (the last unit runs alone)."),
    ]
    if not ok:
        notes.append("WARNING: not every sweep stored all rows ok: " + str([r["errors"] for r in reps["sweep1"] + reps["sweep2"]]))
    if eff1 < TARGET_1 and not quick:
        notes.append(f"Target missed at 1 actor: the fixed cost outside the solver (~{w1_m - bare_m:.1f} s: actor "
                     "process start, imports, model loading, Ray scheduling, store writes) is not amortised by a "
                     f"{bare_m:.0f} s sweep; it stays constant as sweeps grow, so longer sweeps approach 100%.")
    measured = [
        ["ray.init (local cluster, once per session)", round(ray_init_s, 2), "s"],
        ["bare loop: solve() time (pure compute)", round(bare_m, 2), "s (median)"],
        ["bare loop: total incl. batch building", round(C.median([r["loop_s"] for r in reps["bare"]]), 2), "s (median)"],
        ["sweep wall, 1 actor", round(w1_m, 2), "s (median)"],
        ["sweep wall, 2 actors", round(w2_m, 2), "s (median)"],
        ["time inside run_unit, 1 actor", round(unit1, 2), "s (median)"],
        ["time inside run_unit, 2 actors (sum over actors)", round(unit2, 2), "s (median)"],
        ["efficiency, 1 actor (bare / wall)", round(eff1, 4), "fraction"],
        ["efficiency, 1 actor, ray.init counted in", round(eff1_with_init, 4), "fraction"],
        ["efficiency, 2 actors (bare / (2 x wall))", round(eff2, 4), "fraction"],
        ["speedup 2 actors vs 1 actor (wall)", round(w1_m / w2_m, 3), "x"],
    ]
    return C.result(
        "orchestration", "Orchestration efficiency (bare loop vs Ray sweep)",
        metrics={"orchestration_efficiency_1actor": round(eff1, 4), "orchestration_efficiency_2actors": round(eff2, 4)},
        checks=[C.check("orchestration_efficiency_1actor", round(eff1, 4), TARGET_1)],
        measured=measured,
        details={"sizes": cfg, "rows": n_rows, "units": len(units), "weights": weights, "backend": backend,
                 "ray_init_s": ray_init_s, "reps": reps, "all_rows_ok": ok, "load_average": C.load_average()},
        notes=notes, seconds=time.perf_counter() - t0, quick=quick)


if __name__ == "__main__":
    raise SystemExit(C.main(run))
