"""``equibench plan SPEC``: what a run would do, without doing it (also ``run --dry-run``).

Prints configs, rows, rows already stored, work units and an estimated time from the store's
per-row timings of the same solver and step count (median ``wall_s`` of ok rows), divided over
the actors. Configs, rows and units are counted exactly without expanding the grid
(``grid_count``), so a 10^6-config grid plans in seconds; the grid is expanded only when the store
holds rows of the spec's run (the stored-rows and run-identity comparisons need its config ids),
and not above ``guards.MAX_CONFIGS`` configs (then the stored rows are not compared).
"""
from __future__ import annotations

import os
from pathlib import Path


def _fmt_s(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def summarize(spec, store_dir=None, actors: int | None = None, retry_diverged: bool = False,
              extend: bool = False) -> dict:
    """The plan of ``spec`` against ``store_dir`` (configs, rows, stored, units, estimate, and why
    `run` would refuse the grid under the spec's name, unless ``extend``)."""
    from orchestrator import grid_count, guards, store

    n_smp = guards.n_samples(spec)
    counted = grid_count.count(spec, n_smp, spec.unit_rows)  # exact, no Config built
    out = {"configs": counted.configs, "samples": n_smp, "rows": counted.configs * n_smp, "stored": 0,
           "units": counted.units, "todo_by": counted.todo_by, "limit": guards.MAX_CONFIGS, "refused": None}
    have_store = bool(store_dir) and Path(store_dir).is_dir()
    holds_run = have_store and spec.name in store.list_runs(store_dir)
    if holds_run and counted.configs > guards.MAX_CONFIGS:
        out["stored"] = None  # comparing with the stored rows needs every config id: expanding, minutes
    elif holds_run:  # only then: the stored rows and the run's identity need the grid's config ids
        from orchestrator import grid, plan

        configs = grid.expand(spec)
        samples = grid.sample_ids(spec)
        keys = {(c.config_id, s) for c in configs for s in samples}
        statuses = ("ok",) if retry_diverged else ("ok", "diverged")  # a diverged row is a result
        done = store.completed_keys(store_dir, spec.name, statuses=statuses) & keys
        units = plan.plan(configs, samples, spec.unit_rows, done)
        by_id = {c.config_id: c for c in configs}
        todo_by: dict[tuple[str, int], int] = {}
        for u in units:
            for r in u.rows:
                c = by_id[r.config_id]
                todo_by[(c.solver, c.num_steps)] = todo_by.get((c.solver, c.num_steps), 0) + 1
        out.update(configs=len(configs), rows=len(keys), stored=len(done), units=len(units), todo_by=todo_by)
        out["refused"] = None if extend else _identity_refusal(spec, store_dir, configs, samples)
    out["actors"] = actors or spec.resources.num_actors or max(1, int((os.cpu_count() or 1) // max(
        spec.resources.threads, spec.resources.num_cpus)))
    out["estimate_s"], out["unknown"] = _estimate(store_dir if have_store else None, out["todo_by"], out["actors"])
    return out


def _identity_refusal(spec, store_dir, configs, samples) -> str | None:
    """Why `run` would refuse this grid under the spec's name in ``store_dir`` (None: it would not)."""
    import warnings

    from orchestrator import run_identity, store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.StoreWarning)
        record = store.read_run(store_dir, spec.name)
    try:
        run_identity.check(record, spec.name, store_dir, run_identity.grid_hash([c.config_id for c in configs], samples),
                           len(configs), len(samples))
    except run_identity.RunIdentityError as exc:
        return str(exc.with_overrides(spec.overrides) if spec.overrides else exc)
    return None


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


def _rows_label(spec) -> str:
    """``batch_size N``, and the rows per unit when ``compute.max_batch`` sets them."""
    mb = spec.compute.max_batch
    return f"batch_size {spec.batch_size}" + ("" if mb is None else f", {spec.unit_rows} rows per unit with "
                                                                    f"compute.max_batch {mb}")


def print_plan(spec, info: dict) -> None:
    kind = "" if info["configs"] <= info["limit"] else f" (by arithmetic, not expanded: above {info['limit']:,} configs)"
    print(f"{spec.name}: {info['configs']:,} configs x {info['samples']:,} samples = {info['rows']:,} rows{kind}")
    if info["stored"] is None:
        print(f"  already stored: rows of run {spec.name!r} are in the store but not compared (above the limit the "
              f"grid is not expanded); to compute: at most {info['rows']:,} rows in at most {info['units']:,} units "
              f"({_rows_label(spec)})")
    else:
        print(f"  already stored: {info['stored']:,} rows; to compute: {info['rows'] - info['stored']:,} rows in "
              f"{info['units']:,} units ({_rows_label(spec)})")
    if info["estimate_s"] is None:
        print(f"  estimated time: unknown (no stored timings for {', '.join(f'{s}/{n} steps' for s, n in info['unknown'])})")
    else:
        left = f"; no timings for {', '.join(f'{s}/{n} steps' for s, n in info['unknown'])}" if info["unknown"] else ""
        print(f"  estimated time: {_fmt_s(info['estimate_s'])} on {info['actors']} actor(s), from stored per-row timings{left}")
    if info["configs"] > info["limit"]:
        print(f"  `equibench run` refuses grids above {info['limit']:,} configs unless --force")
    if info.get("refused"):
        print(f"  `equibench run` would refuse it: {info['refused']}")


def cmd_plan(args) -> int:
    from orchestrator import overrides as _overrides, spec as spec_mod
    from orchestrator.commands.run import check_actors

    check_actors(args.actors)
    overrides = _overrides.from_args(args)
    spec = spec_mod.parse_sweep(args.spec, overrides=overrides)
    store_dir = args.store or spec.store
    if args.store:
        from orchestrator import store

        store.check_readable(args.store)
    if overrides:
        print(_overrides.applied_line(spec.name, overrides))
    print_plan(spec, summarize(spec, store_dir, args.actors))
    return 0


def register(subparsers) -> None:
    from orchestrator import overrides

    p = subparsers.add_parser("plan", help="what `run SPEC` would compute (configs, rows, units, time), computing nothing")
    p.add_argument("spec", help="sweep spec YAML")
    overrides.add_arguments(p)
    p.add_argument("--store", help="store to count already-stored rows and timings from (default: the spec's store:)")
    p.add_argument("--actors", type=int, help="actors the estimate divides over (default: spec or CPUs)")
    p.set_defaults(func=cmd_plan)
