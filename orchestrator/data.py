"""Dataset access for sweeps: names -> images, by sample id, cached per process.

The orchestrator addresses images by ``(dataset, split, sample_id)`` only; workers load the
dataset themselves (once per actor) instead of receiving pixels through the object store, so a
unit is a few ids and numbers. New datasets register a loader in ``DATASETS``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass(frozen=True)
class DatasetInfo:
    """What validation needs to know about a dataset without loading a model."""

    name: str
    splits: tuple[str, ...]
    image_shape: tuple[int, int, int]
    sizes: dict  # split -> number of images
    loader: Callable  # (split, ids) -> Tensor(N, C, H, W) in [-1, 1]
    #: operator name -> parameters that make the task a real inverse problem at this image size
    #: (the paper's 256-px defaults scaled down are too weak at 32x32); a task's own params win.
    operator_defaults: Callable[[str], dict] = lambda name: {}
    #: split -> role (``train`` | ``tune`` | ``report``); a split without a role is its own
    roles: dict = field(default_factory=dict)
    #: report split -> the tune split that searches for it (``tune`` for ``report``, ...)
    tune_split_of: dict = field(default_factory=dict)
    #: (split, id) -> the image's bootstrap cluster (photo or seed); default: the image itself
    cluster: Callable[[str, int], str] = lambda split, i: f"{split}:{int(i)}"
    #: (split_a, ids_a, split_b, ids_b) -> pairs of ids whose images share content; default: by id
    overlapping: Callable | None = None
    #: (split, id) -> the measurement the sample belongs to: ids of one measurement share the ground truth,
    #: the operator instance and the noise (``orchestrator.problem``'s seed rule); default: each id its own
    measurement_of: Callable[[str, int], int] = lambda split, i: int(i)
    #: (split, measurement ids, n) -> the sample ids of n replicas of each measurement (a spec's
    #: ``dataset.samples_per_measurement``); None: the dataset has one sample per measurement
    replica_ids: Callable | None = None
    #: (operator, y, sigma_y) -> the exact posterior of one measurement (``solvers.mixture.posterior``);
    #: None: unknown (natural images), so no posterior metrics
    exact_posterior: Callable | None = None
    #: False: the loader is called with the requested ids only (splits too large to hold whole)
    cache_split: bool = True

    def overlap(self, split_a: str, ids_a, split_b: str, ids_b) -> list[tuple[int, int]]:
        """Pairs ``(i, j)`` of images of ``split_a`` and ``split_b`` that share content."""
        if self.overlapping is not None:
            return list(self.overlapping(split_a, ids_a, split_b, ids_b))
        if split_a != split_b:
            return []
        common = set(int(i) for i in ids_a) & set(int(j) for j in ids_b)
        return [(i, i) for i in sorted(common)]


def _embedded() -> DatasetInfo:
    from solvers.embedded import data as emb

    size = int(emb.IMAGE_SIZE)
    return DatasetInfo(
        name="embedded",
        splits=tuple(emb.SPLITS),
        image_shape=(3, size, size),
        sizes={s: int(emb.split_size(s)) for s in emb.SPLITS},
        loader=lambda split, ids: emb.load_split(split, ids=list(ids)),
        operator_defaults=_embedded_operator_defaults,
        roles=dict(emb.ROLES),
        tune_split_of={"report": "tune", "report_ood": "tune_ood"},
        cluster=emb.cluster,
        overlapping=emb.overlapping,
    )


def _embedded_operator_defaults(name: str) -> dict:
    from operators import EMBEDDED_DEFAULTS

    return dict(EMBEDDED_DEFAULTS.get(name, {}))


def _mixture(world: str) -> DatasetInfo:
    """A mixture world (``solvers.mixture``): ground truths from the prior, replicas per measurement."""
    from solvers.mixture import data as mix
    from solvers.mixture.posterior import world_posterior
    from solvers.mixture.presets import world_spec

    spec = world_spec(world)
    return DatasetInfo(
        name=world,
        splits=mix.splits(world),
        image_shape=(spec.channels, spec.size, spec.size),
        sizes={s: mix.split_size(world, s) for s in mix.splits(world)},
        loader=lambda split, ids: mix.load(world, split, ids),
        operator_defaults=lambda name: mix.operator_defaults(world, name),
        roles=dict(mix.ROLES),
        tune_split_of={"report": "tune"},
        cluster=lambda split, i: mix.cluster(world, split, i),
        overlapping=lambda sa, ia, sb, ib: mix.overlapping(world, sa, ia, sb, ib),
        measurement_of=lambda split, i: mix.measurement_of(world, split, i),
        replica_ids=lambda split, ids, n: mix.replica_ids(world, split, ids, n),
        exact_posterior=lambda op, y, sigma_y: world_posterior(world, op, y, sigma_y),
        cache_split=False,
    )


def _mixture_worlds() -> dict[str, Callable[[], DatasetInfo]]:
    from solvers.mixture.presets import WORLDS

    return {name: functools.partial(_mixture, name) for name in WORLDS}


#: dataset name -> a function building its DatasetInfo (imported lazily).
DATASETS: dict[str, Callable[[], DatasetInfo]] = {"embedded": _embedded, **_mixture_worlds()}


def measurement_of(name: str, split: str, sample_id: int) -> int:
    """The measurement id of one sample (the id itself for datasets without replicas)."""
    return int(info(name).measurement_of(split, int(sample_id)))


def sample_ids(name: str, split: str, ids=None, count: int | None = None, per_measurement: int | None = None) -> list[int]:
    """The sample ids a dataset selection stands for: ``ids``, else the first ``count``, else the whole
    split; with ``per_measurement`` those are measurement ids, each replicated that many times."""
    d = info(name)
    base = list(ids) if ids is not None else list(range(count if count is not None else d.sizes[split]))
    if per_measurement is None:
        return [int(i) for i in base]
    if d.replica_ids is None:
        raise ValueError(f"dataset {name!r} has one sample per measurement: samples_per_measurement needs a dataset "
                         f"with replicas (the mixture worlds: {sorted(n for n in DATASETS if n != 'embedded')})")
    if ids is None and count is None:
        raise ValueError("samples_per_measurement needs the measurements: give dataset.count or dataset.ids")
    return [int(i) for i in d.replica_ids(split, base, int(per_measurement))]


@functools.lru_cache(maxsize=None)
def info(name: str) -> DatasetInfo:
    """The dataset's info; unknown names raise ``ValueError`` naming the allowed ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    return DATASETS[name]()


@functools.lru_cache(maxsize=8)
def _split(name: str, split: str):
    d = info(name)
    return d.loader(split, range(d.sizes[split]))


def cluster(name: str, split: str, sample_id: int) -> str:
    """The bootstrap cluster (source photo or seed) of one image of ``name``/``split``."""
    return str(info(name).cluster(split, int(sample_id)))


def load(name: str, split: str, ids: Sequence[int]):
    """Images ``ids`` of ``name``/``split`` as a (N, C, H, W) tensor in [-1, 1] (split cached)."""
    d = info(name)
    if split not in d.splits:
        raise ValueError(f"unknown split {split!r} for dataset {name!r}; allowed: {list(d.splits)}")
    ids = [int(i) for i in ids]
    bad = [i for i in ids if not 0 <= i < d.sizes[split]]
    if bad:
        raise ValueError(f"sample ids {bad[:10]} out of range for {name}/{split} ({d.sizes[split]} images)")
    if not d.cache_split:
        return d.loader(split, ids)
    return _split(name, split)[ids].clone()
