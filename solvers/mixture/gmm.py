"""A Gaussian mixture with low-rank-plus-isotropic covariances, and its exact VP-diffused score.

Component ``k`` is ``N(mu_k, Sigma_k)`` with ``Sigma_k = U_k diag(lam_k) U_k^T + s_k^2 I``: ``U_k``
(d x r) orthonormal, ``lam_k`` (r,) > 0, ``s_k^2`` > 0. Why this family: it is closed under the two
operations the benchmark needs and keeps both cheap in any dimension up to 3x16x16 = 768:

- **VP diffusion.** ``x_t = sqrt(a) x_0 + sqrt(1 - a) n`` (``a = alpha_bar_t``) turns component
  ``k`` into ``N(sqrt(a) mu_k, C_k)`` with ``C_k = a Sigma_k + (1 - a) I``, which has the same
  form: eigenvalues ``a lam_kj + c_k`` on ``U_k`` and ``c_k = a s_k^2 + 1 - a`` elsewhere. Its
  inverse and log-determinant therefore cost O(d r) per point, never a d x d solve.
- **Orthogonal maps.** ``z = Q^T x`` maps the mixture to the mixture with ``Q^T mu_k``,
  ``Q^T U_k`` and the same eigenvalues (``rotated``), so a latent prior behind an orthogonal linear
  autoencoder is exact too.

Exact noise prediction (what a perfectly trained eps-network would output; Tweedie/Miyasawa):

    score_t(x) = grad log p_t(x) = - sum_k r_k(x) C_k^{-1} (x - sqrt(a) mu_k)
    eps(x, t)  = - sqrt(1 - a) score_t(x)        (E[n | x_t = x])

with ``r_k(x)`` the responsibilities of the diffused components. Everything is float64 and batched
over rows, each row with its own ``a`` (a (B,) tensor), and differentiable (DPS takes gradients
through Tweedie's estimate, hence through ``eps``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["GaussianMixture"]

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class GaussianMixture:
    """``sum_k w_k N(mu_k, U_k diag(lam_k) U_k^T + s2_k I)`` over flattened vectors of ``shape``.

    ``weights`` (K,), ``means`` (K, d), ``basis`` (K, d, r), ``lowrank`` (K, r), ``iso`` (K,), all
    float64 on one device; ``shape`` is the (C, H, W) the vectors unflatten to. ``r = 0`` gives
    isotropic components.
    """

    weights: torch.Tensor
    means: torch.Tensor
    basis: torch.Tensor
    lowrank: torch.Tensor
    iso: torch.Tensor
    shape: tuple

    def __post_init__(self):
        K, d = self.means.shape
        if self.weights.shape != (K,) or self.basis.shape[:2] != (K, d) or self.lowrank.shape != (K, self.basis.shape[2]):
            raise ValueError(f"inconsistent mixture shapes: weights {tuple(self.weights.shape)}, means {tuple(self.means.shape)}, "
                             f"basis {tuple(self.basis.shape)}, lowrank {tuple(self.lowrank.shape)}")
        if self.iso.shape != (K,) or bool((self.iso <= 0).any()) or bool((self.lowrank <= 0).any()):
            raise ValueError("component variances must be > 0")
        if math.prod(self.shape) != d:
            raise ValueError(f"shape {self.shape} does not hold {d} values")
        if abs(float(self.weights.sum()) - 1) > 1e-9 or bool((self.weights <= 0).any()):
            raise ValueError(f"weights must be > 0 and sum to 1, got {self.weights.tolist()}")

    # ------------------------------------------------------------------ basics
    @property
    def K(self) -> int:
        return int(self.means.shape[0])

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def rank(self) -> int:
        return int(self.basis.shape[2])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def to(self, device) -> "GaussianMixture":
        """The same mixture on ``device`` (always float64)."""
        f = lambda t: t.to(device=device, dtype=torch.float64)  # noqa: E731
        return GaussianMixture(f(self.weights), f(self.means), f(self.basis), f(self.lowrank), f(self.iso), self.shape)

    def covariances(self) -> torch.Tensor:
        """Dense ``Sigma_k``, (K, d, d)."""
        eye = torch.eye(self.dim, dtype=torch.float64, device=self.device)
        low = torch.einsum("kdr,kr,ker->kde", self.basis, self.lowrank, self.basis)
        return low + self.iso[:, None, None] * eye

    def mean(self) -> torch.Tensor:
        """The mixture mean ``sum_k w_k mu_k``, (d,)."""
        return self.weights @ self.means

    def rotated(self, Q: torch.Tensor) -> "GaussianMixture":
        """The law of ``z = Q^T x`` for an orthogonal (d, d) ``Q``: means ``Q^T mu_k``, bases ``Q^T U_k``."""
        Q = Q.to(self.means)
        if Q.shape != (self.dim, self.dim) or not torch.allclose(Q.T @ Q, torch.eye(self.dim, dtype=Q.dtype, device=Q.device), atol=1e-10):
            raise ValueError("rotated() needs an orthogonal (d, d) matrix")
        return GaussianMixture(self.weights, self.means @ Q, torch.einsum("de,kdr->ker", Q, self.basis),
                               self.lowrank, self.iso, self.shape)

    # ------------------------------------------------------------------ densities at a noise level
    def _rows(self, x: torch.Tensor, a) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(x.shape[0], -1).to(torch.float64)
        if x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of {self.dim} values, got {x.shape[1]}")
        a = torch.as_tensor(a, dtype=torch.float64, device=x.device)
        a = a.expand(x.shape[0]) if a.ndim == 0 else a.reshape(-1)
        if a.shape[0] != x.shape[0]:
            raise ValueError(f"{a.shape[0]} noise levels for {x.shape[0]} rows")
        return x, a

    def _diffused(self, x: torch.Tensor, a: torch.Tensor):
        """Per row and component: residual ``x - sqrt(a) mu_k`` (B, K, d), its basis coordinates
        (B, K, r), ``c`` (B, K) and the low-rank eigenvalues ``e`` (B, K, r) of ``C_k``."""
        res = x[:, None, :] - a.sqrt()[:, None, None] * self.means[None]
        proj = torch.einsum("bkd,kdr->bkr", res, self.basis)
        c = a[:, None] * self.iso[None] + (1 - a)[:, None]
        e = a[:, None, None] * self.lowrank[None] + c[..., None]
        return res, proj, c, e

    def component_log_prob(self, x: torch.Tensor, a=1.0) -> torch.Tensor:
        """``log N(x; sqrt(a) mu_k, C_k)`` per row and component, (B, K); ``a = 1`` is the prior."""
        x, a = self._rows(x, a)
        res, proj, c, e = self._diffused(x, a)
        maha = (res ** 2).sum(-1) / c + (proj ** 2 * (1 / e - 1 / c[..., None])).sum(-1)
        logdet = (self.dim - self.rank) * c.log() + e.log().sum(-1)
        return -0.5 * (maha + logdet + self.dim * _LOG_2PI)

    def log_prob(self, x: torch.Tensor, a=1.0) -> torch.Tensor:
        """``log p_t(x)`` of the diffused mixture at ``alpha_bar = a``, (B,)."""
        return torch.logsumexp(self.component_log_prob(x, a) + self.weights.log(), dim=1)

    def responsibilities(self, x: torch.Tensor, a=1.0) -> torch.Tensor:
        """``P(component k | x)`` under the diffused mixture, (B, K); ``a = 1``: the prior's."""
        return torch.softmax(self.component_log_prob(x, a) + self.weights.log(), dim=1)

    def score(self, x: torch.Tensor, a) -> torch.Tensor:
        """``grad_x log p_t(x)``, (B, d), in closed form (see the module docstring)."""
        x, a = self._rows(x, a)
        res, proj, c, e = self._diffused(x, a)
        maha = (res ** 2).sum(-1) / c + (proj ** 2 * (1 / e - 1 / c[..., None])).sum(-1)
        logdet = (self.dim - self.rank) * c.log() + e.log().sum(-1)
        r = torch.softmax(-0.5 * (maha + logdet) + self.weights.log(), dim=1)  # (B, K)
        cinv_res = res / c[..., None] + torch.einsum("kdr,bkr->bkd", self.basis, proj * (1 / e - 1 / c[..., None]))
        return -(r[..., None] * cinv_res).sum(1)

    def eps(self, x: torch.Tensor, a) -> torch.Tensor:
        """The exact noise prediction ``-sqrt(1 - a) score_t(x)``, (B, d)."""
        x, a = self._rows(x, a)
        return -(1 - a).sqrt()[:, None] * self.score(x, a)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, k)``: ``n`` exact draws (n, d) on the CPU and their components (n,)."""
        w = self.weights.cpu()
        k = torch.multinomial(w, n, replacement=True, generator=generator)
        z_low = torch.randn(n, self.rank, generator=generator, dtype=torch.float64)
        z_iso = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        mu, U, lam, s2 = (t.cpu() for t in (self.means, self.basis, self.lowrank, self.iso))
        x = mu[k] + torch.einsum("ndr,nr->nd", U[k], z_low * lam[k].sqrt()) + z_iso * s2[k].sqrt()[:, None]
        return x, k
