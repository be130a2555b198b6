"""``equibench run | status | query``: run a sweep spec, see a store's progress, query it with SQL.

- ``run SPEC.yaml [KEY=VALUE ...] [--set KEY=VALUE] --store DIR [--address ADDR] [--actors N] [--quiet]
  [--dry-run] [--force] [--extend] [--retry-diverged]``: applies the overrides (``orchestrator.overrides``,
  recorded with the run), validates the spec, the grid size, the store, the run's
  identity, the Ray address and the cluster's resources (every problem before any compute), then
  runs or resumes it. A rerun of a finished spec computes and writes nothing and says so; diverged
  rows are results (``--retry-diverged`` recomputes and replaces them). Ctrl-C stops with one line
  (rows stored, rerun to resume) and exit 130.
- ``status --store DIR``: per run, rows stored ok/diverged/failed against the grid size, the last
  errors, and every file the readers skip, with the reason.
- ``query --store DIR "SQL"``: read-only duckdb confined to the store, over views ``results`` and
  ``sets`` (one row per key) and ``results_all`` / ``sets_all`` (every stored row). Extracts:
  ``equibench export``.
"""
from __future__ import annotations

import os
import sys
import warnings


def check_actors(n) -> None:
    if n is not None and n < 1:
        raise ValueError(f"--actors {n}: allowed: an integer >= 1 (leave it out for as many as fit)")


def _store_dir(args, spec=None) -> str:
    path = args.store or (spec.store if spec is not None else None)
    if not path:
        raise ValueError("no store: pass --store DIR or set store: in the spec")
    return path


def cmd_run(args) -> int:
    from orchestrator import driver, guards, overrides as _overrides, spec as spec_mod, store
    from orchestrator.run_identity import RunIdentityError

    check_actors(args.actors)
    overrides = _overrides.from_args(args)
    spec = spec_mod.parse_sweep(args.spec, overrides=overrides)
    store_dir = _store_dir(args, spec)
    if overrides:
        print(_overrides.applied_line(spec.name, overrides), flush=True)
    if os.path.exists(store_dir):
        store.check_readable(store_dir)
    elif os.path.lexists(store_dir):
        raise store.StoreError(f"store {store_dir} is a broken link")
    if args.dry_run:
        from orchestrator.commands.plan import print_plan, summarize

        print_plan(spec, summarize(spec, store_dir, args.actors, args.retry_diverged, args.extend))
        return 0
    guards.check_grid_size(spec, force=args.force)
    try:
        result = driver.run_sweep(spec, store_dir, address=args.address, num_actors=args.actors,
                                  quiet=args.quiet, force=args.force, extend=args.extend,
                                  retry_diverged=args.retry_diverged, compact=False if args.no_compact else None)
    except RunIdentityError as exc:
        if not overrides:
            raise
        raise exc.with_overrides(overrides) from None
    if result.computed_nothing:
        print(f"{spec.name}: nothing to compute ({result.total_rows} rows already stored)")
        return 0
    print(f"{spec.name}: {result.rows_ok} ok, {result.rows_diverged} diverged, {result.rows_failed} failed rows "
          f"computed in {result.wall_s:.1f}s; {result.skipped_rows} were already stored; store: {store_dir}")
    return 1 if result.rows_failed else 0


