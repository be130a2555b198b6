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
each row records its unit's wall time inside the actor (``wall_s`` x rows), so with 1 actor ``wall -
sum(unit time)`` is the actor's start-up, Ray scheduling, driver and store overhead (model loading
happens inside the first unit). A one-row sweep run
alongside splits the 1-actor wall time into a fixed cost per sweep and a marginal efficiency, which
says how long a sweep must be for the 90 % target (``_fixed_cost_model``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks import common as C

#: the issue's target: >= 0.95 at 1 and 2 actors on a sweep of >= 5 minutes (about 340 s of bare
#: compute on an idle 2-core machine; one repetition: the sides take ~15 minutes together)
FULL = dict(images=64, lambdas=4, steps=40, batch_size=16, reps=1, threads=1, fixed_cost=True)
QUICK = dict(images=2, lambdas=2, steps=1, batch_size=2, reps=1, threads=1, fixed_cost=False)
TARGET = 0.95
LAMBDAS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 0.01, 30.0)


def spec_dict(name: str, *, images: int, lambdas: int, steps: int, batch_size: int, threads: int) -> dict:
    """The benchmark sweep as a spec dict (what a YAML file would hold)."""
    return {
        "name": name,
        "prior": "embedded",
        "dataset": {"name": "embedded", "split": "report", "count": images},
        "tasks": [{"operator": "box_inpainting", "sigma_y": [0.05]}],
        "solvers": [{"name": "dps", "num_steps": [steps], "step_sizes": [2.0]}],
        "regularizers": [{"kind": "equi", "group": "hflip", "lambdas": list(LAMBDAS[:lambdas])}],
        "seeds": [0],
        "metrics": ["psnr"],
        "batch_size": batch_size,
        "save_images": False,
        "resources": {"num_cpus": 0.5, "num_gpus": 0, "threads": threads},
    }


def sweep_plugins() -> list[str]:
    """A sweep's ``plugins``: none once trained weights exist, else the random-init stand-in's."""
    return [] if C.trained_weights_present() else [C.PLUGIN]


def start_ray() -> float | None:
    """Start a local Ray the way the driver does (never joining someone else's); seconds it took
    (also when an earlier benchmark of this process started it; None if someone else did)."""
    import ray

    from orchestrator.driver import ensure_ray

    if ray.is_initialized():
        return C.RAY_INIT_S
    os.environ.setdefault("RAY_ADDRESS", "local")  # a fresh local cluster, not one found in /tmp/ray
    t0 = time.perf_counter()
    for attempt in (1, 2):  # an overloaded machine can time the first start-up out
        try:
            ensure_ray(None)
            ray.get(ray.remote(lambda: 1).options(num_cpus=0).remote())  # up, not just launching
            break
        except Exception:  # noqa: BLE001
            ray.shutdown()
            if attempt == 2:
                raise
    C.RAY_INIT_S = time.perf_counter() - t0
    return C.RAY_INIT_S


def bare_loop(prior, units, *, autoencoder, threads: int) -> dict:
    """Solve every unit's rows in this process (see the module docstring); seconds."""
    from orchestrator.problem import batch_for
    from solvers import solve

    solve_s = 0.0
    t0 = time.perf_counter()
    with C.torch_threads(threads):
        for unit in units:
            g, rows = unit.group, unit.rows
            _, batch, reg = batch_for(unit, autoencoder)  # the worker's own problem builder
            ts = time.perf_counter()
            out = solve(g["solver"], prior, batch, int(g["num_steps"]), regularizer=reg, options=dict(g["solver_options"]))
            solve_s += time.perf_counter() - ts
            assert len(out.status) == len(rows)
    return {"solve_s": solve_s, "loop_s": time.perf_counter() - t0}


def sweep_once(spec, num_actors: int, root: Path) -> dict:
    """One ``run_sweep`` into a fresh store; wall time and the per-unit decomposition."""
    from orchestrator import store
    from orchestrator.driver import run_sweep

    store_dir = Path(tempfile.mkdtemp(prefix=f"a{num_actors}-", dir=root))
    t0 = time.perf_counter()
    res = run_sweep(spec, store_dir, num_actors=num_actors, quiet=True)
    wall = time.perf_counter() - t0
    df = store.load(store_dir, columns=["unit_id", "wall_s", "status"])
    unit_s = float(df.groupby("unit_id")["wall_s"].sum().sum())
    shutil.rmtree(store_dir, ignore_errors=True)
    return {"wall_s": wall, "driver_wall_s": res.wall_s, "rows_ok": res.rows_ok, "rows": len(df),
            "rows_failed": res.rows_failed, "unit_time_s": unit_s,
            "errors": [e[1][:300] for e in res.errors][:3]}


