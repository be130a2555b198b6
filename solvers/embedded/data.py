"""The embedded world's data: seeded dead-leaves images (iid) and crops of held-out photos (ood).

Why this world (issue 12): about ten distinct colour photos ship with scikit-image/scikit-learn, so
crops of the same photos cannot give independent train/tune/report samples. The in-distribution
data are therefore draws of a procedural law (``dead_leaves``: natural-image statistics, exactly
invariant under flips and 90-degree rotations, unlimited, one image per integer seed); real photos
are the out-of-distribution test, split by photo.

Roles, each disjoint from the others in photos and in seeds (``tests/test_embedded.py`` checks it):

- ``train``: dead-leaves seeds ``[0, TRAIN_SIZE)``, colours drawn from the palette photos
  ``PALETTE_PHOTOS`` (which appear in no other role); flips/rotations are added at training time;
- ``tune``: every search and selection (step sizes, lambdas, autoencoder variant, classical
  weights): dead-leaves seeds from ``SEED_BASE["tune"]``, and ``tune_ood``: crops of
  ``TUNE_OOD_PHOTOS``;
- ``report``: what tables report: dead-leaves seeds from ``SEED_BASE["report"]`` (``report``,
  iid) and crops of ``REPORT_OOD_PHOTOS`` (``report_ood``, ood).

Crops of one photo never overlap each other (``photos.disjoint_boxes``), and every image has a
``provenance`` (its seed, or its photo and box) and a ``cluster`` (the unit a paired bootstrap
resamples: the seed for dead leaves, the photo for crops), so overlap between any two image sets
can be checked by content, not by ids (``overlapping``).
"""
from __future__ import annotations

import functools

import torch

from . import dead_leaves, photos

IMAGE_SIZE = 32
PALETTE_PHOTOS = ("astronaut", "immunohistochemistry", "retina", "colorwheel", "camera", "brick")
TUNE_OOD_PHOTOS = ("rocket", "stereo_motorcycle:0")
REPORT_OOD_PHOTOS = ("chelsea", "coffee", "sklearn:china.jpg", "sklearn:flower.jpg")
#: photos that no role may use because they repeat another one's scene (the motorcycle's other view)
EXCLUDED_PHOTOS = ("stereo_motorcycle:1",)
TRAIN_SIZE = 12288
SEED_BASE = {"train": 0, "tune": 10_000_000, "report": 20_000_000}
DEAD_LEAVES_SIZES = {"train": TRAIN_SIZE, "tune": 64, "report": 256}
CROPS_PER_PHOTO = {"tune_ood": 16, "report_ood": 16}
OOD_PHOTOS = {"tune_ood": TUNE_OOD_PHOTOS, "report_ood": REPORT_OOD_PHOTOS}
OOD_SEEDS = {"tune_ood": 4321, "report_ood": 1234}
#: split -> role (train | tune | report)
ROLES = {"train": "train", "tune": "tune", "tune_ood": "tune", "report": "report", "report_ood": "report"}
SPLITS = tuple(ROLES)
PALETTE_SIDE = 64


def _check_split(split: str) -> None:
    if split not in ROLES:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")


@functools.lru_cache(maxsize=1)
def palette() -> torch.Tensor:
    """The palette photos, area-resized to (P, 3, PALETTE_SIDE, PALETTE_SIDE) in [0, 1]."""
    return torch.stack([photos.resized(name, PALETTE_SIDE) for name in PALETTE_PHOTOS])


def split_size(split: str) -> int:
    """Number of images in a split, without building it."""
    _check_split(split)
    if split in DEAD_LEAVES_SIZES:
        return DEAD_LEAVES_SIZES[split]
    return CROPS_PER_PHOTO[split] * len(OOD_PHOTOS[split])


def seed_of(split: str, index: int) -> int:
    """The dead-leaves seed of image ``index`` of an iid split."""
    return SEED_BASE[split] + int(index)


@functools.lru_cache(maxsize=2)
def crop_boxes(split: str) -> tuple:
    """``((photo, top, left, side), ...)`` of an ood split, photo by photo, fixed by its seed."""
    gen = torch.Generator().manual_seed(OOD_SEEDS[split])
    out = []
    for name in OOD_PHOTOS[split]:
        _, h, w = photos.photo(name).shape
        out += [(name, *box) for box in photos.disjoint_boxes(h, w, CROPS_PER_PHOTO[split], gen)]
    return tuple(out)


