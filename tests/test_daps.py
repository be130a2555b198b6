"""DAPS / LatentDAPS (solvers/daps.py) against exact references on a Gaussian prior.

The problem: ``x0 ~ N(mu, Sigma)`` in d = 4 (shape (1, 2, 2)), ``y = A x0 + sigma_y n`` with a
dense 2 x 4 ``A`` and ``sigma_y = 0.2``. Two exact references:

1. the **posterior** ``N(m_post, C_post)`` (``GaussianPrior.posterior``);
2. the **exact law of the discretized algorithm**: on a Gaussian prior the denoiser is affine, so
   every piece of DAPS (Karras levels, Euler PF-ODE, K Langevin / damped-HMC steps with the linear
   lr decay, re-noising) is an affine map plus Gaussian noise; ``daps_law``
   (tests/support/daps_law.py) propagates the mean and covariance through them in closed form
   (written from the algorithm's definition in SPEC/the DAPS repo, independently of solvers/daps.py).

Reference 2 checks the implementation to sampling precision; reference 1 checks the method. DAPS is
not exact even here: it replaces ``p(x0 | x_t)`` by ``N(x0_hat, sigma_t^2 I)`` while the true
conditional covariance is ``Sigma (Sigma + sigma_t^2 I)^-1 sigma_t^2`` (smaller), so its law sits a
finite distance from the posterior that shrinks only slowly with the number of levels (the closed
form gives, for the Tweedie centre, mean Mahalanobis 0.34 / covariance error 14% at N = 50 and
0.17 / 6% at N = 200 with the MCMC step run to equilibrium). The posterior tolerances below are
that distance for the settings used plus sampling slack, and are stated per test.

The official data term ``-grad ||A x - y||^2 / tau^2`` has no factor 1/2, so its likelihood has
std ``tau / sqrt(2)``; the tests use ``tau = sqrt(2) sigma_y`` so that DAPS targets exactly the
posterior of ``y = A x0 + sigma_y n``.
"""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from solvers import RegularizerSpec, RowBatch, solve
from solvers.daps import TASK_DEFAULTS, MCMCSettings, task_settings
from solvers.priors import Autoencoder, GaussianPrior, VPSchedule
from solvers.rng import make_generators
from tests.support.daps_law import check_against_law, cov_rel, daps_law, mahalanobis, mean_cov
from tests.support.gaussian import DEVICE, DT, SHAPE, DenseOperator

D, M_OBS = 4, 2
SIGMA_Y = 0.2
TAU = math.sqrt(2) * SIGMA_Y
#: the dense test operator is not a DAPS task: these tests name the one whose settings they use
TASK = "down_sampling"


def _dense_op(A):
    return DenseOperator(A, name="dense_test")


# ----------------------------------------------------------------------------- fixtures
pytestmark = pytest.mark.usefixtures("one_thread")


class IdentityLatentGaussian(GaussianPrior):
    """The Gaussian prior seen as a latent prior whose autoencoder is the identity."""

    space = "latent"

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        ident = lambda t: t  # noqa: E731
        self.autoencoder = Autoencoder(ident, ident, self.shape, self.shape)

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def problem():
    """(mu, Sigma, A, y, m_post, C_post), fixed by seed."""
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=DT))
    evals = torch.tensor([0.6, 0.3, 0.15, 0.08], dtype=DT)
    Sigma = Q @ torch.diag(evals) @ Q.T
    mu = torch.tensor([0.2, -0.1, 0.3, 0.0], dtype=DT)
    A = torch.randn(M_OBS, D, generator=g, dtype=DT) / math.sqrt(D)
    x_true = mu + Q @ (evals.sqrt() * torch.randn(D, generator=g, dtype=DT))
    y = A @ x_true + SIGMA_Y * torch.randn(M_OBS, generator=g, dtype=DT)
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    m_post, C_post = prior.posterior(A, y, SIGMA_Y)
    return mu, Sigma, A, y, m_post, C_post


