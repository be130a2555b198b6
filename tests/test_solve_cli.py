"""``equibench solve``: every solver and regularizer name runs end to end and writes its grid + metrics.

Reference: the command's contract (README, ``orchestrator/commands/solve.py``): a PNG grid with one
row per image and columns ground truth, naive inverse, baseline, EquiReg variant; ``metrics.json``
with per-image PSNR/SSIM/LPIPS (LPIPS null without its weights file); bad input exits 2 with a
message before any model is loaded. Two steps on one image keep this a plumbing test.
"""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from orchestrator.cli import main

CASES = [("dps", "equi"), ("psld", "equicon"), ("resample", "none"), ("daps", "equicon"), ("latent_daps", "equi")]


@pytest.mark.parametrize("solver,reg", CASES)
def test_solve_writes_grid_and_metrics(tmp_path, capsys, solver, reg):
    torch.set_num_threads(1)
    out = tmp_path / "o"
    opts = ["--option", "mcmc_steps=2"] if "daps" in solver else []
    opts += ["--option", "pixel_iters=2", "--option", "latent_iters=2"] if solver == "resample" else []
    rc = main(["solve", "--solver", solver, "--regularizer", reg, "--lam", "0.01", "--task", "gaussian_blur",
               "--n", "1", "--steps", "2", "--step-size", "1e-4" if "daps" in solver else "1.0",
               "--device", "cpu", "--out", str(out), *opts])
    assert rc == 0
    rec = json.loads((out / "metrics.json").read_text())
    columns = ["ground_truth", "naive", "baseline"] + ([reg] if reg != "none" else [])
    assert rec["columns"] == columns and rec["device"] == "cpu"
    assert set(rec["metrics"]) == set(columns[1:])
    for vals in rec["metrics"].values():
        assert len(vals["psnr"]) == 1 and len(vals["ssim"]) == 1 and "lpips" in vals
    w, h = Image.open(out / "solve.png").size
    assert w > h  # one row, len(columns) tiles
    printed = capsys.readouterr().out
    assert "PSNR" in printed and "s/image" in printed


@pytest.mark.parametrize("argv,match", [
    (["--solver", "nope"], "unknown solver 'nope'"),
    (["--solver", "dps", "--lam", "-1"], "--lam -1.0: allowed: a number >= 0"),
    (["--solver", "dps", "--task", "nope"], "unknown task 'nope'"),
])
def test_solve_bad_input_exits_2_with_a_message(tmp_path, capsys, argv, match):
    base = {"--task": "gaussian_blur"}
    args = ["solve", "--out", str(tmp_path / "o"), "--device", "cpu", *argv]
    if "--task" not in argv:
        args += ["--task", base["--task"]]
    assert main(args) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_solve_cuda_requested_without_cuda_is_a_clear_error(tmp_path, capsys):
    assert main(["solve", "--solver", "dps", "--task", "gaussian_blur", "--out", str(tmp_path), "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generators_on_another_device_than_y_are_refused():
    """Reference: ``solve``'s input check: CPU generators for CUDA rows fail before any step."""
    from solvers import RowBatch, solve
    from solvers.priors import GaussianPrior, VPSchedule
    from solvers.rng import make_generators
    from operators import build_operator

    prior = GaussianPrior(torch.zeros(12), torch.eye(12), VPSchedule.linear(), shape=(3, 2, 2)).cuda()
    op = build_operator("identity", (3, 2, 2), seeds=0, device="cuda")
    batch = RowBatch(torch.zeros(1, 3, 2, 2, device="cuda"), op, make_generators([0]), {"step_size": 1.0})
    with pytest.raises(ValueError, match="make_generators"):
        solve("dps", prior, batch, 2)


def test_defaults_are_the_tuned_embedded_settings():
    """Reference: configs/tuned.yaml (step sizes and options searched on the tune split, per task)."""
    import yaml

    from orchestrator.defaults import TUNED_SPEC, tuned_settings

    table = {s["name"]: s for s in yaml.safe_load(TUNED_SPEC.read_text())["solvers"]}
    assert {"dps", "psld", "resample", "daps", "latent_daps", "wiener", "tv_pd"} <= set(table)
    for name, entry in table.items():
        for task, sizes in entry["task_step_sizes"].items():
            step, options = tuned_settings(name, task)
            assert step == sizes[0] and options == entry.get("options", {})
    assert tuned_settings("nope", "gaussian_blur") == (None, {})
    assert tuned_settings("dps", "gaussian_blur", path=TUNED_SPEC.with_name("absent.yaml")) == (None, {})
