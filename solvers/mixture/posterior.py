"""The exact posterior of a Gaussian-mixture prior under a linear operator with Gaussian noise.

For ``y = A x + sigma_y n`` and ``x ~ sum_k w_k N(mu_k, Sigma_k)`` the posterior is again a mixture
(e.g. Bishop, PRML, eq. 2.113-2.117 per component; used as ground truth for diffusion posterior
samplers by MCGdiff, Cardoso et al., ICLR 2024):

    G_k  = A Sigma_k A^T + sigma_y^2 I
    K_k  = Sigma_k A^T G_k^{-1}
    m_k  = mu_k + K_k (y - A mu_k),          S_k = Sigma_k - K_k A Sigma_k
    w'_k ∝ w_k N(y; A mu_k, G_k)

``operator_matrix`` writes any linear operator of the registry as its dense (m, d) matrix by
applying it to the standard basis (d <= 768 here), after checking it is linear and has no offset.
Everything is float64 on the CPU. The posterior's per-pixel marginals are 1-D mixtures, so its
mean, variance and the posterior mass of any per-pixel interval are exact (``interval_mass``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from solvers.mixture.gmm import GaussianMixture

__all__ = ["operator_matrix", "MixturePosterior", "posterior", "world_posterior"]


def operator_matrix(operator, shape) -> torch.Tensor:
    """The dense (m, d) float64 matrix of a linear operator of batch 1 on images of ``shape``."""
    if not getattr(operator, "linear", False):
        raise ValueError(f"the exact posterior needs a linear operator; {getattr(operator, 'name', operator)!r} is not")
    if getattr(operator, "batch", 1) != 1:
        raise ValueError(f"operator_matrix needs an operator of batch 1, got batch {operator.batch}")
    d = math.prod(shape)
    with torch.no_grad():
        basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
        cols = operator.forward(basis.to(operator_device(operator))).to("cpu", torch.float64).reshape(d, -1)
        zero = operator.forward(torch.zeros(1, *shape, dtype=torch.float64, device=operator_device(operator)))
    if float(zero.abs().max()) > 1e-12:
        raise ValueError(f"operator {operator.name!r} maps 0 to a nonzero measurement: it is affine, not linear")
    return cols.T.contiguous()


def operator_device(operator) -> torch.device:
    """Where an operator's buffers live (``Operator.device``; the CPU if it does not say)."""
    return torch.device(getattr(operator, "device", None) or "cpu")


@dataclass(frozen=True)
class MixturePosterior:
    """``p(x | y)``: ``weights`` (K,), ``means`` (K, d), ``covs`` (K, d, d) and their Cholesky
    factors ``chol``; ``prior_mean`` (d,) and ``log_evidence`` ``log p(y)``; ``shape`` (C, H, W)."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    chol: torch.Tensor
    prior_mean: torch.Tensor
    log_evidence: float
    shape: tuple

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def mean(self) -> torch.Tensor:
        """The posterior mean (the MMSE estimate), (d,)."""
        return self.weights @ self.means

    def marginal_var(self) -> torch.Tensor:
        """Per-pixel posterior variance, (d,): ``sum_k w_k (S_k,ii + m_ki^2) - m_i^2``."""
        diag = torch.diagonal(self.covs, dim1=1, dim2=2)
        return self.weights @ (diag + self.means ** 2) - self.mean() ** 2

    def trace_cov(self) -> float:
        """``tr Cov[x | y]`` = the MMSE, ``E ||x - E[x|y]||^2``."""
        return float(self.marginal_var().sum())

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, k)``: ``n`` exact posterior draws (n, d) and their components (n,)."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + torch.einsum("nde,ne->nd", self.chol[k], z), k

    def interval_mass(self, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Per pixel, the posterior probability of ``lo_i <= x_i <= hi_i`` (exact), (d,)."""
        sd = torch.diagonal(self.covs, dim1=1, dim2=2).clamp_min(1e-300).sqrt()  # (K, d)
        normal = torch.distributions.Normal(self.means, sd)
        mass = normal.cdf(hi.to(self.means)[None].expand_as(sd)) - normal.cdf(lo.to(self.means)[None].expand_as(sd))
        return self.weights @ mass


def _chol(S: torch.Tensor) -> torch.Tensor:
    """Cholesky factors of symmetric PSD matrices (K, d, d), with the smallest jitter that works."""
    S = 0.5 * (S + S.transpose(1, 2))
    scale = torch.diagonal(S, dim1=1, dim2=2).mean(1).clamp_min(1e-300)
    eye = torch.eye(S.shape[1], dtype=S.dtype)
    for jitter in (0.0, 1e-12, 1e-10, 1e-8):
        L, info = torch.linalg.cholesky_ex(S + jitter * scale[:, None, None] * eye)
        if not bool(info.any()):
            return L
    raise ValueError("posterior covariance is not positive semi-definite (numerically)")


def posterior(prior: GaussianMixture, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> MixturePosterior:
    """The exact posterior of ``prior`` given ``y = A x + sigma_y n`` (``A`` (m, d), ``y`` any shape
    of m values), all in float64 on the CPU."""
    if not sigma_y > 0:
        raise ValueError(f"the exact posterior needs Gaussian measurement noise, sigma_y > 0; got {sigma_y}")
    prior = prior.to("cpu")
    A = torch.as_tensor(A, dtype=torch.float64)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(-1).cpu()
    if A.shape != (y.numel(), prior.dim):
        raise ValueError(f"A is {tuple(A.shape)} but y has {y.numel()} values and x {prior.dim}")
    m = A.shape[0]
    Sig = prior.covariances()  # (K, d, d)
    SAt = Sig @ A.T  # (K, d, m)
    G = A @ SAt + sigma_y ** 2 * torch.eye(m, dtype=torch.float64)
    LG = torch.linalg.cholesky(0.5 * (G + G.transpose(1, 2)))
    r = y[None] - prior.means @ A.T  # (K, m)
    alpha = torch.cholesky_solve(r[..., None], LG)[..., 0]  # G^{-1} r
    means = prior.means + (SAt @ alpha[..., None])[..., 0]
    KAS = SAt @ torch.cholesky_solve(SAt.transpose(1, 2), LG)  # Sigma A^T G^{-1} A Sigma
    covs = Sig - KAS
    logdet = 2 * torch.log(torch.diagonal(LG, dim1=1, dim2=2)).sum(1)
    log_lik = -0.5 * ((r * alpha).sum(1) + logdet + m * math.log(2 * math.pi))
    joint = log_lik + prior.weights.log()
    log_evidence = torch.logsumexp(joint, 0)
    return MixturePosterior(torch.softmax(joint, 0), means, 0.5 * (covs + covs.transpose(1, 2)), _chol(covs),
                            prior.mean(), float(log_evidence), prior.shape)


def world_posterior(world_name: str, operator, y: torch.Tensor, sigma_y: float) -> MixturePosterior:
    """The exact posterior of mixture world ``world_name``'s prior for one measurement ``y`` taken
    with ``operator`` (batch 1) and noise ``sigma_y``."""
    from solvers.mixture.world import world

    w = world(world_name)
    return posterior(w.mixture, operator_matrix(operator, w.shape), y, sigma_y)