# ----------------------------------------------------------------------------- helpers
def run(solver, prior, A, y, n_rows, *, num_steps, options, step_size, seed0=0, lam=None, reg=None):
    options = {"task": TASK, **options}
    op = _dense_op(A).to(DEVICE)
    Y = y.to(DEVICE).reshape(1, *op.measurement_shape).expand(n_rows, -1, -1, -1).clone()
    params = {"step_size": torch.as_tensor(step_size, dtype=DT).expand(n_rows).clone().to(DEVICE)}
    if lam is not None:
        params["lam"] = torch.as_tensor(lam, dtype=DT).expand(n_rows).clone().to(DEVICE)
    batch = RowBatch(y=Y, operator=op, generators=make_generators(range(seed0, seed0 + n_rows), DEVICE), params=params)
    return solve(solver, prior.to(DEVICE), batch, num_steps=num_steps, regularizer=reg, options=options)


# ----------------------------------------------------------------------------- tests
def test_daps_matches_exact_law_of_discretization():
    """Reference: the closed-form law of the discretized algorithm (``daps_law``).

    Pixel DAPS on its default path -- Euler PF-ODE centre (M = 5 steps to 0.01), Langevin with a
    linear lr decay (lr_min_ratio 0.3) -- and the official grid indexing (N+1 Karras points with the
    last dropped, ``r_k = k / (N+1)``); N = 8, K = 40, lr 4e-3, sigma 10 -> 0.15. 3000 rows; the
    bounds are sampling bounds only (see ``check_against_law``). The settings make the MCMC move
    (lr K / sigma_min^2 ~ 7): in closed form, halving lr, doubling tau^2, 1.5x lr_min_ratio, the
    endpoints grid or the Tweedie centre shift the law by 895, 1496, 26, 20 and 213 in
    n * Mahalanobis^2 (bound 18.5); the covariance bound catches a sqrt(lr) instead of
    sqrt(2 lr) Langevin noise, or re-noising with sigma_k instead of sigma_{k+1}.
    """
    mu, Sigma, A, y, _, _ = problem()
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    cfg = dict(N=8, K=40, lr=4e-3, smax=10.0, smin=0.15, ode_steps=5, ode_min=0.01, lr_min_ratio=0.3)
    opts = {"sigma_max": cfg["smax"], "sigma_min": cfg["smin"], "ode_steps": cfg["ode_steps"],
            "ode_sigma_min": cfg["ode_min"], "mcmc_steps": cfg["K"], "lr_min_ratio": cfg["lr_min_ratio"],
            "tau": TAU, "mc_algo": "langevin", "grid": "official"}
    n = 3000
    out = run("daps", prior, A, y, n, num_steps=cfg["N"], options=opts, step_size=cfg["lr"])
    assert out.status == ["ok"] * n
    m, C = mean_cov(out)
    law_m, law_C = daps_law(mu, Sigma, A, y, tau=TAU, grid="official", **cfg)
    check_against_law(m, C, n, law_m, law_C, "daps/langevin/ode")


