"""Tune and report splits are disjoint by content, checked by the spec before any compute.

Reference: issue 12's rule: every search and selection runs on the tune role, tables on the report
role; a tune subset that shares an image (same seed, or an overlapping crop of a photo) with the
report images is refused with a message naming both sets of ids.
"""
from __future__ import annotations

import copy

import pytest

from orchestrator import tune

BASE = {
    "name": "t", "prior": "embedded", "dataset": {"name": "embedded", "split": "report", "count": 8},
    "tasks": [{"operator": "box_inpainting", "sigma_y": [0.05]}],
    "solvers": [{"name": "dps", "num_steps": [2], "step_sizes": [1.0]}],
    "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1]}],
    "tune": {"objective": {"metric": "psnr", "mode": "max"}, "images": {"count": 4},
             "space": {"lam": {"loguniform": [0.001, 1.0]}}, "searcher": "random", "num_samples": 2},
}


def _spec(**images):
    d = copy.deepcopy(BASE)
    d["tune"]["images"] = images
    return d


def test_default_tune_split_is_the_report_splits_partner():
    ts = tune.load(_spec(count=4))
    assert ts.split == "tune"
    d = _spec(count=4)
    d["dataset"]["split"] = "report_ood"
    assert tune.load(d).split == "tune_ood"


def test_tuning_on_report_images_is_refused_by_content():
    with pytest.raises(ValueError, match=r"share content with report images \[2, 3\]"):
        tune.load(_spec(split="report", ids=[2, 3, 20]))
    tune.load(_spec(split="report", ids=[20, 21]))  # other seeds of the same split: disjoint content


def test_ood_tune_crops_never_overlap_report_crops():
    d = _spec(split="tune_ood", count=8)
    d["dataset"]["split"] = "report_ood"
    assert tune.load(d).split == "tune_ood"
