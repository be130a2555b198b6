"""Which of a run's verified result files count: compacted files, their manifests, superseded units.

A compacted run folder holds ``compact-<generation>.parquet``: every row of the unit files (and of
the previous compacted file) it replaced, one row per key, sorted, in large row groups
(``orchestrator.store_compact`` writes it). The switch from units to the compacted file is one
``os.replace``; what it replaces is named where the readers can check it:

* the compacted file's footer (``COMPACTION_KEY``) holds its generation, the older compacted files
  it merged (``merged``), and the name and digest of its **manifest**,
* the manifest ``.compact-<generation>.manifest.json`` (hidden: never read as data) maps each unit
  file it merged to the blake2b digest of that file's bytes.

Readers (``store_read``) drop the files the run's *live* compacted file (its highest generation)
supersedes: the compacted files in ``merged``, and every unit file listed in its manifest whose
bytes still have the listed digest. So a crash at any point of a compaction leaves either the old
units (no compacted file yet) or the compacted file with leftovers that do not count, never a row
twice; a unit written again after compaction (``--retry-diverged``, a resumed run) has other bytes
and counts. The manifest is removed last, after every file it lists, so a missing manifest means
no leftovers remain.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Iterable

from orchestrator import store_files as _files

#: Footer key of a compacted file's description (JSON).
COMPACTION_KEY = b"equibench_compaction"
#: Rows per row group in a compacted file: duckdb / pyarrow prune row groups by their statistics.
ROW_GROUP_ROWS = 65_536
#: Sort order of a compacted file's rows (rows of one solver / task / config lie together).
SORT_KEY = ("solver", "task", "regularizer", "dataset", "config_id", "trial_id", "sample_id")

_COMPACT_RE = re.compile(r"^compact-(\d{6,})\.parquet$")
_MANIFEST_RE = re.compile(r"^\.compact-(\d{6,})\.manifest\.json$")

#: path -> (size, mtime_ns, blake2b hex) of hashed unit files; forgotten on every store write
_DIGESTS: dict[str, tuple[int, int, str]] = {}
_files._ON_WRITE.append(lambda path: _DIGESTS.pop(str(path), None))


def compact_name(generation: int) -> str:
    return f"compact-{generation:06d}.parquet"


def manifest_name(generation: int) -> str:
    return f".compact-{generation:06d}.manifest.json"


def generation_of(name: str) -> int | None:
    """The generation a compacted file's or a manifest's name carries, else None."""
    m = _COMPACT_RE.match(name) or _MANIFEST_RE.match(name)
    return int(m.group(1)) if m else None


def is_compact_name(name: str) -> bool:
    return bool(_COMPACT_RE.match(name))


def digest_bytes(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_digest(path: Path) -> str | None:
    """blake2b of ``path``'s bytes (cached by size and mtime), None when it cannot be read."""
    try:
        st = path.stat()
        cached = _DIGESTS.get(str(path))
        if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
            return cached[2]
        value = digest_bytes(path.read_bytes())
    except OSError:
        return None
    _DIGESTS[str(path)] = (st.st_size, st.st_mtime_ns, value)
    return value


def read_manifest(folder: Path, info: dict) -> dict[str, str]:
    """``{unit file name: digest}`` of a compacted file's manifest; {} when it is gone (cleanup
    finished) or does not match the digest the compacted file's footer recorded."""
    name = info.get("manifest")
    if not name or generation_of(name) is None:
        return {}
    try:
        data = (folder / name).read_bytes()
    except OSError:
        return {}
    if digest_bytes(data) != info.get("manifest_blake2b"):
        return {}
    try:
        units = json.loads(data).get("units", {})
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in units.items()} if isinstance(units, dict) else {}


def live(files: Iterable[tuple[Path, dict]]) -> tuple[Path, dict] | None:
    """The live compacted file among ``(path, compaction info)`` pairs: the highest generation."""
    best = None
    for path, info in files:
        gen = generation_of(path.name)
        if info and gen is not None and (best is None or gen > best[0]):
            best = (gen, path, info)
    return (best[1], best[2]) if best else None


def resolve(folder: Path, files: list[tuple[Path, dict | None]]) -> tuple[Path | None, list[Path]]:
    """``(live compacted file or None, the files that count)`` of one run folder.

    ``files``: the folder's verified files with their compaction info (None for a unit file).
    Superseded files (see the module docstring) are left out silently: they are a compaction's
    leftovers, removed by its cleanup or the next ``equibench compact``.
    """
    current = live((p, i) for p, i in files if i and is_compact_name(p.name))
    if current is None:
        return None, [p for p, _ in files]
    path, info = current
    merged = set(info.get("merged") or ())
    units = [p for p, i in files if p != path and not (i and is_compact_name(p.name))]
    manifest = read_manifest(folder, info) if units else {}
    keep = []
    for p, i in files:
        if p == path:
            keep.append(p)
        elif i and is_compact_name(p.name):
            if p.name not in merged:
                keep.append(p)  # a compacted file the live one does not name: counted (readers dedupe)
        elif p.name not in manifest or file_digest(p) != manifest[p.name]:
            keep.append(p)
    return path, keep