def test_daps_near_exact_posterior():
    """Reference: the exact posterior (and, tightly, the algorithm's exact law for these settings).

    Settings: N = 50 levels 10 -> 0.1, K = 50 Langevin steps, lr 2e-3 (constant), Tweedie centre
    (``ode_steps=0``). The closed form puts this configuration's law at mean Mahalanobis 0.37 and
    covariance error ||C - C_post||_F / ||C_post||_F = 0.12 from the posterior; with 2000 rows the
    sampling error adds about 0.05 to each; along the posterior's eigenvectors (variances 0.007,
    0.039, 0.20, 0.40) the law's variances are 1.20, 1.07, 1.14, 1.11 times the posterior's.
    Tolerances: mean Mahalanobis (in posterior standard deviations) < 0.5, covariance relative
    error < 0.2, every posterior variance along its eigenvectors within 35%.

    Why the Tweedie centre here: with the official ODE centre the Gaussian approximation
    ``N(x0_hat, sigma^2)`` double counts the prior spread once the MCMC mixes (the ODE already maps
    ``x_t`` to a prior-distributed point), so its law does not approach the posterior as N grows
    (closed form: covariance error ~100% in the limit); the official small lr hides this by barely
    moving x0 along prior-only directions. The ODE path is checked against its own exact law above.
    """
    mu, Sigma, A, y, m_post, C_post = problem()
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    cfg = dict(N=50, K=50, lr=2e-3, smax=10.0, smin=0.1, ode_steps=0, ode_min=0.01)
    opts = {"sigma_max": 10.0, "sigma_min": 0.1, "ode_steps": 0, "mcmc_steps": 50, "lr_min_ratio": 1.0,
            "tau": TAU, "mc_algo": "langevin"}
    n = 2000
    out = run("daps", prior, A, y, n, num_steps=50, options=opts, step_size=2e-3, seed0=10_000)
    m, C = mean_cov(out)
    law_m, law_C = daps_law(mu, Sigma, A, y, tau=TAU, **cfg)
    check_against_law(m, C, n, law_m, law_C, "daps/langevin/tweedie")
    assert mahalanobis(m, m_post, C_post) < 0.5
    assert cov_rel(C, C_post) < 0.2
    evals, evecs = torch.linalg.eigh(C_post)
    ratio = torch.einsum("ij,jk,ki->i", evecs.T, C, evecs) / evals
    assert bool(((ratio - 1).abs() < 0.35).all()), f"posterior variances off: ratios {ratio.tolist()}"


