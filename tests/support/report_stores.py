"""Small stores with known values for the report and figure tests (shared, not a test module).

``build_store``: an old-style store (no cluster, no config_json: every image its own cluster, every
row per-config noise). ``build_rich_store``: clusters, shared noise, influence, a classical
baseline, a tune and a report split, with intervals worked out by hand (see tests/test_report.py).
"""
from __future__ import annotations

import datetime as dt
import json

import numpy as np

from orchestrator import store

OFFSETS = {"psnr": (-1.0, 0.0, 1.0), "ssim": (-0.01, 0.0, 0.01), "lpips": (0.01, 0.0, -0.01), "rel_l2": (-0.001, 0.0, 0.001)}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

#: config_id -> (solver, regularizer, lam, task, sigma_y, means {metric: value}, fid, bad {sample: status})
CONFIGS = {
    "box-dps-none": ("dps", "none", None, "box_inpainting", 0.05, {"psnr": 20.0, "ssim": 0.70, "lpips": 0.30}, 50.0, {}),
    "box-dps-equi-a": ("dps", "equi", 0.1, "box_inpainting", 0.05, {"psnr": 21.0, "ssim": 0.72, "lpips": 0.28}, 45.0, {}),
    "box-dps-equi-b": ("dps", "equi", 1.0, "box_inpainting", 0.05, {"psnr": 22.0, "ssim": 0.71, "lpips": 0.29}, 47.0, {}),
    "box-dps-equicon": ("dps", "equicon", 0.1, "box_inpainting", 0.05, {"psnr": 19.5, "ssim": 0.69, "lpips": 0.31}, None, {3: "diverged"}),
    "box-psld-none": ("psld", "none", None, "box_inpainting", 0.05, {"psnr": 18.0, "ssim": 0.60, "lpips": None}, 60.0, {}),
    "box-psld-equi": ("psld", "equi", 0.1, "box_inpainting", 0.05, {"psnr": 18.5, "ssim": 0.65, "lpips": None}, 55.0, {3: "failed"}),
    "blur-dps-none": ("dps", "none", None, "gaussian_blur", 0.05, {"psnr": 24.0, "ssim": 0.80, "lpips": 0.20}, 30.0, {}),
    "blur-dps-equi-a": ("dps", "equi", 0.1, "gaussian_blur", 0.05, {"psnr": 24.5, "ssim": 0.82, "lpips": 0.19}, 28.0, {}),
    "blur-dps-equi-b": ("dps", "equi", 1.0, "gaussian_blur", 0.05, {"psnr": 23.0, "ssim": 0.78, "lpips": 0.25}, 35.0, {}),
    "noisy-dps-none": ("dps", "none", None, "box_inpainting", 0.1, {"psnr": 17.0, "ssim": 0.60, "lpips": 0.40}, None, {}),
    "noisy-dps-equi": ("dps", "equi", 1.0, "box_inpainting", 0.1, {"psnr": 18.0, "ssim": 0.62, "lpips": 0.38}, None, {}),
    "pde-h-fwd-none": ("fundps", "none", None, "pde_helmholtz_forward", 0.0, {"rel_l2": 0.0213}, None, {}),
    "pde-h-fwd-equi": ("fundps", "equi", 100.0, "pde_helmholtz_forward", 0.0, {"rel_l2": 0.0212}, None, {}),
    "pde-h-inv-none": ("fundps", "none", None, "pde_helmholtz_inverse", 0.0, {"rel_l2": 0.1716}, None, {}),
    "pde-h-inv-equi": ("fundps", "equi", 100.0, "pde_helmholtz_inverse", 0.0, {"rel_l2": 0.1591}, None, {}),
    "pde-ns-fwd-none": ("fundps", "none", None, "pde_navier_stokes_forward", 0.0, {"rel_l2": 0.0332}, None, {}),
    "pde-ns-fwd-equi": ("fundps", "equi", 100.0, "pde_navier_stokes_forward", 0.0, {"rel_l2": 0.0306}, None, {}),
}
NAIVE = {"box_inpainting": (15.0, 16.0, 17.0), "gaussian_blur": (25.0, 25.0, 25.0)}


