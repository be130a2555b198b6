"""Compaction: a finished run's unit files merged into one large sorted Parquet file, atomically.

A store grows one small file per work unit, and every read lists and footer-verifies each of them
(about 1 ms a file): 31,250 files for a million rows of 32-row units. ``compact_run`` replaces a
run's counted files (its unit files and its previous compacted file) by
``results/run=<run>/compact-<generation>.parquet``:

* **one row per key**, the one every reader shows (ok first, then the newest: ``store_read``), so
  the readers skip their dedupe for a run stored as that one file;
* **sorted** by ``store_manifest.SORT_KEY`` (solver, task, regularizer, dataset, config) in row
  groups of ``ROW_GROUP_ROWS`` rows, so a filter on those columns prunes row groups by statistics;
* the run's footer identity (run id, grid hash) like every store file, plus a compaction record.

Steps, each safe to crash after (``store_manifest`` says how readers tell what counts):

1. finish an interrupted compaction's cleanup;
2. read and digest every input file, dedupe and sort the rows;
3. write the manifest (hidden; names each merged unit file and its bytes' digest);
4. write the compacted file (``atomic_write``: temp name, fsync, ``os.replace``; this is the switch),
   then verify its footer, schema, identity and row count like any reader (on failure it is
   removed again and the units stay);
5. remove the merged files, then the manifest.

Idempotent: compacting a compacted run changes nothing; rows written after a compaction (a resume,
``--retry-diverged``) are unit files again, counted with it, and merged by the next compaction.
One writer at a time, as for the whole store: the driver compacts at the end of its own run.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from orchestrator import store_files as _files
from orchestrator import store_manifest as _m
from orchestrator import store_read as _read
from orchestrator.schema import RESULTS_SCHEMA
from orchestrator.store_files import StoreError, StoreWarning, atomic_write, results_dir
from orchestrator.store_write import _write_parquet

#: A run compacts at the end of its sweep when it has at least this many unit files (below that,
#: listing and verifying them costs well under 0.1 s; ``equibench compact`` has no threshold).
COMPACT_MIN_UNIT_FILES = 64


@dataclass
class Compaction:
    """What ``compact_run`` did for one run."""

    run_id: str
    compacted: bool
    reason: str
    units: int = 0  # unit files merged
    rows: int = 0  # rows of the compacted file
    bytes_before: int = 0
    bytes_after: int = 0
    removed: int = 0  # files removed (merged units, older compacted files, leftovers)
    seconds: float = 0.0
    file: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------- rows
def conform(table: pa.Table) -> pa.Table:
    """``table`` as exactly RESULTS_SCHEMA (older files may lack columns or store typed nulls)."""
    if table.schema.equals(RESULTS_SCHEMA, check_metadata=False):  # every file the current writers wrote
        return table.replace_schema_metadata(None)
    cols = []
    for field in RESULTS_SCHEMA:
        if field.name in table.column_names:
            col = table[field.name]
            if col.type != field.type:
                col = col.cast(field.type, safe=not pa.types.is_timestamp(field.type))
        else:
            col = pa.nulls(table.num_rows, field.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=RESULTS_SCHEMA)


def _same_as_previous(cols: list[pa.ChunkedArray]) -> np.ndarray:
    """Per row: all ``cols`` equal the previous row's (nulls equal nulls)."""
    n = len(cols[0])
    same = np.zeros(n, dtype=bool)
    if n < 2:
        return same
    same[1:] = True
    for c in cols:
        a, b = c.slice(1), c.slice(0, n - 1)
        eq = pc.or_(pc.fill_null(pc.equal(a, b), False), pc.and_(pc.is_null(a), pc.is_null(b)))
        same[1:] &= eq.to_numpy(zero_copy_only=False)
    return same


def _sort(table: pa.Table, keys: list[tuple[str, str]]) -> pa.Array:
    """Stable sort indices of ``table`` by ``keys`` ((column, order)), nulls last."""
    if int(pa.__version__.split(".")[0]) >= 25:  # null placement per key (the global option is deprecated)
        return pc.sort_indices(table, sort_keys=[(k, o, "at_end") for k, o in keys])
    return pc.sort_indices(table, sort_keys=keys, null_placement="at_end")


