"""Trial rows in the store: the search's one writer, and reads through ``store``'s verified readers.

A sweep's driver is the store's single writer (``orchestrator.driver``); a search keeps that rule.
The driver starts one :class:`TrialWriter` actor on its own node (the store is the driver's
directory), and every unit of the search, fixed cells and Tune trials alike, is stored by it: the
dispatcher (``orchestrator.tune.pool``) hands a unit's rows to the writer and returns them to the
caller only once they are stored. Trial processes never open the store; a restarted or restored
trial asks the writer for the rows it already stored, and the writer reads them with
``store.load`` (files whose footer, schema and run identity verify; one row per key, an ok row
first, then the newest). The writer runs one call at a time, so a read never interleaves with a
write, and a write is an atomic unit file with a deterministic name: retried, it replaces itself.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from orchestrator import store


def _plain_row(row: dict) -> dict:
    """A DataFrame record with nulls as None (pandas gives NaN / NaT)."""
    out = {}
    for k, v in row.items():
        try:
            null = v is None or bool(v != v)  # NaN and NaT are the values unequal to themselves
        except (TypeError, ValueError):
            null = False
        out[k] = None if null else v
    return out


def stored_trial_rows(store_dir, run_id: str, trial_id: str, columns: Optional[Sequence[str]] = None) -> dict[int, dict]:
    """``{sample_id: row}`` that ``trial_id`` already stored (an ok row wins), read through the
    store's verified readers: a torn or foreign file is skipped (with a ``StoreWarning``), so its
    rows are computed again. ``columns``: the columns wanted (``sample_id`` and ``status`` always)."""
    if not Path(store_dir).is_dir():
        return {}
    cols = None if columns is None else list(dict.fromkeys(["sample_id", "status", *columns]))
    df = store.load(store_dir, run=run_id, filters={"trial_id": trial_id}, columns=cols)
    out: dict[int, dict] = {}
    for row in map(_plain_row, df.to_dict("records")):
        s = int(row["sample_id"])
        row["sample_id"] = s
        if s not in out or (out[s].get("status") != "ok" and row.get("status") == "ok"):
            out[s] = row
    return out


class TrialWriter:
    """The one writer of a search's rows (plain Python; :func:`start_writer` makes it an actor)."""

    def __init__(self, store_dir, run_id: str):
        self.store_dir, self.run_id = str(store_dir), run_id
        self.units = 0
        self.rows = 0

    def write_unit(self, unit_id: str, rows: list[dict]) -> str:
        """Store one unit's rows as ``unit-<unit_id>.parquet`` (atomic); returns the file's path."""
        path = store.write_unit(self.store_dir, self.run_id, unit_id, rows)
        self.units += 1
        self.rows += len(rows)
        return str(path)

    def trial_rows(self, trial_id: str, columns: Optional[Sequence[str]] = None) -> dict[int, dict]:
        """:func:`stored_trial_rows` of this search's store."""
        return stored_trial_rows(self.store_dir, self.run_id, trial_id, columns)

    def stats(self) -> dict:
        """Units and rows written by this writer process (since its last restart)."""
        return {"units": self.units, "rows": self.rows}


def start_writer(store_dir, run_id: str):
    """A :class:`TrialWriter` actor on the driver's node (restarted if it dies: writes replace
    themselves, so a retried write is safe)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    node = ray.get_runtime_context().get_node_id()
    actor = ray.remote(TrialWriter).options(
        num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False))
    return actor.remote(str(Path(store_dir).resolve()), run_id)


__all__ = ["TrialWriter", "start_writer", "stored_trial_rows"]
