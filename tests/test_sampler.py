"""The shared sampler skeleton and the ``solve`` front door.

References: the Gaussian prior's exact mean and covariance (unguided sampling), DDPM/DDIM identities
(DDIM with eta 1 is DDPM with the posterior variance; the last step lands on x0), autograd through
the clamp, and the validation/divergence/restart rules of docs/CONTRACTS.md.
"""
from __future__ import annotations

import math

import pytest
import torch

from solvers import SOLVERS, RegularizerSpec, RowBatch, solve
from solvers.api import DIVERGED_ABOVE, RowMonitor, SolveContext
from solvers.priors import GaussianPrior, VPSchedule
from solvers.rng import make_generators
from solvers.sampler import (ddim_step, ddpm_step, guided_loop, initial_noise, karras_sigmas, pf_ode_euler,
                             timestep_grid, tweedie)
from tests.support.gaussian import DenseOperator, gaussian_problem


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def _ctx(prior, op, B, steps, seeds=None):
    gens = make_generators(range(B) if seeds is None else seeds)
    y = torch.zeros(B, *op.measurement_shape, dtype=torch.float64)
    return SolveContext(prior, RowBatch(y, op, gens, {}), steps, {}, gens, RowMonitor(B, "cpu"))


def _batch(p, B, params, seeds=None):
    seeds = range(B) if seeds is None else seeds
    return RowBatch(p["y"].expand(B, -1, -1, -1).clone(), p["op"], make_generators(seeds), params)


# ----------------------------------------------------------------------------- skeleton
def test_timestep_grid_descends_to_x0():
    """Reference: ``VPSchedule.timesteps``; N pairs, from T-1, ending at t_prev = -1 (abar = 1)."""
    prior = GaussianPrior(torch.zeros(4), torch.eye(4), VPSchedule.linear())
    grid = timestep_grid(prior, 20)
    assert len(grid) == 20 and grid[0][0] == 999 and grid[-1] == (0, -1)
    assert all(t > tp for t, tp in grid)
    assert [tp for _, tp in grid[:-1]] == [t for t, _ in grid[1:]]


