"""The store's readers: verified file lists, DataFrames, resume keys and run records (images:
``store_images``).

Readers never glob. They list files, skip hidden/temporary names and check each file once per
process (cached by size and mtime): the footer must parse, the schema must be the store's (a
subset of ``RESULTS_SCHEMA`` / ``SETS_SCHEMA`` with the same types and the key columns), and the
file must belong to its folder's run (footer identity, or the ``run_id`` column statistics of
older files) and to one of the grids the run record accepts. A file that fails is named in one
``StoreWarning`` and skipped; everything else stays readable.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from orchestrator import store_files as _files
from orchestrator import store_manifest as _manifest
from orchestrator.schema import POSTERIOR_SCHEMA, RESULTS_SCHEMA, SETS_SCHEMA
from orchestrator.store_files import StoreWarning, check_id, check_readable, is_hidden, run_record_path
from orchestrator.store_write import META_KEY

#: Columns that identify one stored result; readers keep one row per key.
ROW_KEY = ("run_id", "trial_id", "config_id", "sample_id")
SET_KEY = ("run_id", "trial_id", "config_id")
SCHEMAS = {"results": RESULTS_SCHEMA, "sets": SETS_SCHEMA, "posterior": POSTERIOR_SCHEMA}
_REQUIRED = {"results": ("config_id", "sample_id", "status"), "sets": ("config_id", "status"),
             "posterior": ("config_id", "measurement", "status")}

#: path -> (size, mtime_ns, problem or None, identity dict); forgotten on every store write
_VERIFIED: dict[str, tuple[int, int, str | None, dict]] = {}
_WARNED: set[tuple[str, str]] = set()
_files._ON_WRITE.append(lambda path: _VERIFIED.pop(str(path), None))


# ------------------------------------------------------------------------------ verification
def _schema_problem(file_schema: pa.Schema, table: str) -> str | None:
    schema = SCHEMAS[table]
    extra = [n for n in file_schema.names if n not in schema.names]
    if extra:
        return (f"foreign schema: column(s) {extra[:5]}{' ...' if len(extra) > 5 else ''} are not in the "
                f"store's {table} schema")
    for field in file_schema:
        want = schema.field(field.name).type
        same = field.type == want or pa.types.is_null(field.type) or (
            pa.types.is_timestamp(field.type) and pa.types.is_timestamp(want))
        if not same:
            return f"foreign schema: column {field.name!r} is {field.type}, the store's {table} schema has {want}"
    missing = [n for n in _REQUIRED[table] if n not in file_schema.names]
    if missing:
        return f"foreign schema: key column(s) {missing} missing"
    return None


def _identity(meta: pq.FileMetaData, file_schema: pa.Schema) -> dict:
    """The run a file says it belongs to: footer identity, else its ``run_id`` statistics."""
    raw = (file_schema.metadata or {}).get(META_KEY)
    if raw:
        try:
            return dict(json.loads(raw))
        except (ValueError, TypeError):
            return {"run_id": "<unreadable identity>"}
    if "run_id" not in file_schema.names:
        return {}
    idx = meta.schema.names.index("run_id") if "run_id" in meta.schema.names else None
    values = set()
    for i in range(meta.num_row_groups) if idx is not None else ():
        stats = meta.row_group(i).column(idx).statistics
        if stats is None or not stats.has_min_max:
            return {}
        values |= {stats.min, stats.max}
    values = {v.decode() if isinstance(v, bytes) else v for v in values}
    return {"run_id": values.pop()} if len(values) == 1 else ({"run_id": sorted(values)} if values else {})


def _inspect(path: Path, table: str) -> tuple[str | None, dict]:
    try:
        size = path.stat().st_size
        if size < 12:
            return "not a complete Parquet file (footer does not verify)", {}
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(-4, os.SEEK_END)
            tail = fh.read(4)
        if head != b"PAR1" or tail != b"PAR1":
            return "not a complete Parquet file (footer does not verify)", {}
        meta = pq.read_metadata(path)
        file_schema = meta.schema.to_arrow_schema()
    except Exception:  # noqa: BLE001 - any parse failure means "not a complete file"
        return "not a complete Parquet file (footer does not verify)", {}
    identity = _identity(meta, file_schema)
    raw = (file_schema.metadata or {}).get(_manifest.COMPACTION_KEY)
    if raw and _manifest.is_compact_name(path.name):
        try:  # a compacted file: what it replaced (store_manifest)
            identity["compaction"] = dict(json.loads(raw))
        except (ValueError, TypeError):
            return "compacted file with an unreadable compaction record", identity
    return _schema_problem(file_schema, table), identity


def _verify(path: Path, table: str = "results") -> tuple[str | None, dict]:
    """``(problem or None, identity)`` of one file, cached by size and mtime."""
    try:
        st = path.stat()
    except OSError as exc:
        return f"unreadable ({exc.strerror})", {}
    key = str(path)
    cached = _VERIFIED.get(key)
    if cached and cached[0] == st.st_size and cached[1] == st.st_mtime_ns:
        return cached[2], cached[3]
    problem, identity = _inspect(path, table)
    _VERIFIED[key] = (st.st_size, st.st_mtime_ns, problem, identity)
    return problem, identity


def _identity_problem(identity: dict, run_id: str, record: dict | None) -> str | None:
    owner = identity.get("run_id")
    if owner is not None and owner != run_id:
        return f"its rows belong to run {owner!r}, not {run_id!r} (copied from another run?)"
    accepted = (record or {}).get("grid_hashes")
    got = identity.get("grid_hash")
    if accepted and got and got not in accepted:
        return (f"written for another grid of run {run_id!r} (grid {got}; the run record accepts "
                f"{', '.join(accepted)})")
    return None


def _warn_once(path: Path, problem: str) -> None:
    if (str(path), problem) in _WARNED:
        return
    _WARNED.add((str(path), problem))
    warnings.warn(f"skipping {path}: {problem}", StoreWarning, stacklevel=4)


def _runs_filter(run) -> set[str] | None:
    if run is None:
        return None
    return {run} if isinstance(run, str) else set(run)


def problems(store_dir, table: str = "results", run=None) -> list[tuple[Path, str]]:
    """``[(file, why it is skipped)]`` for ``table``'s files (nothing warned)."""
    out: list[tuple[Path, str]] = []
    _scan(store_dir, table, run, out, warn=False)
    return out