def order(table: pa.Table) -> pa.Array:
    """Row indices of ``table``: one per ``ROW_KEY`` (ok first, then the newest; ties keep file
    order, as ``store_read._dedupe``), in ``SORT_KEY`` order."""
    ok = pc.cast(pc.fill_null(pc.equal(table["status"], "ok"), False), pa.int8())
    keys = table.select(list(_read.ROW_KEY)).append_column("_ok", ok).append_column("_t", table["started_at"])
    by_key = _sort(keys, [(k, "ascending") for k in _read.ROW_KEY] + [("_ok", "descending"), ("_t", "descending")])
    ranked = keys.select(list(_read.ROW_KEY)).take(by_key)
    keep = pc.filter(by_key, pa.array(~_same_as_previous([ranked[k] for k in _read.ROW_KEY])))
    sub = table.select(list(_m.SORT_KEY)).take(keep)
    return pc.take(keep, _sort(sub, [(k, "ascending") for k in _m.SORT_KEY]))


# ---------------------------------------------------------------------------------- cleanup
def _unlink_all(folder: Path, paths) -> int:
    n = 0
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        n += 1
        for hook in _files._ON_WRITE:
            hook(p)
    if n:
        _files._fsync_dir(folder)
    return n


def _compacted(folder: Path) -> list[tuple[Path, dict]]:
    out = []
    for p in sorted(folder.iterdir()):
        if _m.is_compact_name(p.name) and p.is_file():
            problem, identity = _read._verify(p, "results")
            if problem is None and identity.get("compaction"):
                out.append((p, identity["compaction"]))
    return out


