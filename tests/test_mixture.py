"""The exact-posterior world (issue 19): exact score, exact posterior, posterior metrics.

Every check is against an independent computation: the score against finite differences of the
mixture's log density, the posterior against importance sampling from the prior, sliced
Wasserstein against its closed form for isotropic Gaussians, coverage of exact posterior samples
against the nominal level. All run in a few seconds on one core.
"""
from __future__ import annotations

import math

import pytest
import torch

import operators as O
from solvers.mixture import metrics as M
from solvers.mixture.gmm import GaussianMixture
from solvers.mixture.posterior import operator_matrix, posterior
from solvers.mixture.presets import WorldSpec
from solvers.mixture.prior import LatentMixturePrior, LinearAutoencoder, MixturePrior
from solvers.mixture.world import build, world
from solvers.priors import GaussianPrior, VPSchedule


@pytest.fixture(scope="module")
def tiny():
    """A 1x4x4 world: 4 components in hflip orbits, rank 1 (d = 16: importance sampling is easy)."""
    return build(WorldSpec("tiny", size=4, components=4, rank=1, mean_rms=0.5, factor_rms=0.3, iso_std=0.2, smooth=0.8, seed=3))


def test_world_is_group_invariant_and_autoencoder_orthogonal():
    w = world("mog8")
    mix = w.mixture
    group = O.build_group("hflip", sample="all")
    means = mix.means.reshape(-1, *w.shape)
    flipped = group.act(means, 1).reshape(mix.K, -1)
    # every flipped mean is a mean of the mixture, with the same weight
    d = torch.cdist(flipped, mix.means)
    j = d.argmin(1)
    assert torch.allclose(d.min(1).values, torch.zeros(mix.K, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(mix.weights[j], mix.weights)
    D = w.decoder
    assert torch.allclose(D.T @ D, torch.eye(mix.dim, dtype=torch.float64), atol=1e-12)
    # equivariant on the manifold span, not off it
    on = (w.manifold @ torch.randn(w.manifold.shape[1], 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))).T
    off = torch.randn(3, mix.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ae = LinearAutoencoder(D, w.shape)
    for x, equal in ((on, True), (off, False)):
        img = x.reshape(-1, *w.shape)
        gap = (group.act(ae.decode(img), 1) - ae.decode(group.act(img, 1))).abs().max()
        assert (float(gap) < 1e-10) == equal


@pytest.mark.parametrize("a", [0.999, 0.5, 0.02])
def test_exact_eps_matches_finite_difference_score(tiny, a):
    mix = tiny.mixture
    x = torch.randn(5, mix.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 0.8
    h = 1e-5
    fd = torch.zeros_like(x)
    for i in range(mix.dim):
        e = torch.zeros(mix.dim, dtype=torch.float64)
        e[i] = h
        fd[:, i] = (mix.log_prob(x + e, a) - mix.log_prob(x - e, a)) / (2 * h)
    assert torch.allclose(mix.score(x, a), fd, atol=1e-7, rtol=1e-6)
    assert torch.allclose(mix.eps(x, a), -math.sqrt(1 - a) * fd, atol=1e-7, rtol=1e-6)


def test_prior_eps_through_the_schedule_and_single_gaussian():
    # one component: the mixture prior must equal the closed-form GaussianPrior at every timestep
    g = torch.Generator().manual_seed(4)
    d, r = 6, 2
    U, _ = torch.linalg.qr(torch.randn(d, r, dtype=torch.float64, generator=g))
    mu = torch.randn(1, d, dtype=torch.float64, generator=g)
    lam, s2 = torch.tensor([[0.7, 0.2]], dtype=torch.float64), torch.tensor([0.05], dtype=torch.float64)
    mix = GaussianMixture(torch.ones(1, dtype=torch.float64), mu, U[None], lam, s2, (1, 2, 3))
    sched = VPSchedule.linear(1000)
    ref = GaussianPrior(mu[0], mix.covariances()[0], sched, shape=(1, 2, 3))
    prior = MixturePrior(mix, sched)
    x = torch.randn(4, 1, 2, 3, dtype=torch.float64, generator=g)
    t = torch.tensor([0, 10, 400, 999])
    assert torch.allclose(prior.eps(x, t), ref.eps(x, t), atol=1e-10)
    # fractional timesteps (DAPS's denoise) go through the same schedule
    assert torch.allclose(prior.denoise(x, torch.tensor([0.05, 0.5, 5.0, 50.0])), ref.denoise(x, torch.tensor([0.05, 0.5, 5.0, 50.0])), atol=1e-9)


def test_latent_prior_is_the_pushforward(tiny):
    ae = LinearAutoencoder(tiny.decoder, tiny.shape)
    latent = LatentMixturePrior(tiny.latent, ae)
    x = torch.randn(7, *tiny.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    z = latent.encode(x)
    assert torch.allclose(latent.decode(z), x, atol=1e-12)
    # orthogonal map: densities agree (|det| = 1)
    assert torch.allclose(latent.log_prob(z), MixturePrior(tiny.mixture).log_prob(x), atol=1e-10)


def test_exact_posterior_matches_importance_sampling(tiny):
    mix = tiny.mixture
    op = O.build_operator("random_inpainting", tiny.shape, seeds=[1], p=0.75)
    A = operator_matrix(op, tiny.shape)
    x = torch.randn(2, *tiny.shape, dtype=torch.float64)
    assert torch.allclose(op.forward(x).reshape(2, -1), x.reshape(2, -1) @ A.T)
    g = torch.Generator().manual_seed(6)
    x_true, _ = mix.sample(1, g)
    sigma = 0.5
    y = A @ x_true[0] + sigma * torch.randn(A.shape[0], dtype=torch.float64, generator=g)
    post = posterior(mix, A, y, sigma)
    n = 400_000
    xs, ks = mix.sample(n, g)
    logw = -0.5 * ((xs @ A.T - y) ** 2).sum(1) / sigma ** 2
    w = torch.softmax(logw, 0)
    ess = 1 / float((w ** 2).sum())
    assert ess > 5_000
    mean_is = w @ xs
    cov_is = (xs - mean_is).T @ ((xs - mean_is) * w[:, None])
    weights_is = torch.zeros(mix.K, dtype=torch.float64).index_add_(0, ks, w)
    exact_cov = post.covs.new_zeros(mix.dim, mix.dim)
    m = post.mean()
    for k in range(mix.K):
        dm = post.means[k] - m
        exact_cov += post.weights[k] * (post.covs[k] + torch.outer(dm, dm))
    se = (post.marginal_var() / ess).sqrt()
    assert float(((mean_is - m).abs() / se).max()) < 5
    assert torch.allclose(cov_is, exact_cov, atol=0.02)
    assert torch.allclose(weights_is, post.weights, atol=0.02)
    assert torch.allclose(torch.diagonal(exact_cov), post.marginal_var(), atol=1e-12)


def test_sliced_wasserstein_on_two_isotropic_gaussians():
    """Reference: theta#N(m, s^2 I) = N(theta.m, s^2), so per direction W2^2 = (theta.dm)^2 + (s1 - s2)^2
    exactly; the expectation is taken over the same directions the metric uses (only sampling error left)."""
    d, n = 8, 8_000
    g = torch.Generator().manual_seed(7)
    dm = torch.tensor([1.0, -0.5, 0.0, 2.0, 0.0, 0.3, 0.0, 0.0], dtype=torch.float64)
    s1, s2 = 1.0, 0.6
    X = torch.randn(n, d, dtype=torch.float64, generator=g) * s1
    Y = dm + torch.randn(n, d, dtype=torch.float64, generator=g) * s2
    theta = M.directions(d, 256, seed=1)
    expected = math.sqrt(float(((theta @ dm) ** 2).mean()) + (s1 - s2) ** 2)
    assert M.sliced_wasserstein(X, Y, theta) == pytest.approx(expected, rel=0.03)
    assert M.sliced_wasserstein(X, Y, theta) == pytest.approx(M.sliced_wasserstein(Y, X, theta), rel=1e-12)
    assert M.sliced_wasserstein(X, X, theta) == 0.0
    # unequal sizes go through the quantile functions
    assert M.sliced_wasserstein(X[:2000], Y, theta) == pytest.approx(expected, rel=0.05)
    # the spread counts too: Y's std tripled (0.6 -> 1.8) gives its own exact value
    wide = math.sqrt(float(((theta @ dm) ** 2).mean()) + (s1 - 3 * s2) ** 2)
    assert M.sliced_wasserstein(X, dm + (Y - dm) * 3, theta) == pytest.approx(wide, rel=0.03)


def test_exact_posterior_samples_are_calibrated():
    w = world("mog8")
    op = O.build_operator("random_inpainting", w.shape, seeds=[2], p=0.9)
    A = operator_matrix(op, w.shape)
    g = torch.Generator().manual_seed(8)
    x_true, _ = w.mixture.sample(1, g)
    y = A @ x_true[0] + 0.3 * torch.randn(A.shape[0], dtype=torch.float64, generator=g)
    post = posterior(w.mixture, A, y, 0.3)
    X, _ = post.sample(20_000, g)
    for level in M.LEVELS:
        assert M.coverage(X, post, level) == pytest.approx(level, abs=0.01)
    assert M.std_ratio(X, post) == pytest.approx(1.0, abs=0.02)
    assert M.mode_tv(X, post, w.mixture) < 0.02
    assert M.mean_error(X, post) < 0.05
    assert float(M.mmse_gap(X, post).mean()) == pytest.approx(1.0, abs=0.03)
    assert float(M.mmse_gap(post.mean()[None], post)) == 0.0
    # a point estimate (the posterior mean) covers nothing and has mean error 0
    point = post.mean().expand(100, -1)
    s = M.summary(point, post, w.mixture, X[:100], point=True)
    assert s["mean_err"] < 1e-12 and math.isnan(s["sw"])
    # an overconfident sampler: every sample the posterior mean plus a tenth of its spread
    shrunk = post.mean() + 0.1 * (X[:2000] - post.mean())
    assert M.coverage(shrunk, post, 0.9) < 0.5 and M.std_ratio(shrunk, post) < 0.2


def test_nonlinear_operator_is_refused():
    w = world("mog8")
    op = O.build_operator("hdr", w.shape, seeds=[0])
    with pytest.raises(ValueError, match="linear"):
        operator_matrix(op, w.shape)
    with pytest.raises(ValueError, match="sigma_y"):
        posterior(w.mixture, torch.eye(w.mixture.dim, dtype=torch.float64), torch.zeros(w.mixture.dim), 0.0)
