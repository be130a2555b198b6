"""Lambda's influence per row (``extras["influence_grad"]`` / ``["influence_obj"]``, issue 12 §3).

Reference: hand-computed gradients on a closed-form problem. The prior is Gaussian, so Tweedie is
affine, ``x0_hat = J_t x_t + c_t`` with ``J_t = sqrt(abar_t) Sigma (abar_t Sigma + (1 - abar_t) I)^-1``
(from ``eps = sqrt(1 - abar) C_t^-1 (x_t - sqrt(abar) mu)``, ``C_t = abar Sigma + (1 - abar) I``);
the operator is a dense matrix ``A``; the MPE function is a fixed elementwise weighting
``f(x) = w * x``, so Equi's ``T f(x) - f(T x) = M x`` with ``M = diag(flip(w) - w) P`` (``P`` the
horizontal flip) and ``grad ||M x|| = M^T M x / ||M x||``. DPS's data gradient is
``J^T A^T r / ||r||`` (``r = A x0 - y``, DPS's unsquared norm, Chung et al. 2023 Alg. 1); DAPS's
likelihood drift is ``2 A^T (A x - y) / tau^2`` (the DAPS repo's ``-grad ||A x - y||^2 / tau^2``).
The trajectories are recomputed from the published updates (DDPM posterior step, Ho et al. 2020
eq. 7; DAPS Langevin ``x += lr s + sqrt(2 lr) n``) with the rows' own noise streams.
``EQUIBENCH_TEST_DEVICE=cuda`` runs the solvers on a GPU (references stay on the CPU).
"""
from __future__ import annotations

import math

import pytest
import torch

from solvers import RegularizerSpec, RowBatch, solve
from solvers.priors import GaussianPrior, LatentPrior, VPSchedule
from solvers.rng import make_generators, randn_rows
from tests.support.gaussian import DEVICE, DT, SHAPE, DenseOperator, GaussianEps, identity_autoencoder

D = math.prod(SHAPE)
W = torch.tensor([[[1.0, 0.4], [0.7, 1.6]]], dtype=DT)  # f(x) = W * x: not flip-equivariant
FLIP = torch.eye(D, dtype=DT)[[1, 0, 3, 2]]  # horizontal flip of a flattened (1, 2, 2) image
M = torch.diag((W.flip(-1) - W).flatten()) @ FLIP


pytestmark = pytest.mark.usefixtures("one_thread")


def _problem():
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=DT))
    Sigma = Q @ torch.diag(torch.tensor([0.9, 0.4, 0.2, 0.05], dtype=DT)) @ Q.T
    mu = torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=DT)
    A = torch.randn(2, D, generator=g, dtype=DT)
    y = torch.randn(2, generator=g, dtype=DT)
    return mu, Sigma, A, y


def _spec(schedule="constant"):
    return RegularizerSpec(kind="equi", mpe=lambda x: x * W.to(x), group="hflip", reduction="norm", schedule=schedule)


def _batch(A, y, lam, seeds, **params):
    op = DenseOperator(A, name="dense").to(DEVICE)
    B = len(seeds)
    p = {k: torch.as_tensor(v, dtype=DT).expand(B).clone().to(DEVICE) for k, v in params.items()}
    if lam is not None:
        p["lam"] = torch.as_tensor(lam, dtype=DT).expand(B).clone().to(DEVICE)
    Y = y.reshape(1, 1, 1, -1).expand(B, -1, -1, -1).clone().to(DEVICE)
    return RowBatch(Y, op, make_generators(seeds, DEVICE), p)


def _draw(shape, g):
    """Row 0's draw from ``g`` (the solver's generators live on DEVICE), on the CPU."""
    return randn_rows(shape, g, dtype=DT)[0].cpu()


def _pen_grad(x, lam):
    """``grad_x lam ||M x||`` (x flattened)."""
    mx = M @ x
    return lam * M.T @ mx / mx.norm()


# ----------------------------------------------------------------------------- DPS
def _dps_by_hand(mu, Sigma, A, y, lam, zeta, seed):
    """DPS with clamp off, 2 steps (t = 999 -> 0 -> x0), the penalty at both: the mean ratio."""
    sched = VPSchedule.linear()
    g = make_generators([seed], DEVICE)
    x = _draw(SHAPE, g).flatten()
    I = torch.eye(D, dtype=DT)
    ratios = []
    for t, t_prev in [(999, 0), (0, -1)]:
        a = float(sched.alphas_cumprod[t])
        C = a * Sigma + (1 - a) * I
        J = math.sqrt(a) * Sigma @ torch.linalg.inv(C)
        x0 = (x - (1 - a) * torch.linalg.solve(C, x - math.sqrt(a) * mu)) / math.sqrt(a)
        r = A @ x0 - y
        g_data = J.T @ A.T @ r / r.norm()
        g_pen = J.T @ _pen_grad(x0, lam)
        ratios.append(float(g_pen.norm() / g_data.norm()))
        if t_prev < 0:
            break
        ap = float(sched.alphas_cumprod[t_prev])
        beta = 1 - a / ap
        mean = math.sqrt(ap) * beta / (1 - a) * x0 + math.sqrt(1 - beta) * (1 - ap) / (1 - a) * x
        noise = _draw(SHAPE, g).flatten()
        x = mean + math.sqrt(beta * (1 - ap) / (1 - a)) * noise - zeta * (g_data + g_pen)
    return sum(ratios) / len(ratios)


