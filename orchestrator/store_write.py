"""The store's writers: rows coerced to the fixed schema, one atomic file per unit / config.

Every Parquet file carries its run's identity in the footer's key-value metadata
(``equibench = {"run_id": ..., "grid_hash": ...}``), so a reader can tell a file copied from
another run, or written for another grid under the same name, and skip it by name
(``store_read``).
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator.schema import RESULTS_SCHEMA, SETS_SCHEMA
from orchestrator.store_files import atomic_write, check_id, remove, run_record_path, sets_dir, unit_path
from orchestrator.store_manifest import COMPACTION_KEY, ROW_GROUP_ROWS

#: Footer metadata key holding a file's run identity.
META_KEY = b"equibench"


# ---------------------------------------------------------------------------- schema coercion
def _to_timestamp(value):
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return _dt.datetime.fromtimestamp(float(value), tz=_dt.timezone.utc)
    if isinstance(value, str):
        parsed = _dt.datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    raise TypeError(f"cannot read {value!r} as a timestamp")


def _to_scalar(value, field: pa.Field):
    """One Python value coerced to ``field``'s type; NaN floats become null, None stays null."""
    if value is None:
        return None
    if isinstance(value, np.generic) or (hasattr(value, "item") and getattr(value, "ndim", 1) == 0):
        value = value.item()  # numpy / 0-d torch scalars
    t = field.type
    if pa.types.is_timestamp(t):
        return _to_timestamp(value)
    if pa.types.is_floating(t):
        value = float(value)
        return None if math.isnan(value) else value  # NaN would poison means: store a null
    if pa.types.is_integer(t):
        if isinstance(value, float):
            if not math.isfinite(value):
                return None
            if value != int(value):
                raise ValueError(f"column {field.name!r}: {value!r} is not an integer")
        return int(value)
    if pa.types.is_string(t):
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, sort_keys=True, default=str)
        return str(value)
    return value


def coerce_table(rows: Sequence[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts) as a table of exactly ``schema``: missing columns null, unknown keys an error."""
    names = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - names
        if extra:
            raise ValueError(
                f"row {i} has columns not in the store schema: {sorted(extra)}; "
                f"allowed: {schema.names}"
            )
    columns = []
    for field in schema:
        values = [_to_scalar(row.get(field.name), field) for row in rows]
        columns.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _write_parquet(path: Path, table: pa.Table, run_id: str, grid_hash: str | None,
                   row_group_size: int | None = None) -> Path:
    identity = json.dumps({"run_id": run_id, "grid_hash": grid_hash}, sort_keys=True).encode()
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META_KEY: identity})

    def write(fh):
        pq.write_table(table, fh, compression="zstd", row_group_size=row_group_size)

    return atomic_write(path, write)


def write_unit(store_dir, run_id: str, unit_id: str, rows: Sequence[Mapping[str, Any]],
               grid_hash: str | None = None) -> Path:
    """Write one unit's rows (coerced to RESULTS_SCHEMA) atomically; returns the file's path.

    ``run_id`` and ``unit_id`` are filled in on rows that lack them. Writing the same unit again
    replaces the file: the unit is the unit of idempotence. ``grid_hash`` (the run's resolved
    grid, ``orchestrator.run_identity``) goes into the footer.
    """
    rows = [{**row, "run_id": row.get("run_id") or run_id, "unit_id": row.get("unit_id") or unit_id} for row in rows]
    table = coerce_table(rows, RESULTS_SCHEMA)
    return _write_parquet(unit_path(store_dir, run_id, unit_id), table, run_id, grid_hash)


def write_sets(store_dir, run_id: str, config_id: str, rows: Sequence[Mapping[str, Any]],
               grid_hash: str | None = None) -> Path:
    """Write one config's set-metric rows (coerced to SETS_SCHEMA) atomically; returns the path."""
    rows = [{**row, "run_id": row.get("run_id") or run_id, "config_id": row.get("config_id") or config_id} for row in rows]
    table = coerce_table(rows, SETS_SCHEMA)
    path = sets_dir(store_dir, run_id) / f"config-{check_id('config_id', config_id)}.parquet"
    return _write_parquet(path, table, run_id, grid_hash)


def drop_rows(path: Path, keys: Iterable[tuple[str, int]]) -> int:
    """Rewrite the unit file ``path`` without the rows whose (config_id, sample_id) is in ``keys``
    (atomically; the file is removed when no row is left). Returns how many rows were dropped.

    ``--retry-diverged`` uses it so a recomputed row replaces the old one instead of doubling it.
    A compacted file (``store_compact``) keeps its footer record, order and row-group size.
    """
    keys = set(keys)
    pf = pq.ParquetFile(path)
    table = pf.read()
    meta = pf.schema_arrow.metadata or {}
    drop = [(c, s) in keys for c, s in zip(table["config_id"].to_pylist(), table["sample_id"].to_pylist())]
    n = sum(drop)
    if not n:
        return 0
    if n == len(drop):
        remove(path)
        return n
    kept = table.filter(pc.invert(pa.array(drop)))
    identity = json.loads(meta.get(META_KEY, b"{}") or b"{}")
    rg = ROW_GROUP_ROWS if COMPACTION_KEY in meta else None
    _write_parquet(path, kept, identity.get("run_id"), identity.get("grid_hash"), row_group_size=rg)
    return n


# --------------------------------------------------------------------------------------- runs
def register_run(store_dir, run_id: str, spec_dict: Mapping[str, Any], n_rows: int, **extra) -> Path:
    """Record a run's spec and grid size in ``STORE/runs/<run_id>.json`` (atomic; keeps history).

    Re-registering a run keeps the first ``created_at`` and appends the previous record's grid
    size to ``history``. Extra keys (``grid_hash``, ``grid_hashes``, ``n_configs``, ...) are kept.
    """
    from orchestrator.store_read import read_run

    path = run_record_path(store_dir, run_id)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    previous = read_run(store_dir, run_id)
    history = (previous or {}).get("history", [])
    if previous:
        history = history + [{"updated_at": previous.get("updated_at"), "n_rows": previous.get("n_rows"),
                              "grid_hash": previous.get("grid_hash")}]
    record = {
        "run_id": run_id,
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "n_rows": int(n_rows),
        "spec": spec_dict,
        **extra,
        "history": history[-50:],
    }
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    return atomic_write(path, lambda fh: fh.write(data))