def _scan(store_dir, table, run, bad_out, warn=True, clean_out: set | None = None) -> list[Path]:
    """The verified files of ``table`` that count (a compaction's leftovers left out, see
    ``store_manifest``); ``clean_out`` gets the files that are their run's only file and a
    compacted one (one row per key by construction: readers need not dedupe them)."""
    base = Path(store_dir) / table
    runs = _runs_filter(run)
    good: list[Path] = []
    if not base.is_dir():
        return good
    for run_folder in sorted(base.iterdir()):
        if not run_folder.is_dir() or is_hidden(run_folder.name) or not run_folder.name.startswith("run="):
            continue
        run_id = run_folder.name[4:]
        if runs is not None and run_id not in runs:
            continue
        record = read_run(store_dir, run_id) if _valid_id(run_id) else None
        verified: list[tuple[Path, dict | None]] = []
        for f in sorted(run_folder.iterdir()):
            if is_hidden(f.name) or not f.name.endswith(".parquet") or not f.is_file():
                continue
            problem, identity = _verify(f, table)
            problem = problem or _identity_problem(identity, run_id, record)
            if problem is None:
                verified.append((f, identity.get("compaction")))
                continue
            bad_out.append((f, problem))
            if warn:
                _warn_once(f, problem)
        compacted, counted = _manifest.resolve(run_folder, verified)
        good.extend(counted)
        if clean_out is not None and counted == [compacted] and dict(verified)[compacted].get("unique_keys"):
            clean_out.add(compacted)
    return good


