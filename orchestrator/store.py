"""The results store: one Parquet file per work unit, written atomically, read back safely.

Layout (hive-partitioned by run, see docs/CONTRACTS.md)::

    STORE/results/run=<run_id>/unit-<unit_id>.parquet     per-image rows (RESULTS_SCHEMA)
    STORE/results/run=<run_id>/compact-<gen>.parquet      a compacted run's rows (store_compact)
    STORE/sets/run=<run_id>/config-<config_id>.parquet    per-config set metrics (SETS_SCHEMA)
    STORE/images/run=<run_id>/unit-<unit_id>.npz          reconstructions for figures
    STORE/runs/<run_id>.json                              the spec, grid size and grid hash of each run

Why this shape:

* **Atomic files.** Every file is written under a hidden temporary name in its final folder,
  flushed, fsynced and ``os.replace``d, so a reader sees either the whole file or none of it. A
  crash leaves at most a hidden ``.tmp-*`` file, which readers skip.
* **Deterministic names.** A unit's file name is its ``unit_id``; re-running a unit overwrites
  the same file instead of adding a second copy, so no row is stored twice.
* **Verified reads.** Readers never glob: they list files, skip hidden/temporary names, check
  each footer, schema and run identity (cached by size and mtime), and name and skip a file that
  fails (``StoreWarning``), so one bad file cannot break a read.
* **One fixed, nullable schema** (``orchestrator/schema.py``): rows are coerced to it on write and
  read with it, so a missing metric is a typed null and old and new files always union.
* **One row per key on read.** If a (run, trial, config, sample) key was stored more than once,
  readers keep the ok row, then the newest; ``dedupe=False`` / the ``results_all`` view show all.
* **Read-only SQL.** ``connect`` gives duckdb with no file system access (``store_sql``).

* **Compaction.** A finished run's unit files merge into one sorted file (``store_compact``); the
  switch is atomic and readers skip what it superseded (``store_manifest``), so a crash at any
  point never counts a row twice.

This module is the public face; the work is in ``store_files`` (paths, ids, atomic writes, store
path checks), ``store_write``, ``store_read``, ``store_sql``, ``store_images`` (reconstructions,
float16 or PNG) and ``store_compact`` / ``store_manifest``.
"""
from __future__ import annotations

import pyarrow.parquet as pq  # noqa: F401 - kept importable as ``store.pq`` (tests patch its writer)

from orchestrator.store_files import (  # noqa: F401
    MAX_ID_LEN, StoreError, StoreWarning, atomic_write as _atomic_write, check_id as _check_id, check_readable,
    check_writable, images_dir, is_hidden as _is_hidden, results_dir, run_record_path, sets_dir, unit_path,
)
from orchestrator.store_compact import compact_after_sweep, compact_run, compact_store  # noqa: F401
from orchestrator.store_images import image_context, load_images, save_images  # noqa: F401
from orchestrator.store_read import (  # noqa: F401
    ROW_KEY, SET_KEY, _VERIFIED, _dedupe, completed_keys, dataset, files_with_keys, list_files, list_runs, load,
    load_sets, problems, read_run, scan,
)
from orchestrator.store_sql import check_export_path, connect, write_extract  # noqa: F401
from orchestrator.store_write import coerce_table, drop_rows, register_run, write_sets, write_unit  # noqa: F401

__all__ = [
    "StoreWarning", "StoreError", "results_dir", "sets_dir", "images_dir", "write_unit", "write_sets", "unit_path",
    "list_files", "scan", "problems", "load", "load_sets", "completed_keys", "files_with_keys", "drop_rows",
    "save_images", "load_images", "register_run", "read_run", "list_runs", "connect", "coerce_table",
    "check_readable", "check_writable", "check_export_path", "write_extract", "dataset", "compact_run",
    "compact_store", "compact_after_sweep", "image_context",
]
