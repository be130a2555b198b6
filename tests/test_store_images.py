"""Stored reconstructions (``orchestrator.store_images``): formats, the save_images policy, the worker."""
from __future__ import annotations

import numpy as np
import pytest

from orchestrator import grid, plan as plan_mod, spec as spec_mod, store
from orchestrator.store_images import image_context, select_images
from tests.support import FAKES as FAKE


def images(c=3, n=3, size=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, c, size, size)).astype(np.float32)
    return {"x_hat": {f"cfg:{s}": x[s] for s in range(n)}, "naive": {f"cfg:{s}": -x[s] for s in range(n)},
            "x_true": {s: x[s] * 0.5 for s in range(n)}}


@pytest.mark.parametrize("fmt,tol", [("float16", 1e-3), ("png8", 0.5 / 127.5 + 1e-3)])
@pytest.mark.parametrize("channels", [1, 3])
def test_round_trip(tmp_path, fmt, tol, channels):
    arrays = images(c=channels)
    path = store.save_images(tmp_path, "r1", "u1", arrays, image_format=fmt)
    with np.load(path) as z:
        assert ("x_hat__png" in z.files) == (fmt == "png8")
    back = store.load_images(tmp_path, "r1")
    for group, items in arrays.items():
        assert sorted(back[group]) == sorted(str(k) for k in items)
        for key, arr in items.items():
            got = back[group][str(key)]
            assert got.dtype == np.float16 and got.shape == arr.shape
            assert np.abs(got.astype(np.float32) - arr).max() <= tol


def test_png8_is_smaller_and_clips_non_finite(tmp_path):
    arrays = images(size=32)
    arrays["x_hat"]["cfg:0"][0, 0, 0] = np.nan
    small = store.save_images(tmp_path, "r1", "png", arrays, image_format="png8").stat().st_size
    big = store.save_images(tmp_path, "r1", "f16", images(size=32), image_format="float16").stat().st_size
    assert small < big
    assert store.load_images(tmp_path, "r1", "png")["x_hat"]["cfg:0"][0, 0, 0] == -1.0


def test_other_channel_counts_stay_float16(tmp_path):
    arrays = {"x_hat": {"cfg:0": np.full((2, 4, 4), 3.5, np.float32)}}  # a PDE field: 2 channels, outside [-1, 1]
    path = store.save_images(tmp_path, "r1", "u1", arrays, image_format="png8")
    with np.load(path) as z:
        assert "x_hat" in z.files and "x_hat__png" not in z.files
    assert store.load_images(tmp_path, "r1")["x_hat"]["cfg:0"].max() == 3.5
    with pytest.raises(ValueError, match="image_format"):
        store.save_images(tmp_path, "r1", "u2", arrays, image_format="jpeg")


def fake_spec(**kw):
    return spec_mod.parse({
        "name": "img", "prior": "fake", "plugins": [FAKE], "dataset": {"count": 5},
        "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
        "solvers": [{"name": "fake", "num_steps": [2]}],
        "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1]}],
        "batch_size": 10, "metrics": ["psnr"], "resources": {"num_cpus": 0.5}, **kw})


def test_spec_values_and_old_booleans():
    assert fake_spec().save_images == "all" and fake_spec().image_format == "float16"
    assert fake_spec(save_images=True).save_images == "all"
    assert fake_spec(save_images=False).save_images == "none"
    with pytest.raises(spec_mod.SpecError, match="save_images"):
        fake_spec(save_images="some")
    with pytest.raises(spec_mod.SpecError, match="image_format"):
        fake_spec(image_format="jpeg")
    spec = fake_spec(save_images="first_k", save_images_k=2, image_format="png8")
    assert image_context(spec, [4, 3, 2, 1, 0]) == {"save_images": "first_k", "image_samples": [0, 1],
                                                    "image_format": "png8"}
    forced = fake_spec(save_images="none", metrics=["psnr", "fid"])  # set metrics are computed from stored images
    assert image_context(forced, range(5))["save_images"] == "all"


def test_select_images_first_k_and_none():
    arrays = images(n=4)
    kept = select_images(arrays, {"save_images": "first_k", "image_samples": [0, 2]})
    assert sorted(kept["x_hat"]) == ["cfg:0", "cfg:2"] and sorted(kept["x_true"]) == [0, 2]
    assert select_images(arrays, {"save_images": "none"}) == {}
    assert select_images(arrays, {"save_images": "first_k", "image_samples": [9]}) == {}
    png = select_images(arrays, {"save_images": True, "image_format": "png8"})
    assert all(v.dtype == np.uint8 for v in png["x_hat"].values()) and len(png["naive"]) == 4


@pytest.mark.parametrize("policy,fmt", [("first_k", "png8"), ("all", "float16"), ("none", "float16")])
def test_worker_saves_what_the_spec_asks(tmp_path, policy, fmt, one_thread):
    from orchestrator.worker import WorkerCore

    spec = fake_spec(save_images=policy, save_images_k=2, image_format=fmt)
    configs, samples = grid.expand(spec), grid.sample_ids(spec)
    context = {"run_id": spec.name, "metrics": ["psnr"], **image_context(spec, samples)}
    core = WorkerCore(plugins=[FAKE])
    for unit in plan_mod.plan(configs, samples, spec.batch_size):
        out = core.run_unit(unit, context)
        assert {r["status"] for r in out["rows"]} == {"ok"}
        if out["images"]:
            store.save_images(tmp_path, spec.name, unit.unit_id, out["images"])
    got = store.load_images(tmp_path, spec.name)
    want = {"first_k": {0, 1}, "all": set(samples), "none": set()}[policy]
    assert {int(k) for k in got["x_true"]} == want
    assert {int(k.rsplit(":", 1)[1]) for k in got["x_hat"]} == want and len(got["x_hat"]) == 2 * len(want)
    if want:
        with np.load(next((tmp_path / "images" / "run=img").glob("*.npz"))) as z:
            assert ("x_hat__png" in z.files) == (fmt == "png8")