def provenance(split: str, index: int) -> dict:
    """Where image ``index`` of ``split`` comes from: ``{"seed"}`` or ``{"photo", "box"}``."""
    _check_split(split)
    if not 0 <= int(index) < split_size(split):
        raise ValueError(f"sample id {index} out of range for split {split!r} of {split_size(split)} images")
    if split in DEAD_LEAVES_SIZES:
        return {"kind": "dead_leaves", "seed": seed_of(split, index)}
    name, top, left, side = crop_boxes(split)[int(index)]
    return {"kind": "photo", "photo": name, "box": (top, left, side)}


def cluster(split: str, index: int) -> str:
    """The bootstrap cluster of an image: ``seed:<n>`` (independent draws) or ``photo:<name>``."""
    p = provenance(split, index)
    return f"seed:{p['seed']}" if p["kind"] == "dead_leaves" else f"photo:{p['photo']}"


def _boxes_overlap(a: tuple, b: tuple) -> bool:
    (ta, la, sa), (tb, lb, sb) = a, b
    return ta < tb + sb and tb < ta + sa and la < lb + sb and lb < la + sa


def overlapping(split_a: str, ids_a, split_b: str, ids_b) -> list[tuple[int, int]]:
    """Pairs ``(i, j)`` whose images share content: the same seed, or overlapping crops of a photo."""
    pa = [(int(i), provenance(split_a, i)) for i in ids_a]
    pb = [(int(j), provenance(split_b, j)) for j in ids_b]
    out = []
    for i, a in pa:
        for j, b in pb:
            if a["kind"] != b["kind"]:
                continue
            same = a["seed"] == b["seed"] if a["kind"] == "dead_leaves" else (
                a["photo"] == b["photo"] and _boxes_overlap(a["box"], b["box"]))
            if same:
                out.append((i, j))
    return out


def _render(split: str, ids: list[int], size: int) -> torch.Tensor:
    if split in DEAD_LEAVES_SIZES:
        x = dead_leaves.images([seed_of(split, i) for i in ids], palette(), size)
    else:
        boxes = crop_boxes(split)
        x = torch.stack([photos.crop(boxes[i][0], boxes[i][1:], size) for i in ids])
    return x * 2 - 1


@functools.lru_cache(maxsize=4)
def _whole(split: str, size: int) -> torch.Tensor:
    if split == "train":
        return photos.cached(f"dead_leaves-train-{TRAIN_SIZE}-{size}-{dead_leaves.VERSION}",
                             lambda: _render(split, list(range(TRAIN_SIZE)), size))
    return _render(split, list(range(split_size(split))), size)


def load_split(split: str = "report", n: int | None = None, ids=None, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Images of a split, (N, 3, size, size) in [-1, 1]; ``ids`` picks samples, ``n`` the first n.

    Deterministic: the same call returns the same tensor on every machine.
    """
    _check_split(split)
    total = split_size(split)
    if ids is not None:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < total]
        if bad:
            raise ValueError(f"sample ids {bad} out of range for split {split!r} of {total} images")
        if split == "train" and len(ids) < 256:
            return _render(split, ids, int(size))
        return _whole(split, int(size))[ids].clone()
    if n is not None:
        if n < 1 or n > total:
            raise ValueError(f"n must be in [1, {total}] for split {split!r}, got {n}")
        return _whole(split, int(size))[:n].clone() if split != "train" else _render(split, list(range(n)), int(size))
    return _whole(split, int(size)).clone()


def describe() -> dict:
    """The data card: sources, roles and sizes (written into the model card)."""
    return {
        "image_size": IMAGE_SIZE,
        "model": "dead leaves (power-law sizes r^-3 on [%g, %g] px, %d leaves, discs and rectangles, colours "
                 "from one window of one palette photo, linear shading, 2x supersampled)"
                 % (dead_leaves.R_MIN, dead_leaves.R_MAX, dead_leaves.N_LEAVES),
        "palette_photos": list(PALETTE_PHOTOS),
        "splits": {s: {"role": ROLES[s], "images": split_size(s),
                       **({"seeds": [SEED_BASE[s], SEED_BASE[s] + split_size(s) - 1]} if s in SEED_BASE else
                          {"photos": list(OOD_PHOTOS[s]), "crops_per_photo": CROPS_PER_PHOTO[s]})}
                   for s in SPLITS},
        "augmentation": "random elements of D4 (flips and 90-degree rotations) at training time",
    }
