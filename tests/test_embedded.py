"""The embedded world: its data splits and the training pipeline that makes its models."""
from __future__ import annotations

import json

import pytest
import torch

from solvers.embedded import data, train


def test_splits_have_the_promised_sizes_and_range():
    tr, va = data.load_split("train"), data.load_split("val")
    assert tr.shape == (data.TRAIN_BANK_SIZE, 3, 32, 32) and data.TRAIN_BANK_SIZE >= 2000
    assert va.shape[0] >= 64
    for x in (tr, va):
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1


def test_validation_photos_are_not_training_photos():
    assert not set(data.TRAIN_SOURCES) & set(data.VAL_SOURCES)
    tr, va = data.load_split("train"), data.load_split("val")
    # no validation crop equals a training crop (or its mirror image)
    d = torch.cdist(va.flatten(1), torch.cat([tr, tr.flip(-1)]).flatten(1))
    assert float(d.min()) > 1.0


def test_splits_are_deterministic_and_ids_select():
    a = data.load_split("val", ids=[3, 5])
    b = data.load_split("val")[[3, 5]]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="split"):
        data.load_split("test")
    with pytest.raises(ValueError, match="out of range"):
        data.load_split("val", ids=[10_000])


def test_training_pipeline_writes_loadable_models(tmp_path):
    """Two steps per stage into a temporary directory, then load through the real loader."""
    torch.set_num_threads(1)
    train.train_autoencoder(tmp_path, steps=2, batch=4)
    train.train_latent(tmp_path, steps=2, batch=4)
    train.train_pixel(tmp_path, steps=2, batch=4)
    assert (tmp_path / "latent" / "latent_scale.json").exists()
    log = json.loads((tmp_path / "pixel" / "train_log.json").read_text())
    assert log["steps"] == 2 and len(log["history"]) == 1
    from solvers.loaders import load_prior

    for kind in ("pixel", "latent"):
        prior = load_prior({"kind": "embedded", "name": kind, "root": str(tmp_path)})
        x = torch.randn(2, *prior.shape)
        assert prior.eps(x, torch.tensor([10, 500])).shape == x.shape