def _valid_id(run_id: str) -> bool:
    try:
        check_id("run_id", run_id)
        return True
    except ValueError:
        return False


def scan(store_dir, table: str = "results", run=None) -> tuple[list[Path], list[Path]]:
    """``(good, bad)`` Parquet files of ``table`` ("results" or "sets"); hidden/temp names skipped."""
    bad: list[tuple[Path, str]] = []
    good = _scan(store_dir, table, run, bad)
    return good, [p for p, _ in bad]


def list_files(store_dir, table: str = "results", run=None) -> list[Path]:
    """The verified Parquet files of ``table``; the others are skipped with a StoreWarning."""
    return scan(store_dir, table, run)[0]


# -------------------------------------------------------------------------------------- reads
def _filter_expr(filters) -> ds.Expression | None:
    """``{col: value | [values]}`` or ``[(col, op, value), ...]`` as a dataset expression."""
    if not filters:
        return None
    items: list[tuple[str, str, Any]] = []
    if isinstance(filters, Mapping):
        for col, val in filters.items():
            items.append((col, "in", list(val)) if isinstance(val, (list, tuple, set, frozenset)) else (col, "==", val))
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


def dataset(store_dir, table: str = "results", run=None) -> ds.Dataset | None:
    """A pyarrow dataset over ``table``'s verified files (None when there are none)."""
    files = list_files(store_dir, table, run)
    return ds.dataset([str(f) for f in files], schema=SCHEMAS[table], format="parquet") if files else None


def dataset_parts(store_dir, table: str = "results", run=None) -> tuple[ds.Dataset | None, ds.Dataset | None]:
    """``(clean, mixed)`` pyarrow datasets over ``table``'s verified files (None when empty):
    ``clean`` holds the runs stored as one compacted file alone (one row per key already),
    ``mixed`` every other file (a key may be stored more than once: readers dedupe it)."""
    clean: set = set()
    files = _scan(store_dir, table, run, [], clean_out=clean)
    parts = ([f for f in files if f in clean], [f for f in files if f not in clean])
    return tuple(ds.dataset([str(f) for f in p], schema=SCHEMAS[table], format="parquet") if p else None
                 for p in parts)


def _check_columns(table: str, filters, columns) -> None:
    schema = SCHEMAS[table]
    if columns is not None:
        unknown = set(columns) - set(schema.names)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}; allowed: {schema.names}")
    for col in (filters or {}) if isinstance(filters, Mapping) else [f[0] for f in (filters or [])]:
        if col not in schema.names:
            raise ValueError(f"unknown filter column {col!r}; allowed: {schema.names}")


def _read(store_dir, table: str, run, filters, columns, files: list[Path] | None = None) -> pa.Table:
    """``table``'s rows (verified files, or the already scanned ``files``) as one Arrow table."""
    schema = SCHEMAS[table]
    _check_columns(table, filters, columns)
    files = list_files(store_dir, table, run) if files is None else files
    data = ds.dataset([str(f) for f in files], schema=schema, format="parquet") if files else None
    if data is None:
        empty = schema.empty_table()
        return empty if columns is None else empty.select(list(columns))
    return data.to_table(columns=list(columns) if columns is not None else None, filter=_filter_expr(filters))


def _dedupe(df: pd.DataFrame, key: Sequence[str], time_col: str) -> pd.DataFrame:
    """One row per ``key``: an ok row first, then the newest."""
    if df.empty or not set(key) <= set(df.columns):
        return df
    order = df.assign(_ok=(df["status"] == "ok") if "status" in df else False)
    sort_cols = ["_ok"] + ([time_col] if time_col in df else [])
    order = order.sort_values(sort_cols, ascending=False, kind="stable", na_position="last")
    order = order.drop_duplicates(list(key), keep="first").sort_index()
    return order.drop(columns="_ok")


