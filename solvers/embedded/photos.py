"""Bundled photos (scikit-image, scikit-learn) and disjoint crops of them; a disk cache for banks.

Photos load offline from the installed wheels. Crops of one photo are placed so that no two
overlap (rejection sampling from a seeded generator), which keeps crops of one photo from
repeating content; a crop is resized to the embedded image size with antialiasing.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

CROP_SIDES = (48, 112)  # crop side range in source pixels


@functools.lru_cache(maxsize=None)
def photo(name: str) -> torch.Tensor:
    """A bundled photo as (3, H, W) in [0, 1]; ``sklearn:<file>`` names scikit-learn's samples and
    ``<name>:<k>`` picks view k of a tuple (``stereo_motorcycle:0``); grey photos are replicated."""
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(name.split(":", 1)[1])
    else:
        import skimage.data

        base, _, index = name.partition(":")
        arr = getattr(skimage.data, base)()
        if index:
            arr = arr[int(index)]
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    arr = arr[..., :3]
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    else:
        arr = arr.astype(np.float32)
        arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-8)
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)


def resized(name: str, side: int) -> torch.Tensor:
    """The whole photo area-resized to (3, side, side)."""
    return F.interpolate(photo(name)[None], size=(side, side), mode="area")[0]


def crop(name: str, box: tuple, size: int) -> torch.Tensor:
    """The square ``box = (top, left, side)`` of a photo resized to (3, size, size), 8-bit levels."""
    top, left, side = (int(v) for v in box)
    patch = photo(name)[:, top: top + side, left: left + side][None]
    out = F.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    return quantize(out)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round [0, 1] images to 8-bit levels (so a cached uint8 bank equals a fresh render)."""
    return (x.clamp(0, 1) * 255).round() / 255


def disjoint_boxes(h: int, w: int, n: int, gen: torch.Generator, sides=CROP_SIDES, tries: int = 10_000) -> list:
    """``n`` pairwise disjoint squares ``(top, left, side)`` inside an h x w photo."""
    boxes: list[tuple[int, int, int]] = []
    lo, hi = sides
    for _ in range(tries):
        if len(boxes) == n:
            return boxes
        side = int(torch.randint(lo, min(hi, h, w) + 1, (1,), generator=gen))
        top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
        if all(top >= t + s or t >= top + side or left >= l + s or l >= left + side for t, l, s in boxes):
            boxes.append((top, left, side))
    raise ValueError(f"could not place {n} disjoint crops of side {sides} in a {h}x{w} photo")


def cache_dir() -> Path:
    """``$EQUIBENCH_CACHE`` or ``~/.cache/equibench``."""
    return Path(os.environ.get("EQUIBENCH_CACHE") or Path.home() / ".cache" / "equibench")


def cached(key: str, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """A [-1, 1] image bank stored as uint8 under ``cache_dir()/key.pt`` (built once, atomically)."""
    path = cache_dir() / f"{key}.pt"
    if path.exists():
        return torch.load(path).float() / 127.5 - 1
    x = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(((x + 1) * 127.5).round().to(torch.uint8), tmp)
    os.replace(tmp, path)
    return x
