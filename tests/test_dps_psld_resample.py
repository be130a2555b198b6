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

import pytest
import torch

from solvers import RegularizerSpec, RowBatch, solve
from solvers.rng import make_generators
from tests.support.gaussian import DEVICE, DenseOperator, gaussian_problem

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


def _glue(op, y, x0, **options):
    from types import SimpleNamespace

    from solvers.psld import DEFAULTS, glue_point
    return glue_point(SimpleNamespace(operator=op, y=y, options={**DEFAULTS, **options}), x0)


def test_psld_pseudo_inverse_gluing_is_measurement_consistent():
    """Reference: the definition of the pseudo-inverse, ``A A^+ = I`` for a full-row-rank ``A``, so
    the gluing point ``x0 + A^+ (y - A x0)`` satisfies ``A x = y`` for any ``x0``. Checked for three
    non-orthogonal operators (``A A^T != I``): bicubic x2 SR (closed-form ``pseudo_inverse``), a
    Gaussian blur (no closed form: conjugate gradients, ``operators.cg_pseudo_inverse``) and a dense
    2 x 4 matrix (CG); the official adjoint gluing point is *not* consistent there (PSLD docstring)."""
    from operators import build_operator

    g = torch.Generator().manual_seed(4)
    ops = [build_operator("super_resolution", (1, 8, 8), 0, factor=2),
           build_operator("gaussian_blur", (1, 8, 8), 0, kernel_size=5, std=0.6),
           DenseOperator(torch.randn(2, 4, generator=g, dtype=torch.float64))]
    for op in ops:
        x0 = torch.randn(2, *op.image_shape, generator=g, dtype=torch.float64)
        y = op.forward(torch.randn(2, *op.image_shape, generator=g, dtype=torch.float64))
        AAt = op.forward(op.transpose(y))
        assert not torch.allclose(AAt, y, atol=1e-3), f"{op.name}: A A^T = I, not a useful case"
        glued = _glue(op, y, x0, gluing="pseudo_inverse", pinv_iters=200)
        torch.testing.assert_close(op.forward(glued), y, atol=1e-8, rtol=0, msg=f"{op.name}: A(glue) != y")
        adjoint = _glue(op, y, x0, gluing="adjoint")
        assert not torch.allclose(op.forward(adjoint), y, atol=1e-3), f"{op.name}: adjoint gluing consistent?"


def test_cg_pseudo_inverse_gradient_and_psld_gluing_option(problem):
    """Reference: ``torch.autograd.gradcheck`` (finite differences) for the CG pseudo-inverse's
    custom backward (``(A A^T)^-1`` is symmetric, so its VJP is another solve); PSLD accepts
    ``gluing`` ``adjoint`` | ``pseudo_inverse`` only, the latter changes the result on a
    non-orthogonal ``A`` and refuses the official transpose stand-in."""
    from operators import cg_pseudo_inverse

    op = problem["op"]
    yy = torch.randn(2, *op.measurement_shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: cg_pseudo_inverse(op, v, 20), (yy,))
    params = {"omega": 0.05, "gamma": 0.5}
    runs = {}
    for kind in ("adjoint", "pseudo_inverse"):
        batch = RowBatch(problem["y"].clone(), op, make_generators([3], DEVICE), params)
        runs[kind] = solve("psld", problem["latent"], batch, 6, options={"gluing": kind}).x
    assert not torch.allclose(runs["adjoint"], runs["pseudo_inverse"])
    for bad in ({"gluing": "pinv"}, {"gluing": "pseudo_inverse", "transpose": "official"}, {"pinv_iters": 0}):
        with pytest.raises(ValueError, match="gluing|pinv_iters"):
            solve("psld", problem["latent"], RowBatch(problem["y"].clone(), op, make_generators([3], DEVICE), params),
                  2, options=bad)
