"""Posterior metrics: how far a set of samples of one measurement is from the exact posterior.

All take ``X`` (n, d) samples of one measurement (float64), the exact ``MixturePosterior`` and,
where needed, the prior mixture; each is 0 / 1 / nominal for exact samples up to finite-n noise,
which ``summary`` measures by scoring an exact sample set of the same size the same way (the
floor). Definitions:

- ``sliced_wasserstein``: ``SW_2(mu, nu) = ( E_theta W_2^2(theta#mu, theta#nu) )^{1/2}``, theta
  uniform on the unit sphere (Rabin, Peyre, Delon & Bernot, "Wasserstein barycenter and its
  application to texture mixing", SSVM 2011; Bonneel, Rabin, Peyre & Pfister, "Sliced and Radon
  Wasserstein barycenters of measures", JMIV 2015), estimated with ``L`` fixed random directions
  and the 1-D optimal coupling of sorted projections (quantile functions on a common grid when the
  sizes differ). MCGdiff (Cardoso, Janati El Idrissi, Le Corff & Moulines, "Monte Carlo guided
  diffusion for Bayesian linear inverse problems", ICLR 2024) scores samplers on Gaussian mixtures
  with it. Two exact sets of size n are at a positive distance: the floor.
- ``mean_error``: ``||mean(X) - E[x|y]|| / ||E[x] - E[x|y]||``: 0 on the posterior mean, 1 as far
  as the prior mean (the issue's "fraction of the way back to the prior").
- ``std_ratio``: geometric mean over pixels of ``sd(X_i) / sd(x_i | y)``: below 1 overconfident.
- ``mode_tv``: ``1/2 sum_k |mean_x r_k(x) - w'_k|`` with ``r_k`` the prior's responsibilities
  (``P(k | x, y) = P(k | x)``: the measurement adds nothing once x is known) and ``w'`` the exact
  posterior weights; for exact samples ``E[r_k(X)] = w'_k``, so the soft assignment is unbiased.
- ``coverage``: the central ``level`` interval of each pixel's samples, and the exact posterior
  mass it holds, averaged over pixels. This is the probability that the ground truth, which given
  ``y`` is a posterior draw, falls in the sampler's interval, computed exactly from the posterior
  marginals rather than from the single ground truth (same expectation, no extra noise); nominal
  for a calibrated sampler.
- ``mmse_gap`` (per sample): ``||x - E[x|y]||^2 / tr Cov[x|y]``: the estimate's excess posterior MSE
  over the MMSE, relative to it (``E||x - x_true||^2 = MMSE (1 + gap)``); 0 for the MMSE estimate,
  1 in expectation for an exact posterior sample.
"""
from __future__ import annotations

import math

import torch

from solvers.mixture.gmm import GaussianMixture
from solvers.mixture.posterior import MixturePosterior

__all__ = ["directions", "sliced_wasserstein", "mean_error", "std_ratio", "mode_tv", "coverage", "mmse_gap",
           "summary", "SET_NAMES", "POINT_NAMES", "LEVELS"]

LEVELS = (0.5, 0.9)
#: what ``summary`` returns for a sample set, and the subset that a point estimate supports
SET_NAMES = ("sw", "mean_err", "std_ratio", "mode_tv", "cov50", "cov90")
POINT_NAMES = ("mean_err",)


