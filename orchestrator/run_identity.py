"""Run identity: a run is its resolved grid, not just its name.

The run record (``STORE/runs/<run>.json``) carries ``grid_hash``, a hash of the sorted config ids
and sample ids the spec expands to, and ``grid_hashes``, every grid the run accepted (its first
one, plus any added with ``--extend``). Every file the driver writes carries the hash in its
footer, so readers skip files written for another grid (``store_read``).

``check`` runs before anything is written or computed: the same name with another grid is refused
with a message saying how to name a new run or extend this one.
"""
from __future__ import annotations

from typing import Sequence

from orchestrator.grid import stable_hash


class RunIdentityError(ValueError):
    """A spec whose grid differs from the one its run name already holds in the store; the message
    says how to name a new run (a ``name=`` override when the grid came from overrides) or extend it."""

    def __init__(self, run_id: str, store_dir, old: str, n_configs: int, n_samples: int, new_hash: str,
                 overrides: Sequence[str] = ()):
        self.run_id, self.store_dir, self.old = run_id, store_dir, old
        self.n_configs, self.n_samples, self.new_hash = n_configs, n_samples, new_hash
        given = f"this spec with the overrides {' '.join(overrides)}" if overrides else "this spec"
        fix = (f"add the override name={run_id}-2 for a new run" if overrides
               else f"give the spec a new name: (e.g. name: {run_id}-2) for a new run")
        super().__init__(f"run {run_id!r} in store {store_dir} holds another grid ({old}); {given} gives {n_configs} "
                         f"configs x {n_samples} samples (grid {new_hash}): {fix}, or rerun with --extend to add this "
                         f"grid to run {run_id!r}")

    def with_overrides(self, overrides: Sequence[str]) -> "RunIdentityError":
        """The same refusal for a spec whose grid came from command-line overrides."""
        return RunIdentityError(self.run_id, self.store_dir, self.old, self.n_configs, self.n_samples, self.new_hash,
                                overrides)


def grid_hash(config_ids: Sequence[str], sample_ids: Sequence[int]) -> str:
    """The hash of a resolved grid: order-free over its config ids and sample ids."""
    return stable_hash({"configs": sorted(config_ids), "samples": sorted(int(s) for s in sample_ids)})


def check(record: dict | None, run_id: str, store_dir, new_hash: str, n_configs: int, n_samples: int,
          extend: bool = False) -> list[str]:
    """The grid hashes the run accepts after this run, or ``RunIdentityError``.

    ``record``: the stored run record (None for a new run). A record written before run identity
    existed (no ``grid_hash``) is accepted when its grid size matches, and refused otherwise.
    """
    if record is None:
        return [new_hash]
    accepted = list(record.get("grid_hashes") or ([record["grid_hash"]] if record.get("grid_hash") else []))
    if new_hash in accepted:
        return accepted
    old_rows = record.get("n_rows")
    same_size_legacy = not accepted and old_rows == n_configs * n_samples
    if extend or same_size_legacy:
        return accepted + [new_hash]
    old = (f"{record.get('n_configs', '?')} configs x {record.get('n_samples', '?')} samples"
           f"{', grid ' + accepted[-1] if accepted else ''}")
    raise RunIdentityError(run_id, store_dir, old, n_configs, n_samples, new_hash)
