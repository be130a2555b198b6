"""The embedded world's data: 32x32 RGB crops of real photos that installed packages ship.

Why these sources: scikit-image's wheel and scikit-learn's bundle real photographs, so the whole
benchmark runs offline. Training and validation use *different photographs* (not just different
crops), so validation measures generalisation, not memorisation:

- train: 13 scikit-image images (astronaut, rocket, both motorcycle views, Hubble deep field,
  immunohistochemistry, retina, and the gray camera, coins, moon, brick, grass, gravel replicated
  to RGB), ``TRAIN_BANK_SIZE`` random square crops (side 40-200 px, capped by the photo) resized
  with antialiasing to 32x32; flips are added at training time.
- val: 4 held-out colour photos (scikit-image's chelsea and coffee, scikit-learn's china and
  flower), 16 crops each at fixed seeds: 64 images.

Why 32x32: on 2 CPU cores a prior can be trained in minutes at 32x32 but not at 64x64
(FIELD-NOTES); operators are re-parametrised for this size (operators' EMBEDDED_DEFAULTS).
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 32
TRAIN_BANK_SIZE = 4096
VAL_CROPS_PER_PHOTO = 16
TRAIN_SOURCES = (
    "astronaut", "rocket", "stereo_motorcycle:0", "stereo_motorcycle:1", "hubble_deep_field",
    "immunohistochemistry", "retina", "camera", "coins", "moon", "brick", "grass", "gravel",
)
VAL_SOURCES = ("chelsea", "coffee", "sklearn:china.jpg", "sklearn:flower.jpg")
SPLITS = ("train", "val")


def _photo(name: str) -> torch.Tensor:
    """One source photo as a float tensor (3, H, W) in [0, 1]."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        base, _, index = name.partition(":")  # "stereo_motorcycle:0" picks one view of a tuple
        arr = getattr(skimage.data, base)()
        if index:
            arr = arr[int(index)]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    else:  # some bundled images are bool or float
        arr = arr.astype(np.float32)
        arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-8)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


@functools.lru_cache(maxsize=None)
def _photos(names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(_photo(n) for n in names)


def _crop(photo: torch.Tensor, gen: torch.Generator, min_side: int, max_side: int, size: int) -> torch.Tensor:
    """A random square crop of side in [min_side, max_side] (capped by the photo), resized to ``size``."""
    _, H, W = photo.shape
    hi = min(max_side, H, W)
    lo = min(min_side, hi)
    side = int(torch.randint(lo, hi + 1, (1,), generator=gen))
    top = int(torch.randint(0, H - side + 1, (1,), generator=gen))
    left = int(torch.randint(0, W - side + 1, (1,), generator=gen))
    patch = photo[:, top: top + side, left: left + side][None]
    out = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)


def _bank(names: tuple[str, ...], n_per_photo: int, seed: int, min_side: int, max_side: int, size: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    crops = [_crop(p, gen, min_side, max_side, size) for p in _photos(names) for _ in range(n_per_photo)]
    return torch.stack(crops) * 2 - 1


@functools.lru_cache(maxsize=4)
def _split(split: str, size: int) -> torch.Tensor:
    if split == "train":
        per = -(-TRAIN_BANK_SIZE // len(TRAIN_SOURCES))
        return _bank(TRAIN_SOURCES, per, seed=0, min_side=40, max_side=200, size=size)[:TRAIN_BANK_SIZE]
    return _bank(VAL_SOURCES, VAL_CROPS_PER_PHOTO, seed=1234, min_side=64, max_side=200, size=size)


def load_split(split: str = "val", n: int | None = None, ids=None, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Images of a split, (N, 3, size, size) in [-1, 1]; ``ids`` picks samples, ``n`` the first n.

    Deterministic: the same call returns the same tensor on every machine.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")
    data = _split(split, int(size))
    if ids is not None:
        ids = [int(i) for i in ids]
        bad = [i for i in ids if not 0 <= i < len(data)]
        if bad:
            raise ValueError(f"sample ids {bad} out of range for split {split!r} of {len(data)} images")
        return data[ids].clone()
    if n is not None:
        if n < 1 or n > len(data):
            raise ValueError(f"n must be in [1, {len(data)}] for split {split!r}, got {n}")
        return data[:n].clone()
    return data.clone()


def split_size(split: str) -> int:
    """Number of images in a split, without building other splits."""
    return {"train": TRAIN_BANK_SIZE, "val": len(VAL_SOURCES) * VAL_CROPS_PER_PHOTO}[split] if split in SPLITS else _raise(split)


def _raise(split):
    raise ValueError(f"unknown split {split!r}; allowed: {list(SPLITS)}")


def describe() -> dict:
    """The data card: sources and sizes (written into the model card)."""
    return {
        "image_size": IMAGE_SIZE,
        "train_sources": list(TRAIN_SOURCES),
        "train_images": TRAIN_BANK_SIZE,
        "val_sources": list(VAL_SOURCES),
        "val_images": len(VAL_SOURCES) * VAL_CROPS_PER_PHOTO,
        "augmentation": "random horizontal flips at training time",
    }
