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


#: dataset name -> a function building its DatasetInfo (imported lazily).
DATASETS: dict[str, Callable[[], DatasetInfo]] = {"embedded": _embedded}


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
        raise ValueError(f"sample ids {bad} out of range for {name}/{split} ({d.sizes[split]} images)")
    return _split(name, split)[ids].clone()
