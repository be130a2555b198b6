"""``equibench export --store DIR "SQL" --out FILE.csv|FILE.parquet``: a query's result as a file.

The query runs on the same read-only, store-confined connection as ``equibench query``; pyarrow
writes the result, atomically, to ``--out``, which must lie outside the store, end in ``.csv`` or
``.parquet`` and not exist unless ``--overwrite``. Every check runs before the query.
"""
from __future__ import annotations


def cmd_export(args) -> int:
    from orchestrator import store
    from orchestrator.commands.run import run_sql

    store.check_readable(args.store)
    path, fmt = store.check_export_path(args.out, args.store)
    if path.exists() and not args.overwrite:
        raise ValueError(f"--out {path} exists; pass --overwrite to replace it")
    table = run_sql(args.store, args.sql)
    store.write_extract(table, path, fmt)
    print(f"wrote {table.num_rows} rows x {table.num_columns} columns to {path} ({fmt})")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("export", help="write a query's result to a CSV or Parquet file outside the store")
    p.add_argument("--store", required=True)
    p.add_argument("sql", help='e.g. "select * from results where status = \'ok\'"')
    p.add_argument("--out", required=True, help="output file, .csv or .parquet, outside the store")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=cmd_export)