def test_last_step_lands_on_x0_and_ddim_eta1_is_ddpm_small(problem):
    """References: with abar_prev = 1 both updates return x0 exactly; DDIM with eta = 1 is the DDPM
    ancestral step with the posterior variance (Song et al. 2021, eq. 16), same noise."""
    prior = problem["prior"]
    g = torch.Generator().manual_seed(1)
    x_t, x0, n = (torch.randn(3, 1, 2, 2, dtype=torch.float64, generator=g) for _ in range(3))
    eps = (x_t - prior.abar(torch.tensor(500), x_t).sqrt() * x0) / (1 - prior.abar(torch.tensor(500), x_t)).sqrt()
    torch.testing.assert_close(ddpm_step(prior, x_t, x0, 10, -1, n), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(ddim_step(prior, x_t, x0, eps, 10, -1, 0.0), x0, rtol=0, atol=1e-12)
    torch.testing.assert_close(ddim_step(prior, x_t, x0, eps, 500, 450, 1.0, n),
                               ddpm_step(prior, x_t, x0, 500, 450, n, "small"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("update,variance,eta", [("ddpm", "small", 0.0), ("ddpm", "large", 0.0), ("ddim", "small", 0.0)])
def test_unguided_sampling_matches_the_gaussian_prior(problem, update, variance, eta):
    """Reference: the prior's exact mean and covariance. With an exact score, the sample mean is
    unbiased at any step count (every update is affine, E[x_t] = sqrt(abar) mu), so the mean must
    be within 4 standard errors; the covariance carries discretisation error (measured at 100
    steps: 0.12 relative for DDPM-small, 0.07 large, 0.08 DDIM, of which ~0.06 is sampling error
    at 600 rows), so it is held to 0.2 relative Frobenius error."""
    prior = problem["prior"]
    B = 600
    ctx = _ctx(prior, problem["op"], B, 100)
    x = guided_loop(ctx, initial_noise(prior, ctx.generators, torch.float64, "cpu"), update=update,
                    variance=variance, eta=eta).reshape(B, -1)
    se = (prior.Sigma.diagonal() / B).sqrt()
    assert ((x.mean(0) - prior.mu) / se).abs().max() < 4
    cov = torch.cov(x.T)
    assert (cov - prior.Sigma).norm() / prior.Sigma.norm() < 0.2


def test_tweedie_clamp_is_inside_the_gradient_path(problem):
    """Reference: official DPS ``clip_denoised``: clamped entries of x0_hat carry no gradient."""
    prior = problem["prior"]
    x_t = torch.full((1, 1, 2, 2), 3.0, dtype=torch.float64, requires_grad=True)
    x0, _ = tweedie(prior, x_t, 100, clamp=True)
    assert float(x0.detach().max()) <= 1.0
    grad, = torch.autograd.grad(x0.sum(), x_t)
    clipped = (tweedie(prior, x_t.detach(), 100)[0].abs() > 1)
    assert bool(clipped.any()) and bool((grad[clipped] == 0).all())


def test_pf_ode_on_gaussian_reaches_the_data_distribution_mean(problem):
    """Reference: the prior mean; the PF-ODE transports N(mu, Sigma + s^2 I) to N(mu, Sigma)."""
    prior = problem["prior"]
    B = 400
    sig = karras_sigmas(20.0, 0.02, 40)
    g = torch.Generator().manual_seed(5)
    x = prior.mu.view(1, 1, 2, 2) + 20.0 * torch.randn(B, 1, 2, 2, dtype=torch.float64, generator=g)
    x = pf_ode_euler(prior, x, sig).reshape(B, -1)
    assert math.isclose(float(sig[0]), 20.0, rel_tol=1e-12) and math.isclose(float(sig[-1]), 0.02, rel_tol=1e-9)
    assert ((x.mean(0) - prior.mu) / (prior.Sigma.diagonal() / B).sqrt()).abs().max() < 4


# ----------------------------------------------------------------------------- validation
class _NoCompute(GaussianPrior):
    """A prior that fails the test if anything is computed: validation must come first."""

    def eps(self, x_t, t):  # pragma: no cover - reached only on a bug
        raise AssertionError("solve computed before validating")


@pytest.fixture()
def strict_prior(problem):
    p = problem["prior"]
    return _NoCompute(p.mu, p.Sigma, p.schedule, shape=p.shape)


def test_validation_happens_before_compute(problem, strict_prior):
    """Reference: docs/CONTRACTS.md ("solve validates before any compute")."""
    ok = {"step_size": 0.3}
    with pytest.raises(ValueError, match="unknown solver 'nope'.*dps"):
        solve("nope", strict_prior, _batch(problem, 2, ok), 5)
    with pytest.raises(ValueError, match="latent-space prior"):
        solve("psld", strict_prior, _batch(problem, 2, {}), 5)
    with pytest.raises(ValueError, match="lam must be >= 0"):
        solve("dps", strict_prior, _batch(problem, 2, {**ok, "lam": torch.tensor([0.1, -1.0])}), 5,
              RegularizerSpec(kind="equi", mpe=lambda x: x))
    bad_y = RowBatch(torch.zeros(2, 1, 1, 3, dtype=torch.float64), problem["op"], make_generators([0, 1]), ok)
    with pytest.raises(ValueError, match="operator"):
        solve("dps", strict_prior, bad_y, 5)
    with pytest.raises(ValueError, match="needs per-row parameter 'step_size'"):
        solve("dps", strict_prior, _batch(problem, 2, {}), 5)
    with pytest.raises(ValueError, match="unknown option.*allowed"):
        solve("dps", strict_prior, _batch(problem, 2, ok), 5, options={"zeta": 1})
    with pytest.raises(ValueError, match="oracle"):
        solve("dps", strict_prior, _batch(problem, 2, ok), 5, options={"restarts": 2, "select": "oracle_psnr"})
    with pytest.raises(ValueError, match="shape"):
        solve("dps", strict_prior, _batch(problem, 2, {"step_size": torch.ones(3)}), 5)
    with pytest.raises(ValueError, match="no 'lam'"):
        solve("dps", strict_prior, _batch(problem, 2, ok), 5, RegularizerSpec(kind="equi", mpe=lambda x: x))
    with pytest.raises(ValueError, match="unknown group"):
        solve("dps", strict_prior, _batch(problem, 2, {**ok, "lam": 0.1}), 5,
              RegularizerSpec(kind="equi", mpe=lambda x: x, group="shear"))
    with pytest.raises(ValueError, match="autoencoder"):
        solve("dps", strict_prior, _batch(problem, 2, {**ok, "lam": 0.1}), 5, RegularizerSpec(kind="equi"))

    class NoTranspose(DenseOperator):
        has_transpose = False

    batch = RowBatch(problem["y"].expand(2, -1, -1, -1), NoTranspose(problem["op"].A), make_generators([0, 1]),
                     {"omega": 1.0, "gamma": 0.1})
    with pytest.raises(ValueError, match="transpose"):
        solve("psld", problem["latent"], batch, 5)


def test_registry_declares_space_and_transpose():
    """Reference: docs/CONTRACTS.md (SOLVERS[name].space / .needs_transpose)."""
    assert SOLVERS["dps"].space == "pixel" and not SOLVERS["dps"].needs_transpose
    assert SOLVERS["psld"].space == "latent" and SOLVERS["psld"].needs_transpose
    assert SOLVERS["resample"].space == "latent" and not SOLVERS["resample"].needs_transpose
    assert SOLVERS["dps"].reg_schedule == "noise_sqrt"


# ----------------------------------------------------------------------------- divergence, restarts
class _Fragile(GaussianPrior):
    """A prior whose network "overflows" (returns NaN) on inputs beyond 1e6, as a float32 net would."""

    def eps(self, x_t, t):
        e = super().eps(x_t, t)
        return torch.where(x_t.abs() > 1e6, torch.full_like(e, math.nan), e)


def test_a_diverging_row_is_frozen_and_flagged_the_rest_continue(problem):
    """Reference: the same healthy rows solved without the bad row (bit-identical), and the
    contract: a non-finite row is frozen at its last finite state and flagged ``diverged``."""
    p = problem["prior"]
    prior = _Fragile(p.mu, p.Sigma, p.schedule, shape=p.shape)
    zeta = torch.tensor([0.3, 1e8, 0.3], dtype=torch.float64)
    out = solve("dps", prior, _batch(problem, 3, {"step_size": zeta}, [1, 2, 3]), 15, options={"clamp": False})
    assert out.status == ["ok", "diverged", "ok"]
    assert bool(torch.isfinite(out.x).all())
    healthy = solve("dps", prior, _batch(problem, 2, {"step_size": 0.3}, [1, 3]), 15, options={"clamp": False})
    torch.testing.assert_close(out.x[[0, 2]], healthy.x, rtol=0, atol=0)


def test_a_finite_but_exploded_output_is_diverged():
    """Reference: the contract of ``solvers.api.DIVERGED_ABOVE`` (docs/CONTRACTS.md): a row whose
    output stays finite but leaves every data range (DPS, no clamp, step 1e5: |x| ~ 7e4 here; DAPS
    at lr 3e-4 on mog8 inpainting reached 1e19) is ``diverged``; a large but sane one (step 1e3:
    |x| ~ 7e2) stays ``ok``, and the other rows are untouched."""
    p = gaussian_problem()
    zeta = torch.tensor([0.3, 1e5, 1e3], dtype=torch.float64)
    out = solve("dps", p["prior"], _batch(p, 3, {"step_size": zeta}, [1, 2, 3]), 15, options={"clamp": False})
    peak = out.x.reshape(3, -1).abs().amax(1)
    assert bool(torch.isfinite(out.x).all()) and float(peak[1]) > DIVERGED_ABOVE > float(peak[2]) > 100
    assert out.status == ["ok", "diverged", "ok"]


def test_monitor_guard_keeps_the_last_finite_state():
    """Reference: RowMonitor's rule (freeze on first non-finite value, stay frozen)."""
    mon = RowMonitor(2, "cpu")
    old = torch.zeros(2, 1, 1, 2)
    new = torch.tensor([[[[1.0, math.nan]]], [[[1.0, 2.0]]]])
    out = mon.guard(new, old)
    assert mon.diverged.tolist() == [True, False]
    assert torch.equal(out[0], old[0]) and torch.equal(out[1], new[1])
    out2 = mon.guard(torch.ones(2, 1, 1, 2), out)
    assert torch.equal(out2[0], old[0])


def test_restarts_pick_the_lowest_residual_per_row(problem):
    """Reference: K separate runs; restart 0 is the plain run; the selection is per-row argmin of
    ``||y - A(x)||`` (ground-truth free) or, as a labelled oracle, argmax PSNR against x_true."""
    prior = problem["prior"]
    params = {"step_size": 0.3}
    single = solve("dps", prior, _batch(problem, 3, params), 8, options={"clamp": False})
    multi = solve("dps", prior, _batch(problem, 3, params), 8, options={"clamp": False, "restarts": 3})
    res = multi.extras["restart_residuals"]
    assert res.shape == (3, 3)
    torch.testing.assert_close(res[:, 0], single.extras["y_residual"], rtol=0, atol=0)
    assert torch.equal(multi.extras["restart"], res.argmin(1))
    torch.testing.assert_close(multi.extras["y_residual"], res.min(1).values, rtol=0, atol=0)
    assert "ground-truth free" in multi.meta["select"]
    batch = _batch(problem, 3, params)
    batch.x_true = problem["x_true"].expand(3, -1, -1, -1)
    oracle = solve("dps", prior, batch, 8, options={"clamp": False, "restarts": 3, "select": "oracle_psnr"})
    assert "ORACLE" in oracle.meta["select"]
    def sq_err(x):  # the oracle scores PSNR of the [-1, 1]-clamped image
        return ((x.clamp(-1, 1) - batch.x_true) ** 2).reshape(3, -1).sum(1)

    assert bool((sq_err(oracle.x) <= sq_err(multi.x) + 1e-12).all())
    assert sorted(set(oracle.extras["restart"].tolist())) <= [0, 1, 2]
