"""DPS, PSLD and ReSample against a closed-form posterior, and their row independence.

The reference: a Gaussian prior ``N(mu, Sigma)`` on 4 values shaped (1, 2, 2) has an exact score at
every noise level (``GaussianPrior``), and with a linear operator ``A`` (2 x 4) and Gaussian noise
the posterior ``x | y`` is Gaussian with a closed-form mean (``GaussianPrior.posterior``). PSLD and
ReSample run on the same prior wrapped as a latent prior with an identity autoencoder, so all three
target the same posterior. ``y`` is made from a point 1.5 prior standard deviations out along every
eigen-direction so that the posterior mean is far (about 3.2) from the prior mean.

Tolerances. None of the three is an exact posterior sampler: DPS and PSLD replace ``p(y | x_t)`` by
``p(y | x0_hat(x_t))`` and take fixed-size steps on an unsquared norm, ReSample fits ``y`` by
optimization and resamples. What they can promise is to move the prior's mean most of the way to
the posterior's. Measured on this problem (50 steps, 256 rows, float64), as a fraction of the
prior-to-posterior distance (3.24; the Monte-Carlo standard error of the mean is about 0.05, i.e.
0.015 of it): DPS (zeta 0.3) 0.08, PSLD (omega 0.05, gamma 0.1) 0.14, ReSample (small optimization
budgets) 0.16. The tests assert 0.15 (DPS) and 0.2 (PSLD, ReSample): loose enough for the
methods' bias (the seeds are fixed, so the numbers are reproducible, not a matter of luck), tight
enough to catch a lost guidance gradient (zeta 0: 0.99), a wrong sign (3.6), DPS's clamp on this
unbounded prior (0.78) and ReSample's official ``(1 - abar)`` Tweedie (0.23).
"""
from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from solvers import RegularizerSpec, RowBatch, solve
from solvers.priors import Autoencoder, GaussianPrior, LatentPrior, VPSchedule
from solvers.rng import make_generators

SHAPE = (1, 2, 2)
#: where the solvers run: ``EQUIBENCH_TEST_DEVICE=cuda`` reruns these checks on a GPU, same tolerances
DEVICE = torch.device(os.environ.get("EQUIBENCH_TEST_DEVICE", "cpu"))


class DenseOperator:
    """A dense matrix ``A`` (m, d) implementing the operator contract (docs/CONTRACTS.md)."""

    name = "dense"
    linear = True
    has_transpose = True
    batch = 1

    def __init__(self, A: torch.Tensor, image_shape=SHAPE):
        self.A = A
        self.image_shape = tuple(image_shape)
        self.measurement_shape = (1, 1, A.shape[0])
        self.params = {}

    def forward(self, x):
        return (x.reshape(x.shape[0], -1) @ self.A.T.to(x)).reshape(x.shape[0], *self.measurement_shape)

    __call__ = forward

    def transpose(self, y, kind="adjoint"):
        return (y.reshape(y.shape[0], -1) @ self.A.to(y)).reshape(y.shape[0], *self.image_shape)

    def residual(self, x, y):
        return torch.linalg.vector_norm((y - self.forward(x)).reshape(x.shape[0], -1), dim=1)


class GaussianEps(nn.Module):
    """``GaussianPrior.eps`` as an eps-model module, so the prior can sit inside a ``LatentPrior``."""

    def __init__(self, gp: GaussianPrior):
        super().__init__()
        self.gp = gp

    def forward(self, x, t):
        return self.gp.eps(x, t)


def gaussian_problem(sigma_y: float = 0.1):
    """The fixed test problem: prior, latent twin, operator, y, posterior mean."""
    g = torch.Generator().manual_seed(0)
    d = math.prod(SHAPE)
    L = torch.randn(d, d, dtype=torch.float64, generator=g) * 0.4
    Sigma = L @ L.T + 0.05 * torch.eye(d, dtype=torch.float64)
    mu = torch.randn(d, dtype=torch.float64, generator=g) * 0.3
    schedule = VPSchedule.linear()
    prior = GaussianPrior(mu, Sigma, schedule, shape=SHAPE)
    A = torch.randn(2, d, dtype=torch.float64, generator=g)
    op = DenseOperator(A)
    evals, evecs = torch.linalg.eigh(Sigma)
    x_true = (mu + (evecs * evals.sqrt()) @ torch.tensor([1.5, -1.5, 1.5, 1.5], dtype=torch.float64)).reshape(1, *SHAPE)
    y = op.forward(x_true) + sigma_y * torch.randn(1, *op.measurement_shape, dtype=torch.float64, generator=g)
    post_mean, _ = prior.posterior(A, y, sigma_y)
    identity = Autoencoder(lambda x: x, lambda z: z, SHAPE, SHAPE)
    latent = LatentPrior(GaussianEps(prior), identity, schedule, name="gaussian-latent")
    return dict(prior=prior.to(DEVICE), latent=latent.to(DEVICE), op=op, y=y.to(DEVICE), x_true=x_true.to(DEVICE),
                mu=mu.to(DEVICE), post_mean=post_mean.to(DEVICE))


