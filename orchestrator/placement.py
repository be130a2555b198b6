"""Where actors go: how many a cluster holds, node by node, GPU by GPU.

Ray places an actor on one node, and a fractional ``num_gpus`` (``0.25``: four actors share a
GPU) on one GPU of it: a fraction never spans two GPUs. So the number of actors a cluster can
hold is a sum over its nodes, and on each node over its GPUs:

- ``num_gpus`` ``f <= 1``: ``floor(1 / f)`` actors per whole GPU (``f = 0.4``: 2 per GPU, not 2.5),
  times the node's GPUs; ``f = 1``: one process per GPU (Ray gives each its own
  ``CUDA_VISIBLE_DEVICES``, so ``cuda`` inside the actor is that GPU);
- ``f > 1``: a whole number of GPUs per actor (Ray refuses fractions above 1): ``floor(G / f)``
  per node;
- and never more than the node's CPUs allow (``floor(CPU / num_cpus)``; CPU actors: threads too).

Totals alone overcount: 2 nodes of 3 GPUs hold 2 actors of ``num_gpus: 2``, not 3, and
``floor(2 / 0.4) = 5`` actors of 0.4 GPU do not fit 2 GPUs (4 do). The extra actor would wait
forever. ``capacity`` works on ``ray.nodes()``-shaped records, so tests pass fake clusters.
"""
from __future__ import annotations

import math
from typing import Iterable

__all__ = ["check_num_gpus", "per_gpu", "gpu_slots", "node_capacity", "capacity", "alive_nodes", "actor_options"]

_EPS = 1e-9


def check_num_gpus(value: float) -> float:
    """``num_gpus`` must be >= 0 and, above 1, a whole number (Ray's rule); ValueError otherwise."""
    if value < 0:
        raise ValueError(f"{value!r} is not allowed; allowed: 0 (CPU actors), a fraction in (0, 1], or a whole number")
    if value > 1 and abs(value - round(value)) > _EPS:
        raise ValueError(f"{value!r} GPUs per actor: above 1 Ray needs a whole number; allowed: a fraction in "
                         f"(0, 1] (actors sharing a GPU) or 2, 3, ...")
    return value


def per_gpu(num_gpus: float) -> int:
    """Actors of ``num_gpus`` (<= 1) that share one GPU."""
    return int(math.floor(1.0 / num_gpus + _EPS))


def gpu_slots(gpus: float, num_gpus: float) -> int:
    """Actors of ``num_gpus`` that ``gpus`` GPUs of one node hold (whole GPUs only count)."""
    whole = int(math.floor(gpus + _EPS))
    if num_gpus <= 1:
        return whole * per_gpu(num_gpus)
    return int(math.floor(whole / round(num_gpus) + _EPS))


def node_capacity(resources: dict, num_gpus: float, num_cpus: float, threads: int = 1) -> int:
    """Actors one node (its ``Resources``: ``CPU``, ``GPU``) holds."""
    cpus = float(resources.get("CPU", 0))
    if num_gpus > 0:
        by_cpu = int(math.floor(cpus / num_cpus + _EPS))
        return min(gpu_slots(float(resources.get("GPU", 0)), num_gpus), by_cpu)
    return int(math.floor(cpus / max(float(threads), num_cpus) + _EPS))


def alive_nodes(nodes: Iterable[dict]) -> list[dict]:
    """The ``Resources`` of the live nodes among ``ray.nodes()`` records."""
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive", n.get("alive", True))]


def capacity(nodes: Iterable[dict], num_gpus: float, num_cpus: float, threads: int = 1) -> int:
    """Actors the cluster (``ray.nodes()`` records) holds: the sum of ``node_capacity`` over live nodes."""
    return sum(node_capacity(res, num_gpus, num_cpus, threads) for res in alive_nodes(nodes))


def actor_options(resources) -> dict:
    """``Worker.options(...)`` of a spec's ``resources``: Ray places the actor on a node with these free."""
    return {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
