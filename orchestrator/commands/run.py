"""``equibench run | status | query``: run a sweep spec, see a store's progress, query it with SQL.

- ``run SPEC.yaml --store DIR [--address ADDR] [--actors N] [--quiet]``: validates the spec (every
  problem before any compute), then runs or resumes it; a second run of a finished spec computes
  nothing and says so.
- ``status --store DIR``: per run, rows stored ok/diverged/failed against the grid size, the last
  errors, and any corrupt files the readers skip.
- ``query --store DIR "SQL"``: duckdb over views ``results`` and ``sets`` (one row per key) and
  ``results_all`` / ``sets_all`` (every stored row).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings


def _store_dir(args, spec=None) -> str:
    path = args.store or (spec.store if spec is not None else None)
    if not path:
        raise ValueError("no store: pass --store DIR or set store: in the spec")
    return path


def cmd_run(args) -> int:
    from orchestrator import driver, spec as spec_mod

    spec = spec_mod.parse(args.spec, backend=args.backend)
    store_dir = _store_dir(args, spec)
    os.makedirs(store_dir, exist_ok=True)
    result = driver.run_sweep(spec, store_dir, address=args.address, num_actors=args.actors,
                              backend=args.backend, quiet=args.quiet)
    if result.computed_nothing:
        print(f"{spec.name}: nothing to compute ({result.total_rows} rows already stored ok)")
        return 0
    print(f"{spec.name}: {result.rows_ok} ok, {result.rows_diverged} diverged, {result.rows_failed} failed rows "
          f"computed in {result.wall_s:.1f}s; {result.skipped_rows} were already stored; store: {store_dir}")
    return 1 if result.rows_failed else 0


def status_table(store_dir) -> list[dict]:
    """One dict per run: grid size, stored rows by status, last error, corrupt files."""
    from orchestrator import store

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.StoreWarning)
        df = store.load(store_dir, columns=["run_id", "status", "error", "unit_id", "started_at"])
        sets = store.load_sets(store_dir, columns=["run_id", "config_id"])
        bad = store.scan(store_dir, "results")[1] + store.scan(store_dir, "sets")[1]
    out = []
    for run_id in store.list_runs(store_dir):
        rec = store.read_run(store_dir, run_id) or {}
        d = df[df["run_id"] == run_id]
        counts = d["status"].value_counts().to_dict()
        errs = d[d["status"] == "failed"]["error"].dropna()
        out.append({
            "run_id": run_id, "grid_rows": rec.get("n_rows"), "ok": int(counts.get("ok", 0)),
            "diverged": int(counts.get("diverged", 0)), "failed": int(counts.get("failed", 0)),
            "units": int(d["unit_id"].nunique()), "sets": int((sets["run_id"] == run_id).sum()),
            "last_started": d["started_at"].max() if len(d) else None,
            "last_error": str(errs.iloc[-1]).splitlines()[0] if len(errs) else None,
            "corrupt_files": [str(p) for p in bad if f"run={run_id}" in str(p)],
        })
    return out


def cmd_status(args) -> int:
    rows = status_table(_store_dir(args))
    if not rows:
        print(f"no runs in {args.store}")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"store {args.store}")
    for col in ("run", "done", "ok", "diverged", "failed", "units", "set rows", "last error"):
        table.add_column(col)
    for r in rows:
        grid = r["grid_rows"]
        pct = f"{100 * r['ok'] / grid:.0f}%" if grid else "?"
        table.add_row(r["run_id"], f"{r['ok']}/{grid} ({pct})", str(r["ok"]), str(r["diverged"]), str(r["failed"]),
                      str(r["units"]), str(r["sets"]), r["last_error"] or "")
    console = Console(file=sys.stdout, width=160, force_terminal=False)
    console.print(table)
    for r in rows:
        for f in r["corrupt_files"]:
            print(f"warning: {f} is not a complete Parquet file; readers skip it (its rows will be re-run)")
    return 0


def cmd_query(args) -> int:
    from orchestrator import store

    con = store.connect(_store_dir(args))
    df = con.execute(args.sql).fetchdf()
    import pandas as pd

    with pd.option_context("display.max_rows", args.max_rows, "display.max_columns", None, "display.width", 200):
        print(df.to_string(index=False) if args.max_rows is None or len(df) <= args.max_rows else df)
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run or resume a sweep spec (YAML) into a store")
    p.add_argument("spec", help="sweep spec YAML (see configs/smoke.yaml)")
    p.add_argument("--store", help="store directory (default: the spec's store:)")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto or ray://host:10001); default: local Ray")
    p.add_argument("--actors", type=int, help="number of worker actors (default: spec resources or what fits)")
    p.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    p.add_argument("--backend", help=argparse.SUPPRESS)  # tests: a module replacing solvers/operators
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("status", help="per-run progress and failures of a store")
    p.add_argument("--store", required=True)
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("query", help="SQL (duckdb) over a store: views results, sets, results_all, sets_all")
    p.add_argument("--store", required=True)
    p.add_argument("sql")
    p.add_argument("--max-rows", type=int, default=200)
    p.set_defaults(func=cmd_query)
