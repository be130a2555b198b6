"""Bytes per stored row of reconstructions, per ``image_format``, at 32 and 256 px.

One unit of 32 rows is stored with ``store.save_images`` exactly as the driver stores a unit (one
npz per unit; per row the reconstruction ``x_hat`` and naive inverse ``naive`` keyed by
``config:sample``, the ground truth ``x_true`` by sample), and the file's size divided by 32 is the
bytes per row. The unit holds one config's 32 samples (plan order puts a config's samples
together, so a unit of a sweep with >= 32 images per config looks like this): every row brings its
own ground truth. ``x_hat only`` stores the reconstructions alone.

Images are colour photo crops (scikit-image's astronaut, coffee, chelsea, rocket; random 256 px
crops, and the same crops area-averaged to 32 px), in [-1, 1]; ``x_hat`` is the photo slightly
blurred (Gaussian sigma 0.7 px) plus N(0, 0.03) noise, like a reconstruction with residual error,
and ``naive`` the photo blurred with sigma 1.5 px (a deblurring task's naive inverse). Noise and
texture decide how well PNG compresses, so these are the bytes of a plausible reconstruction, not
of a clean photo. Encoding time is the median of 5 saves.

    .venv/bin/python -m benchmarks.image_bytes   # -> benchmarks/results/image_bytes.json
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common as C
from orchestrator import store
from orchestrator.store_images import IMAGE_FORMATS

ROWS = 32
SIZES = (32, 256)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
RESULTS_PATH = C.RESULTS_DIR / "image_bytes.json"


def photo_crops(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    """``n`` random ``size`` px crops of scikit-image's colour photos, (n, 3, size, size) in [-1, 1]."""
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)()[..., :3].astype(np.float32) / 127.5 - 1 for name in PHOTOS]
    out = []
    for i in range(n):
        p = photos[i % len(photos)]
        y, x = rng.integers(0, p.shape[0] - size + 1), rng.integers(0, p.shape[1] - size + 1)
        out.append(p[y:y + size, x:x + size].transpose(2, 0, 1))
    return np.stack(out)


def downsample(x: np.ndarray, size: int) -> np.ndarray:
    f = x.shape[-1] // size
    return x.reshape(*x.shape[:2], size, f, size, f).mean(axis=(3, 5))


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="reflect")


def unit_images(truth: np.ndarray, rng: np.random.Generator, x_hat_only: bool = False) -> dict:
    x_hat = np.clip(blur(truth, 0.7) + rng.normal(0, 0.03, truth.shape), -1, 1)
    keys = [f"cfg0123456789abcd:{s}" for s in range(len(truth))]
    images = {"x_hat": dict(zip(keys, x_hat.astype(np.float16)))}
    if not x_hat_only:
        images["naive"] = dict(zip(keys, blur(truth, 1.5).astype(np.float16)))
        images["x_true"] = {s: t.astype(np.float16) for s, t in enumerate(truth)}
    return images


def measure(root: Path, truth: np.ndarray, fmt: str, x_hat_only: bool) -> dict:
    images = unit_images(truth, np.random.default_rng(1), x_hat_only)
    times = []
    for rep in range(5):
        t0 = time.perf_counter()
        path = store.save_images(root, "bench", f"u{rep}", images, image_format=fmt)
        times.append(time.perf_counter() - t0)
    back = store.load_images(root, "bench", "u0")["x_hat"]
    err = max(float(np.abs(back[k].astype(np.float32) - np.asarray(v, np.float32)).max()) for k, v in images["x_hat"].items())
    return {"bytes_per_row": round(path.stat().st_size / len(truth), 1), "file_bytes": path.stat().st_size,
            "save_ms_median": round(1e3 * statistics.median(times), 2), "max_abs_error_x_hat": round(err, 5)}


def run() -> dict:
    t0, load = time.perf_counter(), [round(x, 2) for x in os.getloadavg()]
    big = photo_crops(ROWS, 256)
    truths = {256: big, 32: downsample(big, 32)}
    tmp = Path(tempfile.mkdtemp(prefix="image-bytes-"))
    table: dict = {}
    try:
        for size in SIZES:
            raw = 3 * size * size
            table[f"{size}px"] = {
                "raw_bytes_per_image": {"float32": 4 * raw, "float16": 2 * raw, "uint8": raw},
                **{f"{fmt} (x_hat, naive, x_true)": measure(tmp / f"{size}-{fmt}", truths[size], fmt, False)
                   for fmt in IMAGE_FORMATS},
                **{f"{fmt} (x_hat only)": measure(tmp / f"{size}-{fmt}-xhat", truths[size], fmt, True)
                   for fmt in IMAGE_FORMATS},
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = {size: {fmt: table[size][f"{fmt} (x_hat, naive, x_true)"]["bytes_per_row"] for fmt in IMAGE_FORMATS}
               for size in table}
    return {"name": "image_bytes", "rows_per_unit": ROWS, "bytes_per_row": summary, "details": table,
            "notes": ["bytes per row = the unit's npz size / 32 rows; a row stores x_hat, naive and its x_true "
                      "(one config's 32 samples per unit). float16 is today's format (savez_compressed float16); "
                      "png8 is one 8-bit PNG per group and unit, exact to 1/255 of [-1, 1]'s width "
                      "(max_abs_error_x_hat, in [-1, 1] units).",
                      "save_images: first_k stores only the first k sample ids of every config (bytes per run "
                      "scale by k / images per config); none stores nothing.",
                      f"load average {load} (sizes do not depend on load; save times are upper bounds)."],
            "seconds": round(time.perf_counter() - t0, 1)}


if __name__ == "__main__":
    res = run()
    RESULTS_PATH.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res["bytes_per_row"], indent=2))
