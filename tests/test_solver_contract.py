"""The contract every registered solver keeps (docs/CONTRACTS.md, Solvers), run over ``SOLVERS``.

Each entry of the registry (plugins' fakes excluded) runs on the exact-posterior world ``mog8``
(1x8x8: the score is exact and cheap, so every solver runs in well under a second), on a task it
supports, with a few steps. Checked, for every solver:

- determinism: the same rows and seeds give the same output bit for bit;
- rows never interact: a row solved alone equals the same row inside a batch of three (float
  reassociation of batched matmuls aside: 1e-9 relative, in float64);
- lambda 0 is the baseline: ``equi`` with lambda 0 equals no regularizer bit for bit (diffusion);
- validation before compute: an unknown option and a generator count that does not match are
  refused with ``ValueError`` before the prior's network is called once;
- divergence: a row whose measurement is NaN is ``diverged`` and the other rows are exactly what
  they are without it.

A new solver gets the suite by registering; its own reference test stays in its own module.
"""
from __future__ import annotations

import math

import pytest
import torch

from orchestrator.problem import make_measurement, task_params
from solvers import SOLVERS, RegularizerSpec, RowBatch, solve
from solvers.loaders import load_autoencoder, load_prior
from solvers.rng import make_generators

BUILTIN = sorted(n for n, e in SOLVERS.items() if e.fn.__module__.startswith("solvers."))
#: a few steps each: the contract does not depend on the step count
STEPS = {"daps": 3, "latent_daps": 3}
OPTIONS = {"daps": {"mcmc_steps": 2}, "latent_daps": {"mcmc_steps": 2}, "resample": {"pixel_iters": 3, "latent_iters": 3}}
#: the world's own step scales (configs/calibration.yaml): large enough to move the state
STEP = {"dps": 1.0, "psld": 1.0, "resample": 1.5, "daps": 1e-4, "latent_daps": 1e-5, "tikhonov_sr": 1.0,
        "tv_pd": 0.01, "tv_gd": 0.01, "wiener": 0.01}


def _task(entry) -> str:
    for task in ("random_inpainting", "super_resolution", "gaussian_blur", "hdr"):
        if entry.supports(task):
            return task
    raise AssertionError(f"no mog8 task for {entry.name}")


class _Counting:
    """Counts the prior's network calls (``eps``)."""

    def __init__(self, prior):
        self.prior, self.calls = prior, 0
        real = prior.eps

        def eps(*a, **k):
            self.calls += 1
            return real(*a, **k)

        prior.eps = eps


@pytest.fixture(scope="module")
def world():
    pix = load_prior({"kind": "mixture", "name": "mog8", "space": "pixel"})
    lat = load_prior({"kind": "mixture", "name": "mog8", "space": "latent"})
    return {"pixel": pix, "latent": lat, "autoencoder": load_autoencoder({"kind": "mixture", "name": "mog8"})}


def _prior(world, entry):
    if not entry.needs_prior:
        return None
    return world["latent" if entry.space == "latent" else "pixel"]


def _run(world, name, ids, *, lam=None, seeds=None, y_nan_row=None, options=None, prior=None, schedule=None):
    entry = SOLVERS[name]
    task = _task(entry)
    m = make_measurement("mog8", "tune", ids, task, task_params("mog8", task), 0.3)
    y = m.y.clone()
    if y_nan_row is not None:
        y[y_nan_row] = math.nan
    B = len(ids)
    params = {}
    if entry.step_param is not None:
        params[entry.step_param] = torch.full((B,), STEP.get(name, 1.0), dtype=y.dtype)
    reg = None
    if lam is not None:
        params["lam"] = torch.full((B,), float(lam), dtype=y.dtype)
        reg = RegularizerSpec(kind="equi", group="hflip", mpe="decoder" if entry.space == "latent" else "encoder",
                              schedule=schedule,
                              autoencoder=None if entry.space == "latent" else world["autoencoder"])
    gens = make_generators(seeds if seeds is not None else [100 + i for i in ids])
    batch = RowBatch(y=y, operator=m.operator, generators=gens, params=params)
    opts = {**OPTIONS.get(name, {}), **(options or {})}
    return solve(name, prior if prior is not None else _prior(world, entry), batch, STEPS.get(name, 4),
                 regularizer=reg, options=opts)


@pytest.mark.parametrize("name", BUILTIN)
def test_deterministic_and_rows_independent(world, name, one_thread):
    a = _run(world, name, [0, 1, 2])
    b = _run(world, name, [0, 1, 2])
    assert torch.equal(a.x, b.x) and a.status == b.status == ["ok"] * 3
    alone = _run(world, name, [1], seeds=[101])
    torch.testing.assert_close(alone.x[0], a.x[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", [n for n in BUILTIN if SOLVERS[n].family == "diffusion"])
def test_lambda_zero_is_the_baseline_bit_for_bit(world, name, one_thread):
    base = _run(world, name, [0, 1])
    zero = _run(world, name, [0, 1], lam=0.0)
    assert torch.equal(base.x, zero.x)
    # the regularizer is live: lambda > 0 changes the rows (at every step: 4 steps may all lie past
    # a solver's default cutoff)
    moved = _run(world, name, [0, 1], lam=1e3, schedule="constant")
    assert not torch.equal(base.x, moved.x)


@pytest.mark.parametrize("name", BUILTIN)
def test_validation_runs_before_any_compute(world, name):
    entry = SOLVERS[name]
    prior = _prior(world, entry)
    counter = _Counting(prior) if prior is not None else None
    with pytest.raises(ValueError, match="unknown option"):
        _run(world, name, [0], options={"no_such_option": 1}, prior=prior)
    with pytest.raises(ValueError):
        _run(world, name, [0, 1], seeds=[1], prior=prior)  # 1 generator for 2 rows
    if counter is not None:
        assert counter.calls == 0
        del prior.eps  # back to the class's method


@pytest.mark.parametrize("name", BUILTIN)
def test_a_non_finite_row_is_diverged_and_leaves_the_others_alone(world, name, one_thread):
    clean = _run(world, name, [0, 2], seeds=[100, 102])
    bad = _run(world, name, [0, 1, 2], y_nan_row=1)
    assert bad.status == ["ok", "diverged", "ok"]
    torch.testing.assert_close(bad.x[[0, 2]], clean.x, rtol=1e-9, atol=1e-9)
