"""The results store: one Parquet file per work unit, written atomically, read back safely.

Layout (hive-partitioned by run, see docs/CONTRACTS.md)::

    STORE/results/run=<run_id>/unit-<unit_id>.parquet     per-image rows (RESULTS_SCHEMA)
    STORE/sets/run=<run_id>/config-<config_id>.parquet    per-config set metrics (SETS_SCHEMA)
    STORE/images/run=<run_id>/unit-<unit_id>.npz          reconstructions for figures
    STORE/runs/<run_id>.json                              the spec and grid size of each run

Why this shape:

* **Atomic files.** Every file is written under a hidden temporary name in its final folder,
  flushed, fsynced and ``os.replace``d, so a reader sees either the whole file or none of it. A
  crash leaves at most a hidden ``.tmp-*`` file, which readers skip.
* **Deterministic names.** A unit's file name is its ``unit_id``; re-running a unit (an actor died
  mid-unit, two drivers ran the same spec) overwrites the same file instead of adding a second
  copy, so no row is stored twice.
* **Verified reads.** A truncated Parquet file breaks a duckdb glob over the whole store, so
  readers never glob: they list files, skip hidden/temporary names, check each footer (cached by
  size and mtime) and warn about and skip files whose footer does not verify.
* **One fixed, nullable schema** (``orchestrator/schema.py``): rows are coerced to it on write and
  read with it, so a missing metric is a typed null and old and new files always union.
* **One row per key on read.** If a (run, trial, config, sample) key was stored more than once
  (a failed row later re-run ok on resume under a different unit), readers keep the ok row, then
  the newest; ``dedupe=False`` / the ``results_all`` view show everything.
"""
from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from orchestrator.schema import RESULTS_SCHEMA, SETS_SCHEMA

__all__ = [
    "StoreWarning",
    "results_dir",
    "sets_dir",
    "images_dir",
    "write_unit",
    "write_sets",
    "unit_path",
    "list_files",
    "scan",
    "load",
    "load_sets",
    "completed_keys",
    "save_images",
    "load_images",
    "register_run",
    "read_run",
    "list_runs",
    "connect",
    "coerce_table",
]

#: Columns that identify one stored result; readers keep one row per key.
ROW_KEY = ("run_id", "trial_id", "config_id", "sample_id")
SET_KEY = ("run_id", "trial_id", "config_id")

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class StoreWarning(UserWarning):
    """A file in the store was skipped (its footer does not verify)."""


# --------------------------------------------------------------------------------------- paths
def _check_id(kind: str, value: str) -> str:
    value = str(value)
    if not _SAFE_ID.match(value) or value in (".", ".."):
        raise ValueError(
            f"{kind} {value!r} is not a valid store name: use letters, digits, '_', '-', '.' "
            "and start with a letter or digit"
        )
    return value


def results_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "results"
    return base if run_id is None else base / f"run={_check_id('run_id', run_id)}"


def sets_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "sets"
    return base if run_id is None else base / f"run={_check_id('run_id', run_id)}"


def images_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "images"
    return base if run_id is None else base / f"run={_check_id('run_id', run_id)}"


def unit_path(store_dir, run_id: str, unit_id: str) -> Path:
    """Where a unit's rows live (deterministic: a re-run overwrites, never duplicates)."""
    return results_dir(store_dir, run_id) / f"unit-{_check_id('unit_id', unit_id)}.parquet"


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("_") or ".tmp" in name


# ------------------------------------------------------------------------------ atomic writes
def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write_fn) -> Path:
    """Write ``path`` via ``write_fn(fileobj)`` under a hidden temp name, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    _VERIFIED.pop(str(path), None)
    return path


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
    """One Python value coerced to ``field``'s type; NaN floats stay NaN, None stays null."""
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


def _write_parquet(path: Path, table: pa.Table) -> Path:
    def write(fh):
        pq.write_table(table, fh, compression="zstd")

    return _atomic_write(path, write)


