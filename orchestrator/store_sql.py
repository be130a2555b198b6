"""SQL over a store, read-only and confined to it: duckdb with no file system access at all.

The connection is an in-memory duckdb opened with ``enable_external_access = false``, extension
autoload/autoinstall off and ``lock_configuration = true``. The store's verified files reach it
only as pyarrow datasets registered from Python, so SQL can read the views below and nothing
else: ``COPY ... TO``, ``ATTACH``, ``read_csv('/etc/passwd')``, ``INSTALL``/``LOAD`` and
``SET`` all fail with duckdb's permission error. Extracts go through ``export`` (pyarrow writes
them, outside the store, from the query's result).

Views: ``results`` / ``sets`` (one row per key, ok rows preferred) and ``results_all`` /
``sets_all`` (every stored row of every verified file). A run stored as one compacted file
(``store_compact``) already holds one row per key, so ``results`` reads it as is and runs the
dedupe window only over the other files: a compacted store's grouped mean is one column scan.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pyarrow as pa

from orchestrator.store_files import check_readable
from orchestrator.store_read import ROW_KEY, SCHEMAS, SET_KEY, dataset, dataset_parts  # noqa: F401

#: The settings that make a connection read-only and confined (duckdb >= 1.1 names).
SAFE_CONFIG = {
    "enable_external_access": False,
    "autoload_known_extensions": False,
    "autoinstall_known_extensions": False,
    "allow_community_extensions": False,
}

#: Allowed output formats of ``export`` by file suffix.
EXPORT_FORMATS = {".csv": "csv", ".parquet": "parquet"}


def _dedupe_sql(source: str, key: Sequence[str], time_col: str) -> str:
    return (
        f"SELECT * EXCLUDE (_eb_rank) FROM (SELECT *, row_number() OVER (PARTITION BY {', '.join(key)} "
        f"ORDER BY (status = 'ok') DESC NULLS LAST, {time_col} DESC NULLS LAST) AS _eb_rank FROM {source}) "
        "WHERE _eb_rank = 1"
    )


def connect(store_dir, run=None):
    """A read-only, store-confined duckdb connection with the views of the module docstring."""
    import duckdb

    check_readable(store_dir)
    con = duckdb.connect(":memory:", config=dict(SAFE_CONFIG))
    for table, key, tcol in (("results", ROW_KEY, "started_at"), ("sets", SET_KEY, "computed_at")):
        # compacted runs stored as one file hold one row per key: only the other files need the dedupe window
        clean, mixed = dataset_parts(store_dir, table, run)
        con.register(f"_eb_{table}_clean", clean if clean is not None else SCHEMAS[table].empty_table())
        con.register(f"_eb_{table}_mixed", mixed if mixed is not None else SCHEMAS[table].empty_table())
        whole = [f"SELECT * FROM _eb_{table}_clean"] if clean is not None else []
        deduped = whole + ([_dedupe_sql(f"_eb_{table}_mixed", key, tcol)] if mixed is not None or not whole else [])
        whole += [f"SELECT * FROM _eb_{table}_mixed"] if mixed is not None or not whole else []
        con.execute(f"CREATE VIEW {table}_all AS {' UNION ALL '.join(whole)}")
        con.execute(f"CREATE VIEW {table} AS {' UNION ALL '.join(deduped)}")
    con.execute("SET lock_configuration = true")
    return con


def check_export_path(out, store_dir) -> tuple[Path, str]:
    """``(path, format)`` for an extract, or ValueError: outside the store, a known suffix, its
    folder existing, not a directory. Checked before the query runs."""
    path = Path(out)
    fmt = EXPORT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"--out {path}: unknown extract format {path.suffix or '(no suffix)'!r}; "
                         f"allowed: {', '.join(EXPORT_FORMATS)}")
    if path.is_dir():
        raise ValueError(f"--out {path} is a directory; give a file name ending in {', '.join(EXPORT_FORMATS)}")
    store = Path(store_dir).resolve()
    target = path.resolve()
    if target == store or store in target.parents:
        raise ValueError(f"--out {path} is inside the store {store_dir}; extracts go outside it (the store "
                         "holds only what runs write)")
    if not target.parent.is_dir():
        raise ValueError(f"--out {path}: folder {path.parent} does not exist")
    return path, fmt


def write_extract(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write a query result to ``path`` (atomically: a temp name in the same folder, then rename)."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from orchestrator.store_files import atomic_write

    def write(fh):
        if fmt == "csv":
            pcsv.write_csv(table, fh)
        else:
            pq.write_table(table, fh, compression="zstd")

    return atomic_write(path, write)
