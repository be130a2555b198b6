"""Set metrics' inputs and rows: a config's stored images, and the row ``store.write_sets`` keeps.

A set metric (FID, KID, ...: ``orchestrator.metrics``, kind "set") needs every image of a config, so
the driver computes it once the config's last row is stored, from the store's image files.
"""
from __future__ import annotations

import datetime as _dt

import numpy as np

from orchestrator import grid as _grid
from orchestrator import store
from orchestrator.metrics import registry as _metric_registry
from orchestrator.spec import SweepSpec


def config_images(store_dir, run_id: str, config_id: str):
    """Stacked (x_hat, x_true) of a config's ok rows, from the store's image files."""
    df = store.load(store_dir, run=run_id, filters={"config_id": config_id, "status": "ok"},
                    columns=["unit_id", "sample_id"])
    if df.empty:
        return None, None
    imgs = store.load_images(store_dir, run_id, sorted(set(df["unit_id"])))
    keys = [(f"{config_id}:{s}", str(s)) for s in sorted(set(df["sample_id"].tolist()))]
    keys = [(k, s) for k, s in keys if k in imgs["x_hat"] and s in imgs["x_true"]]
    if not keys:
        return None, None
    return np.stack([imgs["x_hat"][k] for k, _ in keys]), np.stack([imgs["x_true"][s] for _, s in keys])


def set_row(spec: SweepSpec, cfg: _grid.Config, n: int, got: dict, context: dict, complete: bool) -> dict:
    cols = cfg.store_columns()
    status = "ok" if complete and not got.get("error") else ("failed" if got.get("error") else "partial")
    return {
        "run_id": spec.name, "run_kind": context.get("run_kind", "sweep"), "trial_id": context.get("trial_id"),
        "config_id": cfg.config_id, "solver": cols["solver"], "regularizer": cols["regularizer"], "lam": cols["lam"],
        "step_size": cols["step_size"], "task": cols["task"], "sigma_y": cols["sigma_y"], "num_steps": cols["num_steps"],
        "n_images": n, **{c: got.get(c) for c in _metric_registry.columns("set")},  # fid, kid_mean, kid_std, ...
        "status": status, "error": got.get("error"), "computed_at": _dt.datetime.now(_dt.timezone.utc),
        "code_version": context.get("code_version"), "config_json": cols["config_json"],
    }