def write_unit(store_dir, run_id: str, unit_id: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write one unit's rows (coerced to RESULTS_SCHEMA) atomically; returns the file's path.

    ``run_id`` and ``unit_id`` are filled in on rows that lack them. Writing the same unit again
    replaces the file: the unit is the unit of idempotence.
    """
    rows = [{**row, "run_id": row.get("run_id") or run_id, "unit_id": row.get("unit_id") or unit_id} for row in rows]
    table = coerce_table(rows, RESULTS_SCHEMA)
    return _write_parquet(unit_path(store_dir, run_id, unit_id), table)


def write_sets(store_dir, run_id: str, config_id: str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write one config's set-metric rows (coerced to SETS_SCHEMA) atomically; returns the path."""
    rows = [{**row, "run_id": row.get("run_id") or run_id, "config_id": row.get("config_id") or config_id} for row in rows]
    table = coerce_table(rows, SETS_SCHEMA)
    path = sets_dir(store_dir, run_id) / f"config-{_check_id('config_id', config_id)}.parquet"
    return _write_parquet(path, table)


# ------------------------------------------------------------------------ verified file lists
_VERIFIED: dict[str, tuple[int, int, bool]] = {}


def _verify(path: Path) -> bool:
    """True when ``path`` is a complete Parquet file (magic bytes and a footer that parses)."""
    try:
        st = path.stat()
    except OSError:
        return False
    key = str(path)
    cached = _VERIFIED.get(key)
    if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
        return cached[2]
    ok = False
    try:
        if st.st_size >= 12:
            with open(path, "rb") as fh:
                head = fh.read(4)
                fh.seek(-4, os.SEEK_END)
                tail = fh.read(4)
            if head == b"PAR1" and tail == b"PAR1":
                pq.read_metadata(path)
                ok = True
    except Exception:  # noqa: BLE001 - any parse failure means "not a complete file"
        ok = False
    _VERIFIED[key] = (st.st_size, st.st_mtime_ns, ok)
    if not ok:
        warnings.warn(f"skipping {path}: not a complete Parquet file (footer does not verify)", StoreWarning, stacklevel=3)
    return ok


def _runs_filter(run) -> set[str] | None:
    if run is None:
        return None
    return {run} if isinstance(run, str) else set(run)


def scan(store_dir, table: str = "results", run=None) -> tuple[list[Path], list[Path]]:
    """``(good, bad)`` Parquet files of ``table`` ("results" or "sets"); hidden/temp names skipped."""
    base = Path(store_dir) / table
    runs = _runs_filter(run)
    good: list[Path] = []
    bad: list[Path] = []
    if not base.is_dir():
        return good, bad
    for run_folder in sorted(base.iterdir()):
        if not run_folder.is_dir() or _is_hidden(run_folder.name) or not run_folder.name.startswith("run="):
            continue
        if runs is not None and run_folder.name[4:] not in runs:
            continue
        for f in sorted(run_folder.iterdir()):
            if _is_hidden(f.name) or not f.name.endswith(".parquet") or not f.is_file():
                continue
            (good if _verify(f) else bad).append(f)
    return good, bad


def list_files(store_dir, table: str = "results", run=None) -> list[Path]:
    """The verified Parquet files of ``table``; corrupt ones are skipped with a StoreWarning."""
    return scan(store_dir, table, run)[0]


# -------------------------------------------------------------------------------------- reads
def _filter_expr(filters) -> ds.Expression | None:
    """``{col: value | [values]}`` or ``[(col, op, value), ...]`` as a dataset expression."""
    if not filters:
        return None
    items: list[tuple[str, str, Any]] = []
    if isinstance(filters, Mapping):
        for col, val in filters.items():
            if isinstance(val, (list, tuple, set, frozenset)):
                items.append((col, "in", list(val)))
            else:
                items.append((col, "==", val))
    else:
        items = [tuple(f) for f in filters]
    ops = {"==": "__eq__", "=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}
    expr = None
    for col, op, val in items:
        field = ds.field(col)
        if op == "in":
            e = field.isin(list(val))
        elif op == "not in":
            e = ~field.isin(list(val))
        elif op in ops:
            e = getattr(field, ops[op])(val)
        else:
            raise ValueError(f"filter operator {op!r} not supported; allowed: {sorted(ops) + ['in', 'not in']}")
        expr = e if expr is None else expr & e
    return expr


def _read(store_dir, table: str, schema: pa.Schema, run, filters, columns) -> pa.Table:
    files = list_files(store_dir, table, run)
    if columns is not None:
        unknown = set(columns) - set(schema.names)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; allowed: {schema.names}")
    if not files:
        empty = schema.empty_table()
        return empty if columns is None else empty.select(list(columns))
    for col in (filters or {}) if isinstance(filters, Mapping) else [f[0] for f in (filters or [])]:
        if col not in schema.names:
            raise ValueError(f"unknown filter column {col!r}; allowed: {schema.names}")
    dataset = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
    return dataset.to_table(columns=list(columns) if columns is not None else None, filter=_filter_expr(filters))


def _dedupe(df: pd.DataFrame, key: Sequence[str], time_col: str) -> pd.DataFrame:
    """One row per ``key``: an ok row first, then the newest."""
    if df.empty or not set(key) <= set(df.columns):
        return df
    order = df.assign(_ok=(df["status"] == "ok") if "status" in df else False)
    sort_cols = ["_ok"] + ([time_col] if time_col in df else [])
    order = order.sort_values(sort_cols, ascending=False, kind="stable", na_position="last")
    order = order.drop_duplicates(list(key), keep="first").sort_index()
    return order.drop(columns="_ok")


def load(path, run=None, filters=None, columns=None, dedupe: bool = True) -> pd.DataFrame:
    """Per-image rows of the store at ``path`` as a DataFrame (RESULTS_SCHEMA columns).

    ``run``: a run id or list of them. ``filters``: ``{column: value or [values]}`` or
    ``[(column, op, value)]``. ``dedupe`` keeps one row per (run, trial, config, sample).
    """
    cols = None if columns is None else list(dict.fromkeys(list(columns) + (list(ROW_KEY) + ["status", "started_at"] if dedupe else [])))
    df = _read(path, "results", RESULTS_SCHEMA, run, filters, cols).to_pandas()
    if dedupe:
        df = _dedupe(df, ROW_KEY, "started_at").reset_index(drop=True)
    return df if columns is None else df[list(columns)]


def load_sets(path, run=None, filters=None, columns=None, dedupe: bool = True) -> pd.DataFrame:
    """Per-config set metrics (SETS_SCHEMA columns) as a DataFrame; same arguments as ``load``."""
    cols = None if columns is None else list(dict.fromkeys(list(columns) + (list(SET_KEY) + ["status", "computed_at"] if dedupe else [])))
    df = _read(path, "sets", SETS_SCHEMA, run, filters, cols).to_pandas()
    if dedupe:
        df = _dedupe(df, SET_KEY, "computed_at").reset_index(drop=True)
    return df if columns is None else df[list(columns)]


def completed_keys(store_dir, run_id: str, trial_id: str | None = None) -> set[tuple[str, int]]:
    """``{(config_id, sample_id)}`` stored with status ok for ``run_id``: what resume skips."""
    filters: dict[str, Any] = {"status": "ok"}
    table = _read(store_dir, "results", RESULTS_SCHEMA, run_id, filters, ["config_id", "sample_id", "trial_id", "run_id"])
    if trial_id is not None:
        table = table.filter(pc.equal(table["trial_id"], trial_id))
    table = table.filter(pc.equal(table["run_id"], run_id))
    return set(zip(table["config_id"].to_pylist(), table["sample_id"].to_pylist()))


# ------------------------------------------------------------------------------------- images
def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch here
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def save_images(store_dir, run_id: str, unit_id: str, arrays: Mapping[str, Mapping[Any, Any]]) -> Path:
    """Store a unit's images as one npz (float16), atomically.

    ``arrays = {"x_hat": {"<config_id>:<sample_id>": (C,H,W)}, "naive": {same keys: (C,H,W)},
    "x_true": {sample_id: (C,H,W)}}`` (any of the three may be missing). Arrays are stacked per
    group with their keys alongside, so a unit is one small file.
    """
    payload: dict[str, np.ndarray] = {}
    for group in ("x_hat", "naive", "x_true"):
        items = dict(arrays.get(group) or {})
        if not items:
            continue
        keys = [str(k) for k in items]
        payload[f"{group}__keys"] = np.array(keys, dtype=np.str_)
        payload[group] = np.stack([_as_numpy(v).astype(np.float16) for v in items.values()])
    unknown = set(arrays) - {"x_hat", "naive", "x_true"}
    if unknown:
        raise ValueError(f"unknown image groups {sorted(unknown)}; allowed: ['naive', 'x_hat', 'x_true']")
    path = images_dir(store_dir, run_id) / f"unit-{_check_id('unit_id', unit_id)}.npz"

    def write(fh):
        buf = io.BytesIO()
        np.savez_compressed(buf, **payload)
        fh.write(buf.getvalue())

    return _atomic_write(path, write)


def load_images(store_dir, run_id: str, unit_ids: Iterable[str] | str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{"x_hat": {key: arr}, "naive": {key: arr}, "x_true": {sample_id_str: arr}}`` (float16)
    merged over the run's units (or only ``unit_ids``); unreadable files are skipped with a warning.
    """
    folder = images_dir(store_dir, run_id)
    out: dict[str, dict[str, np.ndarray]] = {"x_hat": {}, "naive": {}, "x_true": {}}
    if isinstance(unit_ids, str):
        unit_ids = [unit_ids]
    if unit_ids is not None:
        files = [folder / f"unit-{_check_id('unit_id', u)}.npz" for u in unit_ids]
    else:
        files = sorted(f for f in folder.glob("unit-*.npz") if not _is_hidden(f.name)) if folder.is_dir() else []
    for f in files:
        if not f.exists():
            continue
        try:
            with np.load(f, allow_pickle=False) as z:
                for group in out:
                    if group in z.files:
                        for key, arr in zip(z[f"{group}__keys"].tolist(), z[group]):
                            out[group][str(key)] = arr
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"skipping {f}: unreadable image file ({exc})", StoreWarning, stacklevel=2)
    return out


# --------------------------------------------------------------------------------------- runs
def register_run(store_dir, run_id: str, spec_dict: Mapping[str, Any], n_rows: int, **extra) -> Path:
    """Record a run's spec and grid size in ``STORE/runs/<run_id>.json`` (atomic; keeps history).

    Re-registering a run (resume, or an edited spec under the same name) keeps the first
    ``created_at`` and appends the previous spec's grid size to ``history``.
    """
    path = Path(store_dir) / "runs" / f"{_check_id('run_id', run_id)}.json"
    now = _dt.datetime.now(_dt.timezone.utc).isoformat()
    previous = read_run(store_dir, run_id)
    record = {
        "run_id": run_id,
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "n_rows": int(n_rows),
        "spec": spec_dict,
        **extra,
        "history": ((previous or {}).get("history", []) + ([{"updated_at": previous.get("updated_at"), "n_rows": previous.get("n_rows")}] if previous else []))[-50:],
    }
    data = json.dumps(record, indent=2, sort_keys=True, default=str).encode()
    return _atomic_write(path, lambda fh: fh.write(data))


def read_run(store_dir, run_id: str) -> dict | None:
    """The record ``register_run`` wrote, or None."""
    path = Path(store_dir) / "runs" / f"{_check_id('run_id', run_id)}.json"
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        warnings.warn(f"unreadable run record {path}: {exc}", StoreWarning, stacklevel=2)
        return None


def list_runs(store_dir) -> list[str]:
    """Run ids known to the store (registered or with result files)."""
    runs = set()
    folder = Path(store_dir) / "runs"
    if folder.is_dir():
        runs |= {f.stem for f in folder.glob("*.json") if not _is_hidden(f.name)}
    base = results_dir(store_dir)
    if base.is_dir():
        runs |= {d.name[4:] for d in base.iterdir() if d.is_dir() and d.name.startswith("run=")}
    return sorted(runs)


# ------------------------------------------------------------------------------------- duckdb
def _sql_list(files: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"


def _dedupe_sql(source: str, key: Sequence[str], time_col: str) -> str:
    return (
        f"SELECT * EXCLUDE (_eb_rank) FROM (SELECT *, row_number() OVER (PARTITION BY {', '.join(key)} "
        f"ORDER BY (status = 'ok') DESC NULLS LAST, {time_col} DESC NULLS LAST) AS _eb_rank FROM {source}) "
        "WHERE _eb_rank = 1"
    )


def connect(store_dir, run=None):
    """A duckdb connection with views over the verified files of the store.

    Views: ``results`` / ``sets`` (one row per key, ok rows preferred) and ``results_all`` /
    ``sets_all`` (every stored row). Each reads ``read_parquet`` over the verified file list with
    ``union_by_name``, never a glob, so a corrupt file cannot break a query.
    """
    import duckdb

    con = duckdb.connect()
    for table, schema, key, tcol in (("results", RESULTS_SCHEMA, ROW_KEY, "started_at"), ("sets", SETS_SCHEMA, SET_KEY, "computed_at")):
        files = list_files(store_dir, table, run)
        if files:
            source = f"read_parquet({_sql_list(files)}, union_by_name = true, hive_partitioning = false)"
        else:
            con.register(f"_eb_empty_{table}", schema.empty_table())
            source = f"_eb_empty_{table}"
        con.execute(f"CREATE VIEW {table}_all AS SELECT * FROM {source}")
        con.execute(f"CREATE VIEW {table} AS {_dedupe_sql(table + '_all', key, tcol)}")
    return con
