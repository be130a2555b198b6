"""Every solver beats the measurement's naive inverse on inpainting and deblurring (embedded world).

Reference: the naive inverse of each operator (``Operator.naive_inverse``: ``A^T y`` for box
inpainting, the blurred measurement itself for Gaussian deblurring), on the same measurements.
The budget and step sizes are those of ``configs/solvers-table.yaml`` (20 DDPM/DDIM steps, DAPS 10
annealing levels; step sizes picked by ``configs/tune-steps.yaml`` on tuning images disjoint from
these), read from that file so the test checks what the table reports. Images: 2 crops of each
validation photo among the table's report images. The bar is the mean PSNR over those 8 images;
a solver that lost its guidance (or a latent solver whose autoencoder cannot represent the image
as well as the blurred measurement does) falls well below it.

What holds (measured 2026-11-27, these 8 images): every solver beats the naive inverse on box
inpainting, and DPS and DAPS on deblurring. The three latent solvers do NOT beat the blurred
measurement on deblurring at this budget, after a step-size / budget search on the tuning crops
(configs/tune-steps*.yaml) and with an autoencoder that reconstructs at 29.0 dB: PSLD 20.28 dB,
ReSample 23.78 dB, LatentDAPS 24.40 dB vs the measurement's 24.59 dB. Those three cases are marked
``xfail``: strict for PSLD and ReSample (a pass would be news), not strict for LatentDAPS, whose
gap (0.19 dB) is within what a different CPU's floating point could flip.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from operators import EMBEDDED_DEFAULTS, add_noise, build_operator
from orchestrator.commands.solve import tuned_settings
from orchestrator.metrics import psnr
from solvers import RowBatch, solve
from solvers.embedded.data import load_split
from solvers.loaders import load_prior
from solvers.rng import make_generators, row_seed

TABLE = Path(__file__).resolve().parents[1] / "configs" / "solvers-table.yaml"
IMAGE_IDS = [0, 4, 16, 20, 32, 36, 48, 52]
TASKS = ["box_inpainting", "gaussian_blur"]


def _table_solvers() -> dict:
    spec = yaml.safe_load(TABLE.read_text())
    return {s["name"]: s for s in spec["solvers"]}


SOLVERS = _table_solvers()


@pytest.fixture(scope="module")
def priors():
    return {space: load_prior({"kind": "embedded", "name": space}) for space in ("pixel", "latent")}


#: (solver, task) -> (measured PSNR, naive PSNR) where the claim is measured false (module docstring)
KNOWN_LOSSES = {("psld", "gaussian_blur"): (20.28, 24.59, True), ("resample", "gaussian_blur"): (23.78, 24.59, True),
                ("latent_daps", "gaussian_blur"): (24.40, 24.59, False)}


def _cases():
    for name in sorted(SOLVERS):
        for task in TASKS:
            loss = KNOWN_LOSSES.get((name, task))
            marks = [] if loss is None else [pytest.mark.xfail(
                strict=loss[2], reason=f"measured {loss[0]:.2f} dB vs naive {loss[1]:.2f} dB (module docstring)")]
            yield pytest.param(name, task, marks=marks, id=f"{name}-{task}")


@pytest.mark.parametrize("name,task", list(_cases()))
def test_solver_beats_naive_inverse(priors, name, task):
    from solvers import SOLVERS as REGISTRY

    entry = SOLVERS[name]
    step, options = tuned_settings(name, task, TABLE)
    x_true = load_split("val", ids=IMAGE_IDS)
    B = len(IMAGE_IDS)
    seeds = [row_seed("beats-naive", task, i) for i in IMAGE_IDS]
    op = build_operator(task, tuple(x_true.shape[1:]), seeds=seeds, **EMBEDDED_DEFAULTS[task])
    with torch.no_grad():
        y = add_noise(op.forward(x_true), 0.05, make_generators([s + 1 for s in seeds]))
    naive = psnr(op.naive_inverse(y).clamp(-1, 1), x_true).mean()
    prior = priors["latent" if REGISTRY[name].space == "latent" else "pixel"]
    batch = RowBatch(y=y, operator=op, generators=make_generators(seeds),
                     params={"step_size": torch.full((B,), float(step), dtype=torch.float64)})
    out = solve(name, prior, batch, int(entry["num_steps"][0]), options=options)
    assert out.status == ["ok"] * B
    got = psnr(out.x.clamp(-1, 1), x_true).mean()
    assert got > naive, f"{name} on {task}: {got:.2f} dB <= naive inverse {naive:.2f} dB"