def test_dps_influence_matches_hand_computed_ratio():
    """Reference: the hand-computed ``||grad_{x_t} lam R|| / ||grad_{x_t} ||y - A x0_hat||||`` (module
    docstring), averaged over the 2 steps, per row; float64 to 1e-8 relative."""
    mu, Sigma, A, y = _problem()
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE).to(DEVICE)
    lams, seeds, zeta = [0.7, 2.0], [5, 6], 0.3
    out = solve("dps", prior, _batch(A, y, lams, seeds, step_size=zeta), 2, _spec(), {"clamp": False})
    want = torch.tensor([_dps_by_hand(mu, Sigma, A, y, l, zeta, s) for l, s in zip(lams, seeds)], dtype=DT)
    torch.testing.assert_close(out.extras["influence_grad"].cpu(), want, rtol=1e-8, atol=0)
    assert "influence_obj" not in out.extras


# ----------------------------------------------------------------------------- DAPS
def _daps_by_hand(mu, Sigma, A, y, lam, lr, seed, *, s, K, tau):
    """DAPS, one level ``s``, Tweedie centre, K Langevin steps: the mean ratio of the penalty
    gradient to the likelihood part of the drift over the K steps."""
    g = make_generators([seed], DEVICE)
    x = s * _draw(SHAPE, g).flatten()
    noise = _draw((K, *SHAPE), g).reshape(K, D)
    x0_hat = mu + Sigma @ torch.linalg.solve(Sigma + s ** 2 * torch.eye(D, dtype=DT), x - mu)
    xm, ratios = x0_hat.clone(), []
    for k in range(K):
        drift = 2 * A.T @ (A @ xm - y) / tau ** 2
        g_pen = _pen_grad(xm, lam)
        ratios.append(float(g_pen.norm() / drift.norm()))
        score = -drift + (x0_hat - xm) / s ** 2 - g_pen
        xm = xm + lr * score + math.sqrt(2 * lr) * noise[k]
    return sum(ratios) / K


def test_daps_influence_matches_hand_computed_ratio():
    """Reference: the hand-computed ``||grad lam R|| / ||grad ||A x - y||^2 / tau^2||`` along DAPS's
    Langevin chain (module docstring; the prior part of the drift is not in the denominator), one
    level, 3 steps, per row; float64 to 1e-8 relative."""
    mu, Sigma, A, y = _problem()
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE).to(DEVICE)
    lams, seeds, lr, s, K, tau = [5.0, 40.0], [7, 8], 2e-3, 0.8, 3, 0.3
    opts = {"task": "down_sampling", "sigma_max": s, "sigma_min": s, "ode_steps": 0, "mcmc_steps": K,
            "mc_algo": "langevin", "tau": tau}
    out = solve("daps", prior, _batch(A, y, lams, seeds, step_size=lr), 1, _spec(), opts)
    want = torch.tensor([_daps_by_hand(mu, Sigma, A, y, l, lr, sd, s=s, K=K, tau=tau)
                         for l, sd in zip(lams, seeds)], dtype=DT)
    torch.testing.assert_close(out.extras["influence_grad"].cpu(), want, rtol=1e-8, atol=0)
    assert "influence_obj" not in out.extras


# ----------------------------------------------------------------------------- every solver
def _latent(mu, Sigma):
    gp = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    return LatentPrior(GaussianEps(gp), identity_autoencoder(), gp.schedule, name="gaussian-latent")


CASES = {  # solver: (latent prior?, per-row params, options, num_steps)
    "dps": (False, {"step_size": 0.3}, {"clamp": False}, 6),
    "psld": (True, {"omega": 0.05, "gamma": 0.1}, {}, 6),
    "resample": (True, {}, {"pixel_iters": 5, "latent_iters": 5, "plateau": 3}, 9),
    "daps": (False, {"step_size": 1e-3}, {"task": "down_sampling", "mcmc_steps": 3, "sigma_max": 5.0}, 3),
    "latent_daps": (True, {"step_size": 1e-3}, {"task": "down_sampling", "mcmc_steps": 3, "sigma_max": 5.0}, 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_influence_is_per_row_and_absent_without_regularizer(name):
    """Reference: the same row solved alone (rows never interact). Row 2 of a 3-row batch with
    other lambdas and seeds has the same influence alone (float64, 1e-7 relative); a lam = 0 row
    has influence 0; without a regularizer (none, kind 'none', or every lam = 0) the keys are
    absent; ``influence_obj`` only for ReSample (its latent-optimisation objective ratio)."""
    latent, params, opts, steps = CASES[name]
    mu, Sigma, A, y = _problem()
    prior = (_latent(mu, Sigma) if latent else GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)).to(DEVICE)
    keys = {"influence_grad", "influence_obj"} if name == "resample" else {"influence_grad"}
    full = solve(name, prior, _batch(A, y, [0.5, 0.0, 2.0], [1, 2, 3], **params), steps, _spec(), opts)
    alone = solve(name, prior, _batch(A, y, [2.0], [3], **params), steps, _spec(), opts)
    for k in keys:
        v = full.extras[k]
        assert v.shape == (3,) and v.dtype == DT and v.device.type == DEVICE.type, (k, v)
        assert bool(torch.isfinite(v).all()), (k, v)
        assert v[1] == 0 and bool((v[[0, 2]] > 0).all()), (k, v)
        torch.testing.assert_close(v[2:3], alone.extras[k], rtol=1e-7, atol=0)
    assert not ({"influence_grad", "influence_obj"} - keys) & set(full.extras)
    for reg, lam in [(None, None), (RegularizerSpec(kind="none"), 1.0), (_spec(), 0.0)]:
        base = solve(name, prior, _batch(A, y, lam, [1, 2], **params), steps, reg, opts)
        assert not {"influence_grad", "influence_obj"} & set(base.extras), (reg, lam)
