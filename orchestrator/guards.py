"""Guards before compute: grid size, Ray address and cluster resources.

Each guard runs before a model loads or an actor starts and raises a ``GuardError`` (a
``ValueError``: the CLI prints it as one line) that names the limit, what was asked and what is
there.

- ``grid_size``: the number of configs a spec stands for, exactly, by arithmetic
  (``grid_count``: no Config is built, so a 10^7-config grid is refused in well under a second).
- ``check_grid_size``: refuses more than ``MAX_CONFIGS`` configs unless ``--force``.
- ``check_address``: an unreachable ``host:port`` fails in seconds instead of Ray's long retry.
- ``check_resources``: per-actor CPUs/GPUs and the actor count against ``ray.cluster_resources()``.
"""
from __future__ import annotations

import math
import socket

from orchestrator.spec import SweepSpec

#: Largest grid `run` expands without ``--force`` (about 20 s of expansion on a loaded laptop).
MAX_CONFIGS = 100_000


class GuardError(ValueError):
    """A request refused before compute."""


def grid_size(spec: SweepSpec) -> int:
    """Configs of ``spec``: ``len(grid.expand(spec))``, counted without expanding."""
    from orchestrator.grid_count import n_configs

    return n_configs(spec)


def n_samples(spec: SweepSpec) -> int:
    """Images per config (measurements x samples per measurement), without touching the dataset when the spec says."""
    if spec.dataset.ids is not None:
        return len(spec.dataset.ids) * spec.dataset.samples_per_measurement
    if spec.dataset.count is not None:
        return spec.dataset.count * spec.dataset.samples_per_measurement
    from orchestrator.grid import sample_ids

    return len(sample_ids(spec))


def check_grid_size(spec: SweepSpec, force: bool = False, limit: int = MAX_CONFIGS) -> int:
    n = grid_size(spec)
    if n > limit and not force:
        raise GuardError(
            f"the grid has {n:,} configs ({n * n_samples(spec):,} rows), above the {limit:,}-config limit; "
            f"check the lists in solvers/tasks/regularizers/seeds, see `equibench plan SPEC`, or pass --force")
    return n


def check_address(address: str | None, timeout_s: float = 3.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address must accept a TCP connection."""
    if not address or address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise GuardError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc))
        raise GuardError(f"--address {address}: cannot reach a Ray cluster there ({why}); start one "
                         "(`ray start --head`) or leave out --address for a local Ray") from None


def _fmt_resources(res: dict) -> str:
    keys = [k for k in ("CPU", "GPU") if k in res] or ["CPU"]
    return ", ".join(f"{k} {res.get(k, 0):g}" for k in keys) + ("" if "GPU" in res else ", GPU 0")


def check_resources(spec: SweepSpec, cluster: dict, n_actors: int | None) -> None:
    """Refuse actors the cluster cannot place (they would wait forever with 'ETA ?')."""
    r = spec.resources
    cpus, gpus = float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0))
    have = _fmt_resources(cluster)
    if r.num_gpus > gpus:
        raise GuardError(f"resources.num_gpus: {r.num_gpus:g} per actor but the cluster has {have}; "
                         "set num_gpus: 0 for CPU actors or --address a cluster with GPUs")
    if r.num_cpus > cpus:
        raise GuardError(f"resources.num_cpus: {r.num_cpus:g} per actor but the cluster has {have}; "
                         f"allowed: at most {cpus:g}")
    if n_actors:
        fit = int(math.floor(cpus / r.num_cpus + 1e-9))
        if r.num_gpus > 0:  # a fraction packs per whole GPU (orchestrator.placement), never across two
            from orchestrator.placement import gpu_slots

            fit = min(fit, gpu_slots(gpus, r.num_gpus))
        if n_actors > fit:
            raise GuardError(f"{n_actors} actors x ({r.num_cpus:g} CPU, {r.num_gpus:g} GPU) do not fit the cluster "
                             f"({have}); allowed: at most {fit} actors (--actors / resources.num_actors)")
