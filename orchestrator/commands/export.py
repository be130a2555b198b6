"""``equibench export --store DIR "SQL" --out FILE.csv|FILE.parquet``: a query's result as a file;
``equibench export --store DIR --format benchopt --out FILE [--run RUN ...]``: the store's ok rows in
benchopt's result schema (``orchestrator.export_benchopt``).

The query runs on the same read-only, store-confined connection as ``equibench query``; pyarrow
writes the result, atomically, to ``--out``, which must lie outside the store, end in ``.csv`` or
``.parquet`` and not exist unless ``--overwrite``. Every check runs before the query.
"""
from __future__ import annotations


def cmd_export(args) -> int:
    from orchestrator import store

    store.check_readable(args.store)
    path, fmt = store.check_export_path(args.out, args.store)
    if path.exists() and not args.overwrite:
        raise ValueError(f"--out {path} exists; pass --overwrite to replace it")
    if args.format == "benchopt":
        if args.sql is not None:
            raise ValueError("--format benchopt exports the store's rows (narrow them with --run), not a query; drop the SQL")
        from orchestrator.export_benchopt import write_benchopt

        path, n, skipped = write_benchopt(args.store, path, args.run)
        print(f"wrote {n} rows in benchopt's schema to {path} ({fmt})" + (f"; {skipped} rows not ok left out" if skipped else ""))
        return 0
    if args.sql is None:
        raise ValueError('give the SQL to export, e.g. "select * from results", or --format benchopt')
    if args.run:
        raise ValueError("--run narrows --format benchopt; in a query use where run_id = '...'")
    from orchestrator.commands.run import run_sql

    table = run_sql(args.store, args.sql)
    store.write_extract(table, path, fmt)
    print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {path} ({fmt})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a query's result (or the store in benchopt's schema) to a CSV or Parquet file outside the store")
    p.add_argument("--store", required=True)
    p.add_argument("sql", nargs="?", default=None, help='e.g. "select * from results where status = \'ok\'" (not with --format benchopt)')
    p.add_argument("--format", default="query", choices=["query", "benchopt"],
                   help="query: the SQL's result (default); benchopt: every ok row in benchopt's result schema "
                        "(solver_name, p_solver_*/p_obj_*/p_dataset_*, objective_*, idx_rep, time, provenance)")
    p.add_argument("--run", nargs="+", default=None, metavar="RUN", help="with --format benchopt: only these runs")
    p.add_argument("--out", required=True, help="output file, .csv or .parquet, outside the store")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)
