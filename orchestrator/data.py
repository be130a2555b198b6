"""Dataset access for sweeps: names -> images, by sample id, cached per process.

The orchestrator addresses images by ``(dataset, split, sample_id)`` only; workers load the
dataset themselves (once per actor) instead of receiving pixels through the object store, so a
unit is a few ids and numbers. New datasets register a loader in ``DATASETS``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
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
