"""Stored reconstructions: which rows keep their images (``save_images``) and how (``image_format``).

One npz per unit, ``STORE/images/run=<run_id>/unit-<unit_id>.npz``, written atomically. Per group
(``x_hat`` and ``naive`` keyed ``"<config_id>:<sample_id>"``, ``x_true`` keyed by sample id):

* ``float16`` (the default, and every older store): ``<group>`` is the (N, C, H, W) float16 stack,
  ``savez_compressed``;
* ``png8``: ``<group>__png`` holds the bytes of one 8-bit PNG of the N images stacked vertically
  (one PNG per group keeps the per-image header cost off small images), ``<group>__shape`` its
  (N, C, H, W). A pixel is ``round((x + 1) * 127.5)`` of ``x`` clipped to [-1, 1] (non-finite: 0),
  so a value comes back within 1/255 of [-1, 1]'s width. PNG needs 1 or 3 channels: a group with
  another channel count (a PDE field) is stored float16.

``<group>__keys`` names the images in both. ``load_images`` returns float16 (C, H, W) arrays in
[-1, 1] whichever format a file has, so figures and set metrics read both.

The spec says which rows keep images (``image_context`` turns it into the worker's context):
``save_images: all`` (every row), ``first_k`` (the rows of the sweep's first ``save_images_k``
sample ids, for every config, so the qualitative grids compare the same images), ``none``. The
booleans of older specs mean ``all`` (true) and ``none`` (false). A sweep that asks for set
metrics (FID/KID) keeps every image whatever the spec says: they are computed from stored images.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from orchestrator.store_files import atomic_write, check_id, images_dir, is_hidden

SAVE_IMAGES = ("none", "first_k", "all")
IMAGE_FORMATS = ("float16", "png8")
GROUPS = ("x_hat", "naive", "x_true")
_PNG_CHANNELS = (1, 3)


# ------------------------------------------------------------------------------ which images
def policy(value) -> str:
    """A ``save_images`` value (a name, or an older spec's / context's boolean) as a name."""
    if value is True or value is None:
        return "all"
    if value is False:
        return "none"
    if value not in SAVE_IMAGES:
        raise ValueError(f"save_images {value!r}: allowed: {', '.join(SAVE_IMAGES)} (or true / false)")
    return str(value)


def image_context(spec, samples: Iterable[int]) -> dict:
    """The worker context keys for images: ``save_images`` (a policy name), ``image_samples``
    (the sample ids ``first_k`` keeps) and ``image_format``. Set metrics force ``all``, and so do
    posterior sets (``orchestrator.posterior_sets``: a dataset with an exact posterior)."""
    from orchestrator.posterior_sets import wanted as posterior_wanted
    from orchestrator.spec_models import SET_METRICS

    mode = policy(getattr(spec, "save_images", True))
    if any(m in SET_METRICS for m in spec.metrics) or posterior_wanted(spec):
        mode = "all"
    k = int(getattr(spec, "save_images_k", 8))
    keep = sorted(int(s) for s in samples)[:k] if mode == "first_k" else None
    return {"save_images": mode, "image_samples": keep, "image_format": getattr(spec, "image_format", "float16")}


def _sample_of(group: str, key) -> int:
    return int(str(key).rsplit(":", 1)[-1]) if group != "x_true" else int(key)


def select_images(images: Mapping[str, Mapping[Any, Any]], context: Mapping) -> dict:
    """The worker's ``{group: {key: (C,H,W)}}`` images cut to the context's policy and encoded as
    its format wants (``png8``: uint8 arrays, which ``save_images`` writes as PNG)."""
    mode = policy(context.get("save_images", True))
    if mode == "none":
        return {}
    keep = set(context.get("image_samples") or ()) if mode == "first_k" else None
    out: dict[str, dict] = {}
    for group, items in images.items():
        kept = {k: v for k, v in items.items() if keep is None or _sample_of(group, k) in keep}
        if context.get("image_format", "float16") == "png8":
            kept = {k: to_uint8(v) if np.asarray(v).shape[0] in _PNG_CHANNELS else v for k, v in kept.items()}
        out[group] = kept
    return out if any(out.values()) else {}


# ---------------------------------------------------------------------------------- encoding
def _as_numpy(a) -> np.ndarray:
    if hasattr(a, "detach"):  # torch tensor, without importing torch here
        a = a.detach().float().cpu().numpy()
    return np.asarray(a)


def to_uint8(a) -> np.ndarray:
    """An image in [-1, 1] as uint8 (clipped, non-finite pixels 0)."""
    x = np.nan_to_num(_as_numpy(a).astype(np.float32), nan=-1.0, posinf=1.0, neginf=-1.0)
    return np.rint((np.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)


def from_uint8(a: np.ndarray) -> np.ndarray:
    return (a.astype(np.float32) / 127.5 - 1.0).astype(np.float16)


def _png(stack: np.ndarray) -> bytes:
    """(N, C, H, W) uint8 as one PNG of the N images stacked vertically."""
    from PIL import Image

    n, c, h, w = stack.shape
    mosaic = stack.transpose(0, 2, 3, 1).reshape(n * h, w, c)
    buf = io.BytesIO()
    Image.fromarray(mosaic[..., 0] if c == 1 else mosaic).save(buf, format="PNG")
    return buf.getvalue()


def _unpng(data: np.ndarray, shape) -> np.ndarray:
    from PIL import Image

    n, c, h, w = (int(v) for v in shape)
    mosaic = np.asarray(Image.open(io.BytesIO(data.tobytes())))
    return mosaic.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _encode(group: str, items: dict, image_format: str | None) -> dict[str, np.ndarray]:
    arrays = [_as_numpy(v) for v in items.values()]
    keys = {f"{group}__keys": np.array([str(k) for k in items], dtype=np.str_)}
    fmt = image_format or ("png8" if all(a.dtype == np.uint8 for a in arrays) else "float16")
    same = len({a.shape for a in arrays}) == 1
    if fmt == "png8" and same and arrays[0].ndim == 3 and arrays[0].shape[0] in _PNG_CHANNELS:
        stack = np.stack([a if a.dtype == np.uint8 else to_uint8(a) for a in arrays])
        return {**keys, f"{group}__png": np.frombuffer(_png(stack), dtype=np.uint8),
                f"{group}__shape": np.array(stack.shape, dtype=np.int64)}
    return {**keys, group: np.stack([from_uint8(a) if a.dtype == np.uint8 else a.astype(np.float16) for a in arrays])}


def save_images(store_dir, run_id: str, unit_id: str, arrays: Mapping[str, Mapping[Any, Any]],
                image_format: str | None = None) -> Path:
    """Store a unit's images as one npz, atomically (format: the module docstring).

    ``arrays = {"x_hat": {"<config_id>:<sample_id>": (C,H,W)}, "naive": {same keys: (C,H,W)},
    "x_true": {sample_id: (C,H,W)}}`` (any of the three may be missing). ``image_format``
    ``float16`` or ``png8``; by default uint8 groups (``select_images``' png8) are PNG, float
    groups float16.
    """
    unknown = set(arrays) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown image groups {sorted(unknown)}; allowed: {sorted(GROUPS)}")
    if image_format is not None and image_format not in IMAGE_FORMATS:
        raise ValueError(f"image_format {image_format!r}: allowed: {', '.join(IMAGE_FORMATS)}")
    payload: dict[str, np.ndarray] = {}
    for group in GROUPS:
        items = dict(arrays.get(group) or {})
        if items:
            payload.update(_encode(group, items, image_format))
    path = images_dir(store_dir, run_id) / f"unit-{check_id('unit_id', unit_id)}.npz"

    def write(fh):
        buf = io.BytesIO()
        np.savez_compressed(buf, **payload)
        fh.write(buf.getvalue())

    return atomic_write(path, write)


# ----------------------------------------------------------------------------------- reading
def load_images(store_dir, run_id: str, unit_ids: Iterable[str] | str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{"x_hat": {key: arr}, "naive": {key: arr}, "x_true": {sample_id_str: arr}}`` (float16
    (C, H, W) in [-1, 1], from either format) merged over the run's units (or only ``unit_ids``);
    unreadable files are skipped with a warning.
    """
    from orchestrator.store_read import _warn_once

    folder = images_dir(store_dir, run_id)
    out: dict[str, dict[str, np.ndarray]] = {g: {} for g in GROUPS}
    if isinstance(unit_ids, str):
        unit_ids = [unit_ids]
    if unit_ids is not None:
        files = [folder / f"unit-{check_id('unit_id', u)}.npz" for u in unit_ids]
    else:
        files = sorted(f for f in folder.glob("unit-*.npz") if not is_hidden(f.name)) if folder.is_dir() else []
    for f in files:
        if not f.exists():
            continue
        try:
            with np.load(f, allow_pickle=False) as z:
                for group in GROUPS:
                    if f"{group}__png" in z.files:
                        stack = from_uint8(_unpng(z[f"{group}__png"], z[f"{group}__shape"]))
                    elif group in z.files:
                        stack = z[group]
                    else:
                        continue
                    for key, arr in zip(z[f"{group}__keys"].tolist(), stack):
                        out[group][str(key)] = arr
        except Exception as exc:  # noqa: BLE001
            _warn_once(f, f"unreadable image file ({exc})")
    return out
