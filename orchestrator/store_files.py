"""The store's file layer: names, ids, atomic writes and the checks a store path must pass.

Every other store module builds paths through here, so an id that could escape the store
(``../x``), an over-long name or a store path that is a file is refused in one place, before
anything is read or written. See ``orchestrator/store.py`` for the layout.
"""
from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

#: Longest run/unit/config id the store accepts (file names stay well under the 255-byte limit).
MAX_ID_LEN = 100

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

#: Called with a path after every atomic write (the reader's verification cache registers here).
_ON_WRITE: list = []


class StoreWarning(UserWarning):
    """A file in the store was skipped (footer, schema or run identity does not verify)."""


class StoreError(ValueError):
    """A store path that cannot be used (missing, a file, read-only, not a store)."""


def check_id(kind: str, value) -> str:
    """``value`` as a store id, or ValueError naming the rule it breaks."""
    value = str(value)
    if len(value) > MAX_ID_LEN:
        raise ValueError(f"{kind} is {len(value)} characters long; allowed: at most {MAX_ID_LEN} "
                         f"(starts {value[:24]!r}...)")
    if not _SAFE_ID.match(value) or value in (".", ".."):
        raise ValueError(
            f"{kind} {value!r} is not a valid store name: use letters, digits, '_', '-', '.' "
            "and start with a letter or digit"
        )
    return value


def results_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "results"
    return base if run_id is None else base / f"run={check_id('run_id', run_id)}"


def sets_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "sets"
    return base if run_id is None else base / f"run={check_id('run_id', run_id)}"


def images_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "images"
    return base if run_id is None else base / f"run={check_id('run_id', run_id)}"


def runs_dir(store_dir) -> Path:
    return Path(store_dir) / "runs"


def run_record_path(store_dir, run_id: str) -> Path:
    return runs_dir(store_dir) / f"{check_id('run_id', run_id)}.json"


def unit_path(store_dir, run_id: str, unit_id: str) -> Path:
    """Where a unit's rows live (deterministic: a re-run overwrites, never duplicates)."""
    return results_dir(store_dir, run_id) / f"unit-{check_id('unit_id', unit_id)}.parquet"


def is_hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("_") or ".tmp" in name


# ------------------------------------------------------------------------------- store paths
_STORE_PARTS = ("results", "sets", "runs", "images", "posterior")


def check_readable(store_dir) -> Path:
    """``store_dir`` as a store to read: it must exist, be a directory and look like a store.

    A mistyped path is an error, never an empty store. An existing empty directory is an empty
    store (a run about to write there, or one whose files were removed).
    """
    path = Path(store_dir)
    if not path.exists():
        raise StoreError(f"store {path} does not exist (check --store; only `equibench run` creates a store)")
    if not path.is_dir():
        raise StoreError(f"store {path} is a file, not a directory (give the store's folder to --store)")
    try:
        entries = [p.name for p in path.iterdir() if not p.name.startswith(".")]
    except PermissionError as exc:
        raise StoreError(f"store {path} cannot be read: {exc.strerror}") from None
    if entries and not any(name in _STORE_PARTS for name in entries):
        raise StoreError(f"{path} is not an EquiBench store: it has none of {', '.join(_STORE_PARTS)}/ "
                         f"(found {', '.join(sorted(entries)[:3])}{', ...' if len(entries) > 3 else ''})")
    return path


def check_writable(store_dir) -> Path:
    """``store_dir`` as a store to write: created if missing, refused if it is a file or read-only.

    The probe is a hidden temporary file, removed at once (readers skip such names), so a check
    never changes what is stored.
    """
    path = Path(store_dir)
    if path.exists() and not path.is_dir():
        raise StoreError(f"store {path} is a file, not a directory (give a folder to --store)")
    if path.is_dir():
        check_readable(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        why = "read-only" if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else exc.strerror
        raise StoreError(f"store {path} is not writable ({why}): give a writable --store, or use "
                         "`equibench status/query/report` to read it") from None
    return path


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


def atomic_write(path: Path, write_fn) -> Path:
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
    for hook in _ON_WRITE:
        hook(path)
    return path


def remove(path: Path) -> None:
    """Delete one store file (a unit emptied by ``--retry-diverged``), telling the readers."""
    path.unlink()
    _fsync_dir(path.parent)
    for hook in _ON_WRITE:
        hook(path)