def _load(path, table, key, time_col, run, filters, columns, dedupe) -> pd.DataFrame:
    check_readable(path)
    _check_columns(table, filters, columns)
    clean: set = set()
    files = _scan(path, table, run, [], clean_out=clean)
    dedupe = dedupe and not clean.issuperset(files)  # compacted runs alone: one row per key already
    extra = list(key) + ["status", time_col] if dedupe else []
    cols = None if columns is None else list(dict.fromkeys(list(columns) + extra))
    df = _read(path, table, run, filters, cols, files).to_pandas()
    if dedupe:
        df = _dedupe(df, key, time_col).reset_index(drop=True)
    return df if columns is None else df[list(columns)]


def load(path, run=None, filters=None, columns=None, dedupe: bool = True) -> pd.DataFrame:
    """Per-image rows of the store at ``path`` as a DataFrame (RESULTS_SCHEMA columns).

    ``run``: a run id or list of them. ``filters``: ``{column: value or [values]}`` or
    ``[(column, op, value)]``. ``dedupe`` keeps one row per (run, trial, config, sample).
    A path that does not exist or is a file raises ``StoreError`` (never an empty store).
    """
    return _load(path, "results", ROW_KEY, "started_at", run, filters, columns, dedupe)


def load_sets(path, run=None, filters=None, columns=None, dedupe: bool = True) -> pd.DataFrame:
    """Per-config set metrics (SETS_SCHEMA columns) as a DataFrame; same arguments as ``load``."""
    return _load(path, "sets", SET_KEY, "computed_at", run, filters, columns, dedupe)


def completed_keys(store_dir, run_id: str, trial_id: str | None = None,
                   statuses: Sequence[str] = ("ok",)) -> set[tuple[str, int]]:
    """``{(config_id, sample_id)}`` stored with one of ``statuses`` for ``run_id``: what resume skips.

    The sweep driver passes ``("ok", "diverged")``: a diverged row is a result, recomputed only
    with ``--retry-diverged``. A store that does not exist yet has no keys.
    """
    if not Path(store_dir).is_dir():
        return set()
    table = _read(store_dir, "results", run_id, {"status": list(statuses)},
                  ["config_id", "sample_id", "trial_id", "run_id"])
    if trial_id is not None:
        table = table.filter(pc.equal(table["trial_id"], trial_id))
    table = table.filter(pc.equal(table["run_id"], run_id))
    return set(zip(table["config_id"].to_pylist(), table["sample_id"].to_pylist()))


def files_with_keys(store_dir, run_id: str, status: str) -> dict[Path, set[tuple[str, int]]]:
    """``{unit file: {(config_id, sample_id)}}`` of ``run_id``'s rows stored with ``status``."""
    out: dict[Path, set[tuple[str, int]]] = {}
    for f in list_files(store_dir, "results", run_id):
        t = pq.read_table(f, columns=["config_id", "sample_id", "status"])
        t = t.filter(pc.equal(t["status"], status))
        if t.num_rows:
            out[f] = set(zip(t["config_id"].to_pylist(), t["sample_id"].to_pylist()))
    return out


# --------------------------------------------------------------------------------------- runs
def read_run(store_dir, run_id: str) -> dict | None:
    """The record ``register_run`` wrote, or None."""
    path = run_record_path(store_dir, run_id)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        _warn_once(path, f"unreadable run record ({exc})")
        return None


def list_runs(store_dir) -> list[str]:
    """Run ids known to the store (registered or with result files)."""
    runs = set()
    folder = Path(store_dir) / "runs"
    if folder.is_dir():
        runs |= {f.stem for f in folder.glob("*.json") if not is_hidden(f.name)}
    base = Path(store_dir) / "results"
    if base.is_dir():
        runs |= {d.name[4:] for d in base.iterdir() if d.is_dir() and d.name.startswith("run=")}
    return sorted(r for r in runs if _valid_id(r))
