"""Every diffusion solver beats the measurement's naive inverse on inpainting and deblurring (embedded world).

Reference: the naive inverse of each operator (``Operator.naive_inverse``: ``A^T y`` for box
inpainting, the blurred measurement itself for Gaussian deblurring), on the same measurements
(``orchestrator.problem.make_measurement``, the sweep's own seed rule). Budget, step sizes and
options are the shared defaults (``configs/tuned.yaml``: searched by ``configs/tune-steps.yaml`` on
the tune split, disjoint from these images), so the test checks what the demo runs. Images: the
first 8 of the iid report split. The bar is the mean PSNR over those 8 images; a solver that lost its
guidance (or a latent solver whose autoencoder cannot represent the image as well as the blurred
measurement does) falls below it. Cases measured false are listed in ``KNOWN_LOSSES`` with the
measured numbers and marked ``xfail`` (strict: a pass would be news).

Measured 2026-12-01 on the dead-leaves world (CPU-trained priors, 20 steps): every solver beats
``A^T y`` on box inpainting (PSLD only just: its latent prior, trained 22 min on 2 cores, samples
texture rather than leaves, and PSLD follows the prior's DDIM trajectory); on deblurring only DAPS
and LatentDAPS beat the blurred measurement. DPS, PSLD and ReSample do not (KNOWN_LOSSES).
"""
from __future__ import annotations

import pytest
import torch

from orchestrator.defaults import default_step_size, tuned_num_steps, tuned_settings
from orchestrator.metrics import psnr
from orchestrator.problem import make_measurement, task_params
from solvers import SOLVERS, RowBatch, solve
from solvers.loaders import load_prior
from solvers.rng import make_generators, row_seed

IDS = list(range(8))
TASKS = ["box_inpainting", "gaussian_blur"]
DIFFUSION = sorted(n for n, e in SOLVERS.items() if e.family == "diffusion")
#: (solver, task) -> (measured PSNR, naive PSNR) where the claim was measured false
KNOWN_LOSSES: dict = {("dps", "gaussian_blur"): (21.08, 22.61), ("psld", "gaussian_blur"): (16.44, 22.61),
                      ("resample", "gaussian_blur"): (21.26, 22.61)}


@pytest.fixture(scope="module")
def priors():
    return {space: load_prior({"kind": "embedded", "name": space}) for space in ("pixel", "latent")}


def _cases():
    for name in DIFFUSION:
        for task in TASKS:
            loss = KNOWN_LOSSES.get((name, task))
            marks = [] if loss is None else [pytest.mark.xfail(
                strict=True, reason=f"measured {loss[0]:.2f} dB vs naive {loss[1]:.2f} dB (module docstring)")]
            yield pytest.param(name, task, marks=marks, id=f"{name}-{task}")


@pytest.mark.parametrize("name,task", list(_cases()))
def test_solver_beats_naive_inverse(priors, name, task):
    entry = SOLVERS[name]
    step = default_step_size(name, entry, task, embedded=True)
    _, options = tuned_settings(name, task)
    steps = tuned_num_steps(name) or 20
    m = make_measurement("embedded", "report", IDS, task, task_params("embedded", task), 0.05)
    naive = psnr(m.naive.clamp(-1, 1), m.x_true).mean()
    prior = priors["latent" if entry.space == "latent" else "pixel"]
    B = len(IDS)
    batch = RowBatch(y=m.y, operator=m.operator, generators=make_generators([row_seed("beats-naive", task, i) for i in IDS]),
                     params={"step_size": torch.full((B,), float(step), dtype=torch.float64)})
    out = solve(name, prior, batch, steps, options=options)
    assert out.status == ["ok"] * B
    got = psnr(out.x.clamp(-1, 1), m.x_true).mean()
    assert got > naive, f"{name} on {task}: {got:.2f} dB <= naive inverse {naive:.2f} dB"