def cleanup(folder: Path) -> int:
    """Remove what the live compacted file of ``folder`` supersedes, then its manifest and any
    manifest no compacted file uses (a crash before step 4). Returns the number of files removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    current = _m.live(_compacted(folder))
    manifests = [p for p in folder.iterdir() if p.name.startswith(".compact-") and _m.generation_of(p.name) is not None]
    if current is None:
        return _unlink_all(folder, manifests)
    path, info = current
    doomed = [folder / name for name in info.get("merged") or () if _m.is_compact_name(name) and name != path.name]
    listed = _m.read_manifest(folder, info)
    doomed += [folder / name for name, digest in sorted(listed.items())
               if (folder / name).is_file() and _m.file_digest(folder / name) == digest]
    removed = _unlink_all(folder, doomed)
    return removed + _unlink_all(folder, manifests)  # last: a missing manifest means no leftovers


# -------------------------------------------------------------------------------- compaction
def _verified_inputs(store_dir, run_id: str) -> list[tuple[Path, dict]]:
    return [(p, _read._verify(p, "results")[1]) for p in _read.list_files(store_dir, "results", run_id)]


def _verify_written(path: Path, run_id: str, record: dict | None, generation: int, rows: int) -> str | None:
    problem, identity = _read._verify(path, "results")
    problem = problem or _read._identity_problem(identity, run_id, record)
    if problem is None and (identity.get("compaction") or {}).get("generation") != generation:
        problem = "its footer does not carry its compaction record"
    if problem is None and pq.read_metadata(path).num_rows != rows:
        problem = f"it holds {pq.read_metadata(path).num_rows} rows, {rows} were written"
    return problem


def _read_unit(path: Path) -> tuple[str, str, int, pa.Table]:
    """``(name, digest of its bytes, size, rows)`` of one unit file, the rows decoded from those bytes."""
    data = path.read_bytes()
    return path.name, _m.digest_bytes(data), len(data), conform(pq.ParquetFile(pa.BufferReader(data)).read())


def compact_run(store_dir, run_id: str, *, min_unit_files: int = 1) -> Compaction:
    """Compact run ``run_id`` of ``store_dir`` (the module docstring); nothing to do when it has
    fewer than ``min_unit_files`` unit files and at most one compacted file."""
    t0 = time.perf_counter()
    folder = results_dir(store_dir, run_id)
    if not folder.is_dir():
        return Compaction(run_id, False, "no result files")
    removed = cleanup(folder)
    record = _read.read_run(store_dir, run_id)
    inputs = _verified_inputs(store_dir, run_id)
    compacts = [(p, i) for p, i in inputs if i.get("compaction")]
    units = [(p, i) for p, i in inputs if not i.get("compaction")]
    current = _m.live((p, i["compaction"]) for p, i in compacts)
    if len(units) < max(1, min_unit_files) and len(compacts) <= 1:
        why = "already compact" if not units else f"{len(units)} unit file(s), fewer than {min_unit_files}"
        return Compaction(run_id, False, why, rows=pq.read_metadata(current[0]).num_rows if current else 0,
                          removed=removed, seconds=time.perf_counter() - t0, file=current[0].name if current else None)
    tables, digests, before = [], {}, 0
    for p, _ in compacts:
        tables.append(conform(pq.ParquetFile(p).read()))
        before += p.stat().st_size
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Parquet decoding releases the GIL
        for name, digest, size, table in pool.map(_read_unit, [p for p, _ in units]):
            digests[name] = digest
            tables.append(table)
            before += size
    rows = pa.concat_tables(tables)
    rows = rows.take(order(rows))
    existing = [g for g in (_m.generation_of(p.name) for p in folder.iterdir()) if g is not None]
    gen = max(existing, default=0) + 1
    manifest = json.dumps({"run_id": run_id, "generation": gen, "units": digests}, sort_keys=True).encode()
    atomic_write(folder / _m.manifest_name(gen), lambda fh: fh.write(manifest))
    info = {"generation": gen, "manifest": _m.manifest_name(gen), "manifest_blake2b": _m.digest_bytes(manifest),
            "merged": sorted(p.name for p, _ in compacts), "units": len(units), "unique_keys": True,
            "sorted_by": list(_m.SORT_KEY), "row_group_rows": _m.ROW_GROUP_ROWS,
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat()}
    hashes = {i.get("grid_hash") for _, i in inputs}
    ghash = hashes.pop() if len(hashes) == 1 else (record or {}).get("grid_hash")
    table = rows.replace_schema_metadata({_m.COMPACTION_KEY: json.dumps(info, sort_keys=True).encode()})
    path = _write_parquet(folder / _m.compact_name(gen), table, run_id, ghash, row_group_size=_m.ROW_GROUP_ROWS)
    problem = _verify_written(path, run_id, record, gen, rows.num_rows)
    if problem is not None:  # back to the units: nothing was removed yet
        _unlink_all(folder, [path, folder / _m.manifest_name(gen)])
        raise StoreError(f"compaction of run {run_id!r} did not verify ({problem}); its unit files are unchanged")
    removed += cleanup(folder)
    return Compaction(run_id, True, "compacted", units=len(units), rows=rows.num_rows, bytes_before=before,
                      bytes_after=path.stat().st_size, removed=removed, seconds=time.perf_counter() - t0, file=path.name)


def compact_store(store_dir, runs=None, *, min_unit_files: int = 1) -> list[Compaction]:
    """``compact_run`` for every run of the store (or ``runs``)."""
    names = _read.list_runs(store_dir) if runs is None else ([runs] if isinstance(runs, str) else list(runs))
    return [compact_run(store_dir, r, min_unit_files=min_unit_files) for r in names]


def compact_after_sweep(spec, store_dir, result, enabled: bool | None = None):
    """The driver's last step: compact ``result``'s run when the sweep finished (this call
    computed rows, none failed, every grid row is stored) and it has ``COMPACT_MIN_UNIT_FILES``
    unit files. ``enabled`` (CLI ``--no-compact``) defaults to the spec's ``compact``. A failed
    compaction warns and leaves the units readable. Returns ``result`` (``.compaction`` set when
    it ran)."""
    enabled = getattr(spec, "compact", True) if enabled is None else enabled
    finished = (not result.stopped_early and result.units_done > 0 and result.rows_failed == 0 and not result.errors
                and result.skipped_rows + result.rows_ok + result.rows_diverged >= result.total_rows)
    if not (enabled and finished):
        return result
    n_units = sum(1 for p in _read.list_files(store_dir, "results", result.run_id) if not _m.is_compact_name(p.name))
    if n_units < COMPACT_MIN_UNIT_FILES:
        return result
    try:
        result.compaction = compact_run(store_dir, result.run_id)
    except (OSError, StoreError) as exc:
        warnings.warn(f"run {result.run_id!r} was not compacted ({exc}); its unit files stay readable "
                      f"(`equibench compact --store {os.fspath(store_dir)} --run {result.run_id}` retries)", StoreWarning)
    return result
