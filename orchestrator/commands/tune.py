"""``equibench tune SPEC.yaml [KEY=VALUE ...] --store DIR --out DIR2 [--resume] [--address ADDR]``:
a Ray Tune search.

The spec is a sweep spec with a ``tune:`` section (the ``orchestrator.tune`` package documents it;
see ``configs/tune-smoke.yaml``). Every problem in the spec is reported before Ray starts. Trials run
on the same resident worker actors as sweeps; their rows (``run_kind`` ``tune``) are stored in
``--store`` by the search's one writer on the driver's node, never by the trials. Tune's own state
goes to ``--out``/tune, so after the driver was killed the same command with ``--resume`` continues
the search. The results land in ``--out``: best-config.yaml, lambda-sensitivity.png/.pdf,
summary.md/.json and trials.csv.
"""
from __future__ import annotations

import os


def cmd_tune(args) -> int:
    from orchestrator import overrides as _overrides, tune as tune_mod

    overrides = _overrides.from_args(args)
    ts = tune_mod.load(args.spec, overrides=overrides)
    if overrides:
        print(_overrides.applied_line(ts.run_id, overrides), flush=True)
    store_dir = args.store or ts.sweep.store
    if not store_dir:
        raise ValueError("no store: pass --store DIR or set store: in the spec")
    os.makedirs(store_dir, exist_ok=True)
    result = tune_mod.run_search(ts, store_dir, args.out, resume=args.resume, address=args.address,
                                 num_actors=args.actors, quiet=args.quiet)
    print(result.files["summary_md"].read_text())
    for name, path in result.files.items():
        print(f"{name}: {path}")
    print(f"{ts.run_id}: search finished in {result.wall_s:.1f}s; rows in {store_dir} (run_kind 'tune')")
    return 0


def register(subparsers) -> None:
    from orchestrator import overrides

    p = subparsers.add_parser("tune", help="Ray Tune search over lambda, step sizes and solver options")
    p.add_argument("spec", help="sweep spec YAML with a tune: section (see configs/tune-smoke.yaml)")
    overrides.add_arguments(p)
    p.add_argument("--store", help="store directory for the trials' rows (default: the spec's store:)")
    p.add_argument("--out", required=True, help="where Tune's state and the results (best-config.yaml, plots) go")
    p.add_argument("--resume", action="store_true", help="continue the search already in --out (after the driver was killed)")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto); default: local Ray")
    p.add_argument("--actors", type=int, help="number of worker actors (default: spec resources or what fits)")
    p.add_argument("--quiet", action="store_true", help="no per-trial progress, only the summary")
    p.set_defaults(func=cmd_tune)