def test_latent_daps_identity_autoencoder_posterior_mean():
    """Reference: the exact posterior mean (and the exact law with the clamp off).

    LatentDAPS with an identity autoencoder on the same problem, its default path: Euler ODE centre
    (M = 2 steps to 0.001), damped HMC (momentum 0.9), data gradient clamped to [-1, 1]; N = 50
    levels 10 -> 0.1, K = 20, lr 1e-3. The closed form (clamp off) puts the law at mean
    Mahalanobis 0.26 and covariance error 0.21 from the posterior. Tolerance on the mean: < 0.45
    posterior standard deviations (1500 rows; the clamp is active at the high levels only, which
    the low levels forget). A second run with ``data_grad_clip=None`` must match the exact law to
    sampling precision.
    """
    mu, Sigma, A, y, m_post, C_post = problem()
    prior = IdentityLatentGaussian(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    cfg = dict(N=50, K=20, lr=1e-3, smax=10.0, smin=0.1, ode_steps=2, ode_min=0.001, algo="hmc", momentum=0.9)
    opts = {"sigma_max": 10.0, "sigma_min": 0.1, "mcmc_steps": 20, "lr_min_ratio": 1.0, "momentum": 0.9,
            "tau": TAU}
    n = 1500
    out = run("latent_daps", prior, A, y, n, num_steps=50, options=opts, step_size=1e-3, seed0=20_000)
    assert out.status == ["ok"] * n
    m, _ = mean_cov(out)
    assert mahalanobis(m, m_post, C_post) < 0.45

    out2 = run("latent_daps", prior, A, y, n, num_steps=50, options={**opts, "data_grad_clip": None},
               step_size=1e-3, seed0=30_000)
    m2, C2 = mean_cov(out2)
    law_m, law_C = daps_law(mu, Sigma, A, y, tau=TAU, **cfg)
    check_against_law(m2, C2, n, law_m, law_C, "latent_daps/hmc/ode")


def _equi_spec():
    w = torch.tensor([[[1.0, 0.5], [0.8, 1.3]]], dtype=DT)  # a non-equivariant (under hflip) map
    return RegularizerSpec(kind="equi", mpe=lambda x: x * w.to(x) + 0.3 * x ** 2, group="hflip",
                           reduction="norm", schedule="constant")


@pytest.mark.parametrize("solver", ["daps", "latent_daps"])
def test_batch_invariance(solver):
    """Reference: the same row run alone. Row 1 of a 3-row batch whose rows have different step
    sizes and lambdas (EquiReg on) equals that row run by itself, float64, to 1e-5."""
    mu, Sigma, A, y, _, _ = problem()
    cls = GaussianPrior if solver == "daps" else IdentityLatentGaussian
    prior = cls(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    opts = {"sigma_max": 10.0, "mcmc_steps": 6, "tau": TAU, "task": TASK}
    prior = prior.to(DEVICE)
    op = _dense_op(A).to(DEVICE)
    Y = y.to(DEVICE).reshape(1, *op.measurement_shape).expand(3, -1, -1, -1).clone()
    seeds = [11, 22, 33]
    params = {"step_size": torch.tensor([1e-3, 2e-3, 5e-4], dtype=DT, device=DEVICE),
              "lam": torch.tensor([0.0, 0.5, 2.0], dtype=DT, device=DEVICE)}
    full = solve(solver, prior, RowBatch(Y, op, make_generators(seeds, DEVICE), params), num_steps=6,
                 regularizer=_equi_spec(), options=opts)
    alone = solve(solver, prior, RowBatch(Y[1:2], op, make_generators(seeds[1:2], DEVICE),
                                          {k: v[1:2] for k, v in params.items()}),
                  num_steps=6, regularizer=_equi_spec(), options=opts)
    assert torch.allclose(full.x[1:2], alone.x, atol=1e-5, rtol=0)
    assert not torch.allclose(full.x[0], full.x[1])


@pytest.mark.parametrize("solver", ["daps", "latent_daps"])
def test_lam_zero_equals_baseline(solver):
    """Reference: the baseline (no regularizer). EquiReg with lam = 0 on every row reproduces it
    bit for bit; in a mixed batch the lam = 0 row is bit-identical to its baseline and a row with a
    large lambda ends with a smaller equivariance error than its baseline."""
    mu, Sigma, A, y, _, _ = problem()
    cls = GaussianPrior if solver == "daps" else IdentityLatentGaussian
    prior = cls(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    opts = {"sigma_max": 10.0, "mcmc_steps": 8, "tau": TAU, "reg_attach": "drift"}
    kw = dict(num_steps=6, options=opts, step_size=1e-3)
    base = run(solver, prior, A, y, 2, **kw)
    zero = run(solver, prior, A, y, 2, lam=0.0, reg=_equi_spec(), **kw)
    assert torch.equal(base.x, zero.x)
    mixed = run(solver, prior, A, y, 2, lam=torch.tensor([0.0, 50.0], dtype=DT), reg=_equi_spec(), **kw)
    assert torch.equal(mixed.x[0], base.x[0])
    mixed.x, base.x = mixed.x.cpu(), base.x.cpu()
    spec = _equi_spec()
    f = spec.mpe
    def equi_err(x):  # hflip, the group's only non-identity element
        return float((f(x).flip(-1) - f(x.flip(-1))).norm())
    assert equi_err(mixed.x[1:2]) < equi_err(base.x[1:2])


def test_task_defaults_and_validation():
    """Reference: the DAPS repo's configs/task/*.yaml (spot checks) and the option checks."""
    op = _dense_op(torch.eye(D, dtype=DT)[:M_OBS])
    pix = {"config_set": "pixel", "task": None}
    for name, lr in [("box_inpainting", 5e-5), ("random_inpainting", 1e-4), ("gaussian_blur", 1e-4),
                     ("motion_blur", 5e-5), ("super_resolution", 1e-4), ("phase_retrieval", 5e-5),
                     ("hdr", 2e-5), ("nonlinear_blur", 1e-5)]:
        st = task_settings({**pix, "task": name}, op)
        assert st.step_size == lr and st.mc_algo == "langevin"
    assert task_settings({**pix, "task": "nonlinear_blur"}, op).mcmc_steps == 200
    ldm = task_settings({"config_set": "ldm", "task": "gaussian_blur"}, op)
    assert (ldm.mcmc_steps, ldm.step_size, ldm.lr_min_ratio, ldm.momentum) == (35, 2.7e-6, 0.95, 0.95)
    assert task_settings({"config_set": "ldm", "task": TASK, "momentum": 0.5}, op).momentum == 0.5
    assert set(TASK_DEFAULTS) == {"pixel", "pixel_hmc", "ldm", "sd"}

    mu, Sigma, A, y, _, _ = problem()
    prior = GaussianPrior(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    for bad in [{"task": "nope"}, {"config_set": "ldm"}, {"sigma_min": 0.005}, {"grid": "x"},
                {"mc_algo": "mh"}, {"momentum": 1.0}, {"reg_attach": "x"}, {"ode_steps": -1}, {"unknown": 1}]:
        with pytest.raises(ValueError):
            run("daps", prior, A, y, 1, num_steps=2, options=bad, step_size=1e-3)
    with pytest.raises(ValueError):
        run("daps", prior, A, y, 1, num_steps=2, options={}, step_size=0.0)
    with pytest.raises(ValueError):  # a pixel prior is refused by the latent solver
        run("latent_daps", prior, A, y, 1, num_steps=2, options={}, step_size=1e-3)


def test_task_settings_are_one_object_per_task():
    """Reference: the DAPS repo's per-task configs (``configs/task/*.yaml``), one object per task
    (issue 12, section 5). An override replaces only its own field of the task's own object (SR's
    lr override keeps SR's decay and momentum, not blur's), the objects are frozen, and a task that
    is not a DAPS task raises a ValueError naming the allowed ones instead of falling back."""
    op = _dense_op(torch.eye(D, dtype=DT)[:M_OBS])
    sr = TASK_DEFAULTS["ldm"]["down_sampling"]
    assert isinstance(sr, MCMCSettings)
    got = task_settings({"config_set": "ldm", "task": "super_resolution", "step_size": 2.7e-6}, op)
    assert got == dataclasses.replace(sr, step_size=2.7e-6)
    assert (got.lr_min_ratio, got.momentum) == (0.023, 0.86)  # SR's own, not blur's 0.95 / 0.95
    got = task_settings({"config_set": "ldm", "task": "gaussian_blur", "lr_min_ratio": 0.5}, op)
    assert got == dataclasses.replace(TASK_DEFAULTS["ldm"]["gaussian_blur"], lr_min_ratio=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sr.step_size = 1.0
    for opts in ({"config_set": "ldm", "task": None}, {"config_set": "pixel", "task": "deblur9"}):
        with pytest.raises(ValueError, match="allowed: .*super_resolution"):
            task_settings(opts, op)  # the operator is named 'dense_test'
    sr_op = DenseOperator(torch.eye(D, dtype=DT)[:M_OBS], name="super_resolution")
    assert task_settings({"config_set": "ldm", "task": None}, sr_op) == sr

    mu, Sigma, A, y, _, _ = problem()
    prior = IdentityLatentGaussian(mu, Sigma, VPSchedule.linear(), shape=SHAPE)
    with pytest.raises(ValueError, match="unknown DAPS task"):  # refused before compute, no fallback
        run("latent_daps", prior, A, y, 1, num_steps=2, options={"task": None}, step_size=1e-3)
    kw = dict(num_steps=3, step_size=1e-3, seed0=5)
    blur = TASK_DEFAULTS["ldm"]["gaussian_blur"]
    own = run("latent_daps", prior, A, y, 2, options={"task": "gaussian_blur", "mcmc_steps": 3}, **kw).x
    spelled = run("latent_daps", prior, A, y, 2, options={"task": "gaussian_blur", "mcmc_steps": 3,
                                                          "lr_min_ratio": blur.lr_min_ratio,
                                                          "momentum": blur.momentum}, **kw).x
    mixed = run("latent_daps", prior, A, y, 2, options={"task": "gaussian_blur", "mcmc_steps": 3,
                                                        "lr_min_ratio": sr.lr_min_ratio,
                                                        "momentum": sr.momentum}, **kw).x
    assert torch.equal(own, spelled) and not torch.allclose(own, mixed)