def status_table(store_dir) -> list[dict]:
    """One dict per run: grid size, stored rows by status, last error, skipped files and why; for a
    tune run also its trials (``tune``: ``orchestrator.trial_status``)."""
    from orchestrator import store, trial_status

    store.check_readable(store_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", store.StoreWarning)
        df = store.load(store_dir, columns=["run_id", "status", "error", "unit_id", "started_at", "trial_id", "sample_id"])
        sets = store.load_sets(store_dir, columns=["run_id", "config_id"])
        bad = store.problems(store_dir, "results") + store.problems(store_dir, "sets")
    out = []
    for run_id in store.list_runs(store_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", store.StoreWarning)
            rec = store.read_run(store_dir, run_id)
        record_path = store.run_record_path(store_dir, run_id)
        bad_record = rec is None and record_path.exists()
        rec = rec or {}
        d = df[df["run_id"] == run_id]
        counts = d["status"].value_counts().to_dict()
        errs = d[d["status"] == "failed"]["error"].dropna()
        out.append({
            "run_id": run_id, "grid_rows": rec.get("n_rows"), "ok": int(counts.get("ok", 0)),
            "diverged": int(counts.get("diverged", 0)), "failed": int(counts.get("failed", 0)),
            "units": int(d["unit_id"].nunique()), "sets": int((sets["run_id"] == run_id).sum()),
            "last_started": d["started_at"].max() if len(d) else None,
            "last_error": str(errs.iloc[-1]).splitlines()[0] if len(errs) else None,
            "corrupt_files": [str(p) for p, _ in bad if f"run={run_id}" in p.parts[-2]],
            "skipped": [(str(p), why) for p, why in bad if p.parts[-2] == f"run={run_id}"]
            + ([(str(record_path), "unreadable run record (not JSON); its grid size is unknown")] if bad_record else []),
            "tune": trial_status.summarize(d, rec) if trial_status.is_tune_run(rec) else None,
        })
    return out


def cmd_status(args) -> int:
    rows = status_table(_store_dir(args))
    if not rows:
        print(f"no runs in {args.store}")
        return 0
    from rich.console import Console
    from rich.table import Table

    from orchestrator import trial_status

    table = Table(title=f"store {args.store}")
    for col in ("run", "done", "ok", "diverged", "failed", "units", "set rows", "last error"):
        table.add_column(col)
    for r in rows:
        grid = r["grid_rows"]
        done = r["ok"] + r["diverged"]  # a diverged row is a result (rerun with --retry-diverged to redo it)
        pct = f"{100 * done / grid:.0f}%" if grid else "?"
        # a tune run counts trials: the rows ASHA never asked for are not missing
        cell = trial_status.done_cell(r["tune"]) if r["tune"] else f"{done}/{grid} ({pct})"
        table.add_row(r["run_id"], cell, str(r["ok"]), str(r["diverged"]), str(r["failed"]),
                      str(r["units"]), str(r["sets"]), r["last_error"] or "")
    console = Console(file=sys.stdout, width=160, force_terminal=False)
    console.print(table)
    for r in rows:
        if r["tune"]:
            print(trial_status.line(r["run_id"], r["tune"]))
    for r in rows:
        for f, why in r["skipped"]:
            print(f"warning: skipping {f}: {why}")
    return 0


def _is_empty_sql(sql: str) -> bool:
    lines = [ln.split("--", 1)[0] for ln in sql.splitlines()]
    return not "".join(lines).replace(";", "").strip()


def sql_error_line(exc: Exception) -> str:
    """duckdb's message on one line, its hints ("Did you mean ...") kept, caret drawings dropped."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith("LINE ") and set(ln) != {"^"}]
    return " ".join(keep) or type(exc).__name__


def run_sql(store_dir, sql: str):
    """The query's result as an Arrow table, or ValueError with duckdb's message on one line."""
    import duckdb

    from orchestrator import store

    if _is_empty_sql(sql):
        raise ValueError("empty query: give one SQL statement, e.g. \"select count(*) from results\"")
    con = store.connect(store_dir)
    try:
        rel = con.sql(sql)
        if rel is None:
            raise ValueError("the statement returns no rows; query runs SELECT-like statements over the store's views")
        return rel.to_arrow_table()
    except duckdb.PermissionException as exc:
        raise ValueError(f"query is read-only and confined to the store ({sql_error_line(exc)}); "
                         "write extracts with `equibench export`") from None
    except duckdb.Error as exc:
        raise ValueError(sql_error_line(exc)) from None
    finally:
        con.close()


def cmd_query(args) -> int:
    if args.max_rows is not None and args.max_rows < 1:
        raise ValueError(f"--max-rows {args.max_rows}: allowed: an integer >= 1")
    df = run_sql(_store_dir(args), args.sql).to_pandas()
    import pandas as pd

    with pd.option_context("display.max_rows", args.max_rows, "display.max_columns", None, "display.width", 200):
        print(df.to_string(index=False) if args.max_rows is None or len(df) <= args.max_rows else df)
    return 0


def register(subparsers) -> None:
    from orchestrator import overrides as _overrides

    p = subparsers.add_parser("run", help="run or resume a sweep spec (YAML) into a store")
    p.add_argument("spec", help="sweep spec YAML (see configs/smoke.yaml, docs/SPEC-REFERENCE.md)")
    _overrides.add_arguments(p)
    p.add_argument("--store", help="store directory (default: the spec's store:)")
    p.add_argument("--address", help="an existing Ray cluster (e.g. auto or ray://host:10001); default: local Ray")
    p.add_argument("--actors", type=int, help="number of worker actors, >= 1 (default: spec resources or what fits)")
    p.add_argument("--quiet", action="store_true", help="no progress output, only the summary")
    p.add_argument("--dry-run", action="store_true", help="print the plan (as `equibench plan`) and compute nothing")
    p.add_argument("--force", action="store_true", help="skip the grid-size and cluster-resource guards")
    p.add_argument("--extend", action="store_true", help="let this run name take a new grid (keeps its stored rows)")
    p.add_argument("--retry-diverged", action="store_true", help="recompute stored diverged rows, replacing them")
    p.add_argument("--no-compact", action="store_true", help="leave a finished run's unit files as they are (spec compact: false)")
    p.set_defaults(func=cmd_run)

    p = subparsers.add_parser("status", help="per-run progress and failures of a store")
    p.add_argument("--store", required=True)
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("query", help="read-only SQL (duckdb) over a store: views results, sets, results_all, sets_all")
    p.add_argument("--store", required=True)
    p.add_argument("sql")
    p.add_argument("--max-rows", type=int, default=200)
    p.set_defaults(func=cmd_query)