def _fixed_cost_model(bare: float, wall: float, bare_tiny: float, wall_tiny: float) -> dict:
    """Split a 1-actor sweep into a fixed cost and a marginal efficiency from two sweep sizes.

    ``wall(T) = F + T / m`` for T seconds of bare compute: ``m`` (marginal efficiency: how fast
    the actor turns compute into results once running) and ``F`` (actor start, imports, model
    loading, Ray scheduling: paid once per sweep) from the benchmark sweep and a one-row sweep.
    ``t90``: the bare compute a sweep needs for 90 % end-to-end efficiency (None if m <= 0.9).
    """
    if wall <= wall_tiny or bare <= bare_tiny:
        return {"marginal_efficiency": None, "fixed_s": None, "t90_s": None}
    m = (bare - bare_tiny) / (wall - wall_tiny)
    fixed = wall - bare / m
    t90 = 0.9 * fixed / (1 - 0.9 / m) if m > 0.9 else None
    return {"marginal_efficiency": m, "fixed_s": fixed, "t90_s": t90}


def run(quick: bool = False, **sizes) -> dict:
    """Bare compute loop vs the sweep's wall time with 1 and 2 actors."""
    t0 = time.perf_counter()
    cfg = {**(QUICK if quick else FULL), **sizes}
    import ray

    from orchestrator import grid, plan
    from orchestrator import spec as spec_mod

    plugins = sweep_plugins()
    prior, ae, weights = C.pixel_world()
    sizes_of = dict(lambdas=cfg["lambdas"], steps=cfg["steps"], batch_size=cfg["batch_size"], threads=cfg["threads"])
    spec = spec_mod.parse({**spec_dict("bench-orchestration", images=cfg["images"], **sizes_of), "plugins": plugins})
    # the one-row sweep (same everything, 1 image x 1 lambda x 1 step) isolates the fixed cost
    tiny = spec_mod.parse({**spec_dict("bench-orchestration-tiny", images=1, **{**sizes_of, "lambdas": 1, "steps": 1}),
                           "plugins": plugins})
    units = plan.plan(grid.expand(spec), grid.sample_ids(spec), spec.batch_size)
    tiny_units = plan.plan(grid.expand(tiny), grid.sample_ids(tiny), tiny.batch_size)
    n_rows = sum(u.size for u in units)
    ray_started_here = not ray.is_initialized()
    ray_init_s = start_ray()
    tmp = Path(tempfile.mkdtemp(prefix="equibench-orch-", dir=os.environ.get("BENCH_TMPDIR")))
    reps: dict[str, list] = {"bare": [], "sweep1": [], "sweep2": [], "bare_tiny": [], "sweep1_tiny": []}
    try:
        sides = {
            "bare": lambda: reps["bare"].append(bare_loop(prior, units, autoencoder=ae, threads=cfg["threads"])),
            "sweep1": lambda: reps["sweep1"].append(sweep_once(spec, 1, tmp)),
            "sweep2": lambda: reps["sweep2"].append(sweep_once(spec, 2, tmp)),
        }
        if cfg.get("fixed_cost", True):
            sides["bare_tiny"] = lambda: reps["bare_tiny"].append(
                bare_loop(prior, tiny_units, autoencoder=ae, threads=cfg["threads"]))
            sides["sweep1_tiny"] = lambda: reps["sweep1_tiny"].append(sweep_once(tiny, 1, tmp))
        C.interleave(sides, reps=cfg["reps"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ray_started_here and not C.KEEP_RAY:
            ray.shutdown()
    bare = [r["solve_s"] for r in reps["bare"]]
    w1 = [r["wall_s"] for r in reps["sweep1"]]
    w2 = [r["wall_s"] for r in reps["sweep2"]]
    eff1 = C.median([b / w for b, w in zip(bare, w1)])
    eff2 = C.median([b / (2 * w) for b, w in zip(bare, w2)])
    bare_m, w1_m, w2_m = C.median(bare), C.median(w1), C.median(w2)
    unit1 = C.median([r["unit_time_s"] for r in reps["sweep1"]])
    unit2 = C.median([r["unit_time_s"] for r in reps["sweep2"]])
    sweeps = reps["sweep1"] + reps["sweep2"]
    ok = all(r["rows_ok"] == n_rows and r["rows"] == n_rows for r in sweeps)
    model = {"marginal_efficiency": None, "fixed_s": None, "t90_s": None}
    if reps["sweep1_tiny"]:
        model = _fixed_cost_model(bare_m, w1_m, C.median([r["solve_s"] for r in reps["bare_tiny"]]),
                                  C.median([r["wall_s"] for r in reps["sweep1_tiny"]]))
    init_txt = (f"ray.init took {ray_init_s:.1f} s in this process; counted in, 1 actor: "
                f"{C.median([b / (w + ray_init_s) for b, w in zip(bare, w1)]):.1%}" if ray_init_s is not None
                else "Ray was started outside this benchmark")
    notes = [
        f"{n_rows} rows = {cfg['lambdas']} lambdas x {cfg['images']} images, DPS + Equi, {cfg['steps']} steps, "
        f"{len(units)} units of <= {cfg['batch_size']} rows, {cfg['threads']} torch thread(s) per process; weights: {weights}; "
        f"plugins: {', '.join(plugins) or 'none'}.",
        "efficiency_1actor = bare solve() time / sweep wall (1 actor); efficiency_2actors = bare / (2 x wall(2 actors)); "
        f"medians of per-repetition ratios; Ray already running ({init_txt}).",
        f"1 actor: {w1_m:.1f} s wall = {unit1:.1f} s inside run_unit (solve + batch building + metrics + first-unit "
        f"model loading) + {w1_m - unit1:.1f} s outside (actor start-up, driver, store); bare solve {bare_m:.1f} s.",
        f"2 actors: {w2_m:.1f} s wall; the actors spent {unit2:.1f} s in run_unit together; {len(units)} units over 2 "
        "actors " + ("split evenly." if len(units) % 2 == 0 else "cannot split evenly (the last unit runs alone).")
        + " Each actor loads its own models, so the fixed cost is paid in parallel, not halved.",
    ]
    if model["marginal_efficiency"] is not None:
        notes.append(
            f"Fixed vs marginal (from this sweep and a one-row sweep): each 1-actor sweep pays ~{model['fixed_s']:.1f} s once "
            f"(actor process, imports, model loading, scheduling, store) and then runs at {model['marginal_efficiency']:.1%} "
            "of the bare loop's speed; "
            + (f"sweeps with more than ~{model['t90_s']:.0f} s of compute reach 90% end to end." if model["t90_s"]
               else "at this marginal efficiency no sweep length reaches 90%."))
    if not ok:
        notes.append("WARNING: not every sweep stored all rows ok: " + str([r["errors"] for r in sweeps]))
    busy2, slow2 = unit2 / (2 * w2_m), unit2 / unit1
    notes.append(f"2 actors: the actors were busy {busy2:.1%} of the wall time (run_unit time / (2 x wall)), and the same "
                 f"units took {slow2:.3f}x their 1-actor time inside run_unit: two solver processes share the 2 cores "
                 "with Ray's own processes and the driver, so compute per unit slows; the orchestration itself "
                 "(idle actors) costs the rest.")
    if min(eff1, eff2) < TARGET and not quick:
        why = [f"1 actor: fixed cost ~{w1_m - bare_m:.1f} s outside the solver"] if eff1 < TARGET else []
        if eff2 < TARGET:
            why.append(f"2 actors: {1 - busy2:.1%} idle actor time and {slow2 - 1:.1%} slower compute per unit")
        notes.append(f"Target {TARGET:.0%} missed (1 actor {eff1:.1%}, 2 actors {eff2:.1%}) on this {bare_m:.0f} s sweep: "
                     + "; ".join(why) + ".")
    measured = [
        ["ray.init (local cluster, once per session)", None if ray_init_s is None else round(ray_init_s, 2), "s"],
        ["bare loop: solve() time (pure compute)", round(bare_m, 2), "s (median)"],
        ["bare loop: total incl. batch building", round(C.median([r["loop_s"] for r in reps["bare"]]), 2), "s (median)"],
        ["sweep wall, 1 actor", round(w1_m, 2), "s (median)"],
        ["sweep wall, 2 actors", round(w2_m, 2), "s (median)"],
        ["time inside run_unit, 1 actor", round(unit1, 2), "s (median)"],
        ["time inside run_unit, 2 actors (sum over actors)", round(unit2, 2), "s (median)"],
        ["efficiency, 1 actor (bare / wall)", round(eff1, 4), "fraction"],
        ["efficiency, 2 actors (bare / (2 x wall))", round(eff2, 4), "fraction"],
        ["speedup 2 actors vs 1 actor (wall)", round(w1_m / w2_m, 3), "x"],
    ]
    if reps["sweep1_tiny"]:
        measured += [
            ["one-row sweep wall, 1 actor", round(C.median([r["wall_s"] for r in reps["sweep1_tiny"]]), 2), "s (median)"],
            ["fixed cost per 1-actor sweep (model)", None if model["fixed_s"] is None else round(model["fixed_s"], 2), "s"],
            ["marginal efficiency, 1 actor (model)", None if model["marginal_efficiency"] is None
             else round(model["marginal_efficiency"], 4), "fraction"],
            ["bare compute needed for 90% end to end (model)", None if model["t90_s"] is None else round(model["t90_s"], 1), "s"],
        ]
    return C.result(
        "orchestration", "Orchestration efficiency (bare loop vs Ray sweep)",
        metrics={"orchestration_efficiency_1actor": round(eff1, 4), "orchestration_efficiency_2actors": round(eff2, 4),
                 "orchestration_marginal_efficiency_1actor": None if model["marginal_efficiency"] is None
                 else round(model["marginal_efficiency"], 4)},
        checks=[C.check("orchestration_efficiency_1actor", round(eff1, 4), TARGET),
                C.check("orchestration_efficiency_2actors", round(eff2, 4), TARGET)],
        measured=measured,
        details={"sizes": cfg, "rows": n_rows, "units": len(units), "weights": weights, "plugins": plugins,
                 "ray_init_s": ray_init_s, "fixed_cost_model": model, "reps": reps, "all_rows_ok": ok,
                 "load_average": C.load_average()},
        notes=notes, seconds=time.perf_counter() - t0, quick=quick)


if __name__ == "__main__":
    raise SystemExit(C.main(run))