def directions(d: int, n: int = 256, seed: int = 0) -> torch.Tensor:
    """``n`` directions uniform on the unit sphere of R^d, (n, d), fixed by ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    theta = torch.randn(n, d, generator=g, dtype=torch.float64)
    return theta / theta.norm(dim=1, keepdim=True)


def _quantiles(sorted_proj: torch.Tensor, n: int) -> torch.Tensor:
    """The empirical quantile function of each column of ``sorted_proj`` (m, L) at ``n`` mid-levels."""
    m = sorted_proj.shape[0]
    if m == n:
        return sorted_proj
    idx = ((torch.arange(n, dtype=torch.float64) + 0.5) / n * m).floor().long().clamp(0, m - 1)
    return sorted_proj[idx]


def sliced_wasserstein(X: torch.Tensor, Y: torch.Tensor, theta: torch.Tensor | None = None) -> float:
    """``SW_2`` between the empirical laws of ``X`` (n, d) and ``Y`` (m, d) (module docstring)."""
    X, Y = X.to(torch.float64).reshape(X.shape[0], -1), Y.to(torch.float64).reshape(Y.shape[0], -1)
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"sample dimensions differ: {X.shape[1]} vs {Y.shape[1]}")
    theta = directions(X.shape[1]) if theta is None else theta.to(torch.float64)
    px, _ = (X @ theta.T).sort(0)
    py, _ = (Y @ theta.T).sort(0)
    n = max(px.shape[0], py.shape[0])
    w2 = ((_quantiles(px, n) - _quantiles(py, n)) ** 2).mean(0)  # (L,)
    return float(w2.mean().sqrt())


def mean_error(X: torch.Tensor, post: MixturePosterior) -> float:
    """``||mean(X) - E[x|y]|| / ||E[x] - E[x|y]||`` (NaN when y does not move the mean)."""
    m = post.mean()
    ref = float((post.prior_mean - m).norm())
    if ref < 1e-9 * math.sqrt(post.dim):
        return math.nan
    return float((X.mean(0) - m).norm()) / ref


def std_ratio(X: torch.Tensor, post: MixturePosterior) -> float:
    """Geometric mean over pixels of ``sd(X_i) / sd(x_i | y)`` (needs n >= 2; 0 if a pixel never varies)."""
    sd = X.std(0, unbiased=True)
    if bool((sd <= 0).any()):
        return 0.0
    return float((sd.log() - 0.5 * post.marginal_var().clamp_min(1e-300).log()).mean().exp())


def mode_tv(X: torch.Tensor, post: MixturePosterior, prior: GaussianMixture) -> float:
    """Total variation between the samples' mean responsibilities and the exact mode weights."""
    r = prior.to("cpu").responsibilities(X, 1.0).mean(0)
    return float(0.5 * (r - post.weights).abs().sum())


def coverage(X: torch.Tensor, post: MixturePosterior, level: float) -> float:
    """Mean over pixels of the exact posterior mass inside the samples' central ``level`` interval."""
    q = torch.tensor([(1 - level) / 2, (1 + level) / 2], dtype=torch.float64)
    lo, hi = torch.quantile(X, q, dim=0)
    return float(post.interval_mass(lo, hi).mean())


def mmse_gap(X: torch.Tensor, post: MixturePosterior) -> torch.Tensor:
    """Per sample ``||x - E[x|y]||^2 / tr Cov[x|y]``, (n,)."""
    return ((X - post.mean()) ** 2).sum(1) / post.trace_cov()


def summary(X: torch.Tensor, post: MixturePosterior, prior: GaussianMixture, reference: torch.Tensor,
            theta: torch.Tensor | None = None, point: bool = False) -> dict[str, float]:
    """Every set metric of ``X`` (n, d) against ``post``; ``reference`` (n', d) exact draws for SW.

    ``point``: ``X`` are copies of one point estimate (a classical baseline): only the mean
    metrics (``POINT_NAMES``) are meaningful, the others are NaN.
    """
    X = X.to(torch.float64).reshape(X.shape[0], -1)
    out = {name: math.nan for name in SET_NAMES}
    out["mean_err"] = mean_error(X, post)
    if point or X.shape[0] < 2:
        return out
    out["sw"] = sliced_wasserstein(X, reference, theta)
    out["std_ratio"] = std_ratio(X, post)
    out["mode_tv"] = mode_tv(X, post, prior)
    for level in LEVELS:
        out[f"cov{int(round(level * 100))}"] = coverage(X, post, level)
    return out
