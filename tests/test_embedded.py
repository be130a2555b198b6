"""The embedded world: its data splits and roles, and the training pipeline that makes its models."""
from __future__ import annotations

import json

import pytest
import torch

from solvers.embedded import data, dead_leaves, photos, train


def test_splits_have_the_promised_sizes_and_range():
    """Issue 12: a report split of >= 128 iid images and >= 64 ood crops of >= 4 photos."""
    assert data.split_size("report") >= 128
    assert data.split_size("report_ood") >= 64 and len(data.REPORT_OOD_PHOTOS) >= 4
    assert data.split_size("train") >= 8192
    for split in ("tune", "tune_ood", "report", "report_ood"):
        x = data.load_split(split)
        assert x.shape == (data.split_size(split), 3, 32, 32)
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert data.load_split("train", n=16).shape == (16, 3, 32, 32)


def test_no_photo_and_no_seed_crosses_roles():
    """Roles train / tune / report are disjoint in photos (palettes included) and in seeds."""
    photos_of = {"train": set(data.PALETTE_PHOTOS), "tune": set(data.TUNE_OOD_PHOTOS),
                 "report": set(data.REPORT_OOD_PHOTOS)}
    roles = list(photos_of)
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            assert not photos_of[a] & photos_of[b], (a, b)
    used = set().union(*photos_of.values())
    assert not used & set(data.EXCLUDED_PHOTOS)  # the motorcycle's second view repeats the first
    seeds = {}
    for split in ("train", "tune", "report"):
        n = data.split_size(split)
        seeds[split] = {data.provenance(split, i)["seed"] for i in (0, n - 1)}
        lo, hi = data.seed_of(split, 0), data.seed_of(split, n - 1)
        for other in seeds:
            if other != split:
                olo, ohi = data.seed_of(other, 0), data.seed_of(other, data.split_size(other) - 1)
                assert hi < olo or ohi < lo, (split, other)


def test_no_tune_crop_overlaps_a_report_crop_and_crops_of_a_photo_are_disjoint():
    for split in ("tune_ood", "report_ood"):
        n = data.split_size(split)
        pairs = data.overlapping(split, range(n), split, range(n))
        assert sorted(pairs) == [(i, i) for i in range(n)]  # each crop overlaps only itself
    assert data.overlapping("tune_ood", range(32), "report_ood", range(64)) == []
    assert data.overlapping("tune", range(64), "report", range(256)) == []
    assert data.overlapping("report", [3], "report", [3, 4]) == [(3, 3)]


def test_overlap_is_by_content_not_by_id():
    """Two crops of one photo that overlap in pixels are caught although their ids differ."""
    a = data.crop_boxes("report_ood")[0]
    assert data._boxes_overlap(a[1:], (a[1] + a[3] - 1, a[2] + a[3] - 1, 10))
    assert not data._boxes_overlap(a[1:], (a[1] + a[3], a[2], 10))


def test_clusters_name_the_source():
    assert data.cluster("report_ood", 0) == f"photo:{data.REPORT_OOD_PHOTOS[0]}"
    assert len({data.cluster("report_ood", i) for i in range(64)}) == len(data.REPORT_OOD_PHOTOS)
    assert len({data.cluster("report", i) for i in range(256)}) == 256  # independent draws


def test_splits_are_deterministic_and_ids_select():
    a = data.load_split("report", ids=[3, 5])
    b = data.load_split("report")[[3, 5]]
    assert torch.equal(a, b)
    assert torch.equal(data.load_split("train", ids=[7]), data.load_split("train", n=8)[7:8])
    with pytest.raises(ValueError, match="split"):
        data.load_split("val")
    with pytest.raises(ValueError, match="out of range"):
        data.load_split("report", ids=[10_000])


def test_dead_leaves_law_is_d4_invariant_in_its_statistics():
    """The law is D4-invariant by construction; a finite check: the mean horizontal and vertical
    gradient energies agree (a rotation swaps them), within 10% over the 64 tune images."""
    x = data.load_split("tune")
    gh = (x[..., 1:] - x[..., :-1]).pow(2).mean()
    gv = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    assert abs(float(gh / gv) - 1) < 0.1
    p = dead_leaves.leaf_params(0, data.palette(), 32)
    assert p["r1"].min() >= dead_leaves.R_MIN and p["r1"].max() <= dead_leaves.R_MAX


def test_bank_cache_equals_a_fresh_render(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUIBENCH_CACHE", str(tmp_path))
    fresh = data.load_split("train", n=4)
    cached = photos.cached("t", lambda: fresh)
    again = photos.cached("t", lambda: pytest.fail("rebuilt"))
    assert torch.equal(cached, fresh) and torch.allclose(again, fresh, atol=1e-6)


def test_training_pipeline_writes_loadable_models(tmp_path):
    """Two steps per stage into a temporary directory, then load through the real loader."""
    torch.set_num_threads(1)
    train.train_autoencoder(tmp_path, steps=2, batch=4, n_images=8)
    train.train_latent(tmp_path, steps=2, batch=4, n_images=8)
    train.train_pixel(tmp_path, steps=2, batch=4, n_images=8)
    assert (tmp_path / "latent" / "latent_scale.json").exists()
    log = json.loads((tmp_path / "pixel" / "train_log.json").read_text())
    assert log["steps"] == 2 and len(log["history"]) == 1 and log["host"]["device"] == "cpu"
    from solvers.loaders import load_prior

    for kind in ("pixel", "latent"):
        prior = load_prior({"kind": "embedded", "name": kind, "root": str(tmp_path)})
        x = torch.randn(2, *prior.shape)
        assert prior.eps(x, torch.tensor([10, 500])).shape == x.shape
