"""``equibench plan SPEC``: what a run would do, without doing it (also ``run --dry-run``).

Prints configs, rows, rows already stored, work units and an estimated time from the store's
per-row timings of the same solver and step count (median ``wall_s`` of ok rows), divided over
the actors. Grids above ``guards.MAX_CONFIGS`` are counted by arithmetic, never expanded, so a
10^6-config grid plans in well under a second.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def _arithmetic(spec, n_samples: int) -> dict:
    units = 0
    per_key: dict[tuple[str, int], int] = {}
    for sol in spec.solvers:
        for task in spec.tasks:
            sizes = max(1, len(sol.step_sizes_for(task.label)))
            for reg in spec.regularizers:
                per_group = sizes * len(spec.seeds) * (len(reg.lambdas) if reg.kind != "none" else 1)
                for steps in sol.num_steps:
                    groups = len(task.sigma_y)
                    units += groups * math.ceil(per_group * n_samples / spec.batch_size)
                    per_key[(sol.name, steps)] = per_key.get((sol.name, steps), 0) + groups * per_group * n_samples
    return {"units": units, "todo_by": per_key}


def summarize(spec, store_dir=None, backend=None, actors: int | None = None, retry_diverged: bool = False) -> dict:
    """The plan of ``spec`` against ``store_dir`` (configs, rows, stored, units, estimate)."""
    from orchestrator import guards, store

    n_cfg = guards.grid_size(spec)
    n_smp = guards.n_samples(spec)
    out = {"configs": n_cfg, "samples": n_smp, "rows": n_cfg * n_smp, "stored": 0, "exact": False,
           "limit": guards.MAX_CONFIGS}
    have_store = bool(store_dir) and Path(store_dir).is_dir()
    if n_cfg <= guards.MAX_CONFIGS:
        from orchestrator import grid, plan

        configs = grid.expand(spec, backend)
        samples = grid.sample_ids(spec)
        keys = {(c.config_id, s) for c in configs for s in samples}
        statuses = ("ok",) if retry_diverged else ("ok", "diverged")  # a diverged row is a result
        done = store.completed_keys(store_dir, spec.name, statuses=statuses) & keys if have_store else set()
        units = plan.plan(configs, samples, spec.batch_size, done)
        by_id = {c.config_id: c for c in configs}
        todo_by: dict[tuple[str, int], int] = {}
        for u in units:
            for r in u.rows:
                c = by_id[r.config_id]
                todo_by[(c.solver, c.num_steps)] = todo_by.get((c.solver, c.num_steps), 0) + 1
        out.update(configs=len(configs), rows=len(keys), stored=len(done), units=len(units), todo_by=todo_by, exact=True)
    else:
        out.update(_arithmetic(spec, n_smp))
    out["actors"] = actors or spec.resources.num_actors or max(1, int((os.cpu_count() or 1) // max(
        spec.resources.threads, spec.resources.num_cpus)))
    out["estimate_s"], out["unknown"] = _estimate(store_dir if have_store else None, out["todo_by"], out["actors"])
    return out


def _estimate(store_dir, todo_by: dict, actors: int):
    """Seconds for the rows to do, from stored timings; and the (solver, steps) without any."""
    if not todo_by:
        return 0.0, []
    if store_dir is None:
        return None, sorted(todo_by)
    import warnings

    from orchestrator import store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.StoreWarning)
        df = store.load(store_dir, filters={"status": "ok"}, columns=["solver", "num_steps", "wall_s"], dedupe=False)
    med = df.dropna(subset=["wall_s"]).groupby(["solver", "num_steps"])["wall_s"].median().to_dict()
    known = [(k, n) for k, n in todo_by.items() if k in med]
    unknown = sorted(k for k in todo_by if k not in med)
    if not known:
        return None, unknown
    return sum(n * med[k] for k, n in known) / max(actors, 1), unknown


def print_plan(spec, info: dict) -> None:
    kind = "" if info["exact"] else f" (by arithmetic, not expanded: above {info['limit']:,} configs)"
    print(f"{spec.name}: {info['configs']:,} configs x {info['samples']:,} samples = {info['rows']:,} rows{kind}")
    print(f"  already stored: {info['stored']:,} rows; to compute: {info['rows'] - info['stored']:,} rows in "
          f"{info['units']:,} units (batch_size {spec.batch_size})")
    if info["estimate_s"] is None:
        print(f"  estimated time: unknown (no stored timings for {', '.join(f'{s}/{n} steps' for s, n in info['unknown'])})")
    else:
        left = f"; no timings for {', '.join(f'{s}/{n} steps' for s, n in info['unknown'])}" if info["unknown"] else ""
        print(f"  estimated time: {_fmt_s(info['estimate_s'])} on {info['actors']} actor(s), from stored per-row timings{left}")
    if info["configs"] > info["limit"]:
        print(f"  `equibench run` refuses grids above {info['limit']:,} configs unless --force")


def cmd_plan(args) -> int:
    from orchestrator import spec as spec_mod
    from orchestrator.commands.run import check_actors

    check_actors(args.actors)
    spec = spec_mod.parse_sweep(args.spec, backend=args.backend)
    store_dir = args.store or spec.store
    if args.store:
        from orchestrator import store

        store.check_readable(args.store)
    print_plan(spec, summarize(spec, store_dir, args.backend, args.actors))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("plan", help="what `run SPEC` would compute (configs, rows, units, time), computing nothing")
    p.add_argument("spec", help="sweep spec YAML")
    p.add_argument("--store", help="store to count already-stored rows and timings from (default: the spec's store:)")
    p.add_argument("--actors", type=int, help="actors the estimate divides over (default: spec or CPUs)")
    p.add_argument("--backend", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_plan)