def unit_rows(config_id: str, run_id: str = "r1") -> list[dict]:
    solver, reg, lam, task, sigma_y, means, _, bad = CONFIGS[config_id]
    pde = task.startswith("pde_")
    rows = []
    for sample in range(3 + (1 if bad else 0)):
        row = {
            "run_id": run_id, "run_kind": "sweep", "config_id": config_id, "unit_id": config_id,
            "prior": "toy-latent" if solver == "psld" else "toy-pixel", "dataset": "pde" if pde else "toy",
            "solver": solver, "regularizer": reg, "lam": lam, "task": task, "sigma_y": sigma_y,
            "num_steps": 500 if pde else 10, "seed": 0, "sample_id": sample, "wall_s": 0.5,
            "started_at": T0 + dt.timedelta(seconds=sample), "status": bad.get(sample, "ok"),
        }
        if sample < 3:
            for metric, mean in means.items():
                row[metric] = None if mean is None else mean + OFFSETS[metric][sample]
            if task in NAIVE:
                row["naive_psnr"] = NAIVE[task][sample]
        else:
            row["error"] = "boom"
        rows.append(row)
    return rows


def build_store(root, with_images: bool = True, configs=None):
    """Write the CONFIGS store (or only ``configs``) under ``root``: one unit per config, set rows
    where FID is known, and 3x8x8 images for the box-inpainting configs; returns ``root``."""
    rng = np.random.default_rng(0)
    truth = {s: rng.uniform(-1, 1, (3, 8, 8)) for s in range(3)}
    for config_id in configs or CONFIGS:
        spec = CONFIGS[config_id]
        store.write_unit(root, "r1", config_id, unit_rows(config_id))
        if spec[6] is not None:
            store.write_sets(root, "r1", config_id, [{"config_id": config_id, "solver": spec[0], "regularizer": spec[1], "task": spec[3], "n_images": 3, "fid": spec[6], "status": "ok"}])
        if with_images and spec[3] == "box_inpainting":
            keys = [f"{config_id}:{s}" for s in range(3)]
            store.save_images(root, "r1", config_id, {
                "x_hat": {k: np.clip(truth[s] + rng.normal(0, 0.1, (3, 8, 8)), -1, 1) for k, s in zip(keys, range(3))},
                "naive": {k: truth[s] * 0.5 for k, s in zip(keys, range(3))},
                "x_true": {s: truth[s] for s in range(3)},
            })
    return root



BASE = (20.0, 22.0, 24.0, 26.0)
CLUSTERS = ("chelsea", "chelsea", "coffee", "coffee")
#: name -> (solver, regularizer, lam, {split: per-image shift over BASE, None: 21 dB flat}, influence_grad)
RICH = {
    "dps-none": ("dps", "none", 0.0, {"tune": (0, 0, 0, 0), "report": (0, 0, 0, 0)}, None),
    "dps-equi-a": ("dps", "equi", 0.1, {"tune": (1.0, 1.0, 1.0, 1.0), "report": (0.1, 0.1, 0.1, 0.1)}, 5e-4),
    "dps-equi-b": ("dps", "equi", 1.0, {"tune": (0.2, 0.2, 0.2, 0.2), "report": (0.4, 0.6, 1.4, 1.6)}, 0.2),
    "wiener": ("wiener", "none", 0.0, {"tune": None, "report": None}, None),
}


def _rich_rows(name: str, split: str) -> list[dict]:
    solver, reg, lam, shifts, infl = RICH[name]
    cfg = f"{name}-{split}"
    doc = json.dumps({"config_id": cfg, "operator": "box_inpainting", "solver_noise": "shared"})
    return [{"run_id": "r", "config_id": cfg, "unit_id": cfg, "dataset": f"embedded/{split}", "prior": "pixel:embedded",
             "solver": solver, "regularizer": reg, "lam": lam, "task": "box_inpainting", "sigma_y": 0.05, "step_size": 1.0,
             "num_steps": 0 if solver == "wiener" else 20, "seed": 0, "sample_id": i + (0 if split == "report" else 10),
             "cluster": CLUSTERS[i], "psnr": 21.0 if shifts[split] is None else BASE[i] + shifts[split][i], "ssim": 0.5,
             "wall_s": 0.1, "naive_psnr": 15.0, "influence_grad": infl, "status": "ok", "started_at": T0, "config_json": doc}
            for i in range(4)]


def build_rich_store(root):
    """Report split: DPS 20, 22, 24, 26 dB; Equi-DPS lam 1 adds 0.4, 0.6 (chelsea) and 1.4, 1.6
    (coffee), lam 0.1 adds 0.1 (inert: influence 5e-4); Wiener 21 dB. On the tune split lam 0.1
    wins (+1.0 against +0.2), on the report split lam 1."""
    for name in RICH:
        for split in ("tune", "report"):
            store.write_unit(root, "r", f"{name}-{split}", _rich_rows(name, split))
    return root