@pytest.fixture(scope="module")
def problem():
    return gaussian_problem()


def _batch(p, B, params, seeds=None):
    seeds = range(B) if seeds is None else seeds
    params = {k: v.to(DEVICE) if torch.is_tensor(v) else v for k, v in params.items()}
    return RowBatch(p["y"].expand(B, -1, -1, -1).clone(), p["op"], make_generators(seeds, DEVICE), params)


FAST_RESAMPLE = {"pixel_iters": 50, "latent_iters": 20, "plateau": 10}

CASES = {
    "dps": ("prior", {"step_size": 0.3}, {"clamp": False}, 0.15),
    "psld": ("latent", {"omega": 0.05, "gamma": 0.1}, {}, 0.2),
    "resample": ("latent", {}, FAST_RESAMPLE, 0.2),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_sample_mean_near_exact_posterior_mean(problem, name):
    """Reference: the closed-form Gaussian posterior mean (``GaussianPrior.posterior``).

    256 rows, 50 steps, float64; tolerance a fraction of the prior-to-posterior distance (module
    docstring). DPS's clamp is off: the Gaussian prior has mass outside [-1, 1].
    """
    prior_key, params, options, frac = CASES[name]
    B = 256
    out = solve(name, problem[prior_key], _batch(problem, B, params), 50, options=options)
    assert out.status == ["ok"] * B
    mean = out.x.reshape(B, -1).mean(0)
    dist = (problem["mu"] - problem["post_mean"]).norm()
    err = (mean - problem["post_mean"]).norm()
    assert err < frac * dist, f"{name}: |mean - posterior mean| = {err:.3f}, prior-to-posterior {dist:.3f}"
    assert out.extras["y_residual"].shape == (B,)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("kind", ["equi", "equicon"])
def test_row_alone_equals_row_in_batch(problem, name, kind):
    """Reference: the same row solved alone. A row's result must not depend on the other rows in
    its batch (other lambdas and seeds), float64, to 1e-5 (per-row norms, per-row generators)."""
    prior_key, params, options, _ = CASES[name]
    prior = problem[prior_key]
    f = lambda x: torch.tanh(x) * torch.linspace(0.5, 1.5, 4, dtype=x.dtype, device=x.device).view(1, 1, 2, 2)  # not equivariant
    spec = RegularizerSpec(kind=kind, mpe=f, group="hflip", schedule="constant")
    lams = torch.tensor([0.3, 0.0, 1.0, 0.05], dtype=torch.float64)
    seeds = [11, 12, 13, 14]
    steps = 12
    opts = {**options, "pixel_iters": 10, "latent_iters": 10} if name == "resample" else options
    full = solve(name, prior, _batch(problem, 4, {**params, "lam": lams}, seeds), steps, spec, opts)
    alone = solve(name, prior, _batch(problem, 1, {**params, "lam": lams[2:3]}, seeds[2:3]), steps, spec, opts)
    torch.testing.assert_close(full.x[2:3], alone.x, atol=1e-5, rtol=0)
    base = solve(name, prior, _batch(problem, 4, params, seeds), steps, None, opts)
    assert not torch.allclose(full.x[2], base.x[2]), "lam > 0 must change the result"


@pytest.mark.parametrize("name", sorted(CASES))
def test_lam_zero_is_the_baseline_exactly(problem, name):
    """Reference: the solver without a regularizer. ``lam = 0`` (all rows, or one row beside a
    row with lam > 0) gives bit-identical output: the penalty's group draws use their own stream."""
    prior_key, params, options, _ = CASES[name]
    prior = problem[prior_key]
    opts = {**options, "pixel_iters": 10, "latent_iters": 10} if name == "resample" else options
    spec = RegularizerSpec(kind="equicon", mpe=lambda x: 0.9 * x, group="hflip", schedule="constant")
    base = solve(name, prior, _batch(problem, 2, params), 10, None, opts)
    zero = solve(name, prior, _batch(problem, 2, {**params, "lam": 0.0}), 10, spec, opts)
    mixed = solve(name, prior, _batch(problem, 2, {**params, "lam": torch.tensor([0.0, 0.5])}), 10, spec, opts)
    assert torch.equal(base.x, zero.x)
    assert torch.equal(base.x[0], mixed.x[0])
    assert not torch.equal(base.x[1], mixed.x[1])


def test_psld_gluing_uses_the_selected_transpose(problem):
    """Reference: ``operator.transpose(y, kind)`` is what the gluing term sees; an operator whose
    official stand-in differs from its adjoint must give a different PSLD result."""

    class TwoTransposes(DenseOperator):
        def transpose(self, y, kind="adjoint"):
            out = super().transpose(y)
            return out if kind == "adjoint" else 2.0 * out

    op = TwoTransposes(problem["op"].A)
    params = {"omega": 0.05, "gamma": 0.5}
    runs = {}
    for kind in ("adjoint", "official"):
        batch = RowBatch(problem["y"].clone(), op, make_generators([3], DEVICE), params)
        runs[kind] = solve("psld", problem["latent"], batch, 10, options={"transpose": kind}).x
    assert not torch.allclose(runs["adjoint"], runs["official"])
