"""A mixture world's data: ground truths drawn from the prior, replicated for posterior sampling.

**Splits.** ``tune`` and ``report`` (sizes in ``WorldSpec.measurements``) hold ``M`` ground truths
each, exact prior draws from a generator seeded by (world seed, split): independent of each other
and of everything a solver sees. There is no ``train`` split: the prior is known exactly.

**Samples per measurement.** A posterior sampler is judged on many samples *of one measurement*.
Sample ids are laid out replica-major: id ``i`` is replica ``i // M`` of measurement ``i % M``, so
ids ``0..M-1`` are the M measurements once each (a spec's ``count: n`` gives n distinct images, as
for any dataset) and ``dataset.samples_per_measurement: S`` in a spec selects ids
``{r M + m : r < S}`` for each measurement ``m``. Replicas of a measurement share the ground
truth here and, through ``measurement_of`` (``orchestrator.problem``'s seed rule), the operator
instance and the measurement noise; only the solver's own stream differs per id. The bootstrap
cluster of an id is its measurement, so report intervals are over measurements, not samples.
"""
from __future__ import annotations

import functools

import torch

from solvers.mixture.presets import world_spec
from solvers.rng import row_seed

__all__ = ["splits", "split_size", "measurements", "measurement_of", "replica_ids", "load", "cluster", "overlapping",
           "operator_defaults", "ROLES"]

ROLES = {"tune": "tune", "report": "report"}


def measurements(world: str, split: str) -> int:
    """``M``: the number of distinct ground truths (measurements) of ``split``."""
    sizes = dict(world_spec(world).measurements)
    if split not in sizes:
        raise ValueError(f"unknown split {split!r} for mixture world {world!r}; allowed: {list(sizes)}")
    return int(sizes[split])


def splits(world: str) -> tuple[str, ...]:
    return tuple(s for s, _ in world_spec(world).measurements)


def split_size(world: str, split: str) -> int:
    """Sample ids of ``split``: ``M x max_replicas``."""
    return measurements(world, split) * int(world_spec(world).max_replicas)


def measurement_of(world: str, split: str, sample_id: int) -> int:
    """The measurement (ground truth, operator instance, noise) sample ``sample_id`` belongs to."""
    return int(sample_id) % measurements(world, split)


def replica_ids(world: str, split: str, measurement_ids, per_measurement: int) -> list[int]:
    """Sample ids of ``per_measurement`` replicas of each measurement, measurement by measurement."""
    M, cap = measurements(world, split), int(world_spec(world).max_replicas)
    ids = [int(m) for m in measurement_ids]
    bad = [m for m in ids if not 0 <= m < M]
    if bad:
        raise ValueError(f"measurement ids {bad} out of range for {world}/{split} ({M} measurements)")
    if not 1 <= int(per_measurement) <= cap:
        raise ValueError(f"samples_per_measurement must be in [1, {cap}] for world {world!r}, got {per_measurement}")
    return [r * M + m for m in ids for r in range(int(per_measurement))]


@functools.lru_cache(maxsize=8)
def _truths(world: str, split: str) -> torch.Tensor:
    from solvers.mixture.world import world as build_world

    w = build_world(world)
    gen = torch.Generator().manual_seed(row_seed("mixture-truth", w.spec.name, w.spec.seed, split) & 0x7FFF_FFFF_FFFF_FFFF)
    x, _ = w.mixture.sample(measurements(world, split), gen)
    return x.reshape(-1, *w.shape)


def load(world: str, split: str, ids) -> torch.Tensor:
    """Ground truths of sample ``ids`` (N, C, H, W), float64: solvers then run in float64 too."""
    ids = [int(i) for i in ids]
    n = split_size(world, split)
    bad = [i for i in ids if not 0 <= i < n]
    if bad:
        raise ValueError(f"sample ids {bad[:5]} out of range for {world}/{split} ({n} ids)")
    return _truths(world, split)[[measurement_of(world, split, i) for i in ids]].clone()


def cluster(world: str, split: str, sample_id: int) -> str:
    """The bootstrap unit: the measurement."""
    return f"{split}:measurement:{measurement_of(world, split, sample_id)}"


def overlapping(world: str, split_a: str, ids_a, split_b: str, ids_b) -> list[tuple[int, int]]:
    """Pairs sharing content: ids of one split with the same measurement (splits never share)."""
    if split_a != split_b:
        return []
    by_m: dict[int, list[int]] = {}
    for j in ids_b:
        by_m.setdefault(measurement_of(world, split_b, j), []).append(int(j))
    return [(int(i), j) for i in ids_a for j in by_m.get(measurement_of(world, split_a, i), [])]


def operator_defaults(world: str, name: str) -> dict:
    """Operator parameters that keep the posterior multimodal at this size (see the README note):
    random inpainting drops 90% of the pixels, SR is x4, the Gaussian blur has std size/4 px."""
    h = world_spec(world).size
    std = h / 4
    blur = min(2 * int(1.5 * std) + 1, h - 1)
    table = {
        "random_inpainting": {"p": 0.9},
        "box_inpainting": {"box_size": h // 2, "margin": 1},
        "super_resolution": {"factor": 4},
        "gaussian_blur": {"std": std, "kernel_size": blur - (blur % 2 == 0)},
        "motion_blur": {"kernel_size": 5 if h > 5 else 3},
    }
    return dict(table.get(name, {}))
