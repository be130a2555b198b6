"""Closed-form Gaussian test problems: a dense linear operator, a Gaussian eps model, linear autoencoders.

A Gaussian prior ``N(mu, Sigma)`` has an exact score at every noise level (``GaussianPrior``); with a
linear operator and Gaussian noise the posterior is Gaussian in closed form
(``GaussianPrior.posterior``). Wrapped in a ``LatentPrior`` with a *linear* autoencoder
``D(z) = G z``, ``E(x) = G^-1 x`` (both through the autoencoder's ``scale``), the latent prior's
image law is ``N(G mu_z, G Sigma_z G^T)`` and the posterior stays closed-form, so latent solvers can
be checked against it with encode/decode/scale mistakes visible (``G`` is not orthogonal).
"""
from __future__ import annotations

import math
import os

import torch
from torch import nn

from solvers.priors import Autoencoder, GaussianPrior, LatentPrior, VPSchedule

DT = torch.float64
SHAPE = (1, 2, 2)
#: where the solvers run: ``EQUIBENCH_TEST_DEVICE=cuda`` reruns the checks on a GPU, same tolerances
DEVICE = torch.device(os.environ.get("EQUIBENCH_TEST_DEVICE", "cpu"))


class DenseOperator:
    """A dense matrix ``A`` (m, d) implementing the operator contract (docs/CONTRACTS.md)."""

    linear = True
    has_transpose = True
    batch = 1

    def __init__(self, A: torch.Tensor, image_shape=SHAPE, name: str = "dense"):
        self.A = A.to(DT)
        self.name = name
        self.image_shape = tuple(image_shape)
        self.measurement_shape = (1, 1, A.shape[0])
        self.params = {}

    def forward(self, x):
        return (x.reshape(x.shape[0], -1) @ self.A.to(x).T).reshape(x.shape[0], *self.measurement_shape)

    __call__ = forward

    def transpose(self, y, kind="adjoint"):
        return (y.reshape(y.shape[0], -1) @ self.A.to(y)).reshape(y.shape[0], *self.image_shape)

    def residual(self, x, y):
        return torch.linalg.vector_norm((y - self.forward(x)).reshape(x.shape[0], -1), dim=1)

    def to(self, device):
        self.A = self.A.to(device)
        return self


class GaussianEps(nn.Module):
    """``GaussianPrior.eps`` as an eps-model module, so the prior can sit inside a ``LatentPrior``."""

    def __init__(self, gp: GaussianPrior):
        super().__init__()
        self.gp = gp

    def forward(self, x, t):
        return self.gp.eps(x, t)


def identity_autoencoder(shape=SHAPE) -> Autoencoder:
    return Autoencoder(lambda x: x, lambda z: z, shape, shape)


def linear_autoencoder(G: torch.Tensor, scale: float, shape=SHAPE) -> Autoencoder:
    """``decode(z) = G (z / scale)``, ``encode(x) = scale G^-1 x`` on flattened rows: an exact
    inverse pair that is neither orthogonal nor a plain rescaling."""
    Ginv = torch.linalg.inv(G)

    def enc(x):
        return (x.reshape(x.shape[0], -1) @ Ginv.to(x).T).reshape(x.shape[0], *shape)

    def dec(z):
        return (z.reshape(z.shape[0], -1) @ G.to(z).T).reshape(z.shape[0], *shape)

    return Autoencoder(enc, dec, shape, shape, scale=scale)


def gaussian_problem(sigma_y: float = 0.1):
    """The fixed DPS/PSLD/ReSample problem: prior, latent twin (identity AE), operator, y, posterior mean."""
    g = torch.Generator().manual_seed(0)
    d = math.prod(SHAPE)
    L = torch.randn(d, d, dtype=DT, generator=g) * 0.4
    Sigma = L @ L.T + 0.05 * torch.eye(d, dtype=DT)
    mu = torch.randn(d, dtype=DT, generator=g) * 0.3
    schedule = VPSchedule.linear()
    prior = GaussianPrior(mu, Sigma, schedule, shape=SHAPE)
    A = torch.randn(2, d, dtype=DT, generator=g)
    op = DenseOperator(A)
    evals, evecs = torch.linalg.eigh(Sigma)
    x_true = (mu + (evecs * evals.sqrt()) @ torch.tensor([1.5, -1.5, 1.5, 1.5], dtype=DT)).reshape(1, *SHAPE)
    y = op.forward(x_true) + sigma_y * torch.randn(1, *op.measurement_shape, dtype=DT, generator=g)
    post_mean, _ = prior.posterior(A, y, sigma_y)
    latent = LatentPrior(GaussianEps(prior), identity_autoencoder(), schedule, name="gaussian-latent")
    return dict(prior=prior.to(DEVICE), latent=latent.to(DEVICE), op=op, y=y.to(DEVICE), x_true=x_true.to(DEVICE),
                mu=mu.to(DEVICE), post_mean=post_mean.to(DEVICE))


def latent_gaussian(mu_img: torch.Tensor, Sigma_img: torch.Tensor, G: torch.Tensor, scale: float,
                    schedule: VPSchedule) -> LatentPrior:
    """A latent prior whose decoded image law is ``N(mu_img, Sigma_img)``, through ``linear_autoencoder(G, scale)``:
    ``z = scale G^-1 x`` is Gaussian with mean ``scale G^-1 mu_img`` and covariance
    ``scale^2 G^-1 Sigma_img G^-T``."""
    Ginv = torch.linalg.inv(G)
    mu_z = scale * Ginv @ mu_img
    Sigma_z = scale ** 2 * Ginv @ Sigma_img @ Ginv.T
    gz = GaussianPrior(mu_z, 0.5 * (Sigma_z + Sigma_z.T), schedule, shape=SHAPE)
    return LatentPrior(GaussianEps(gz), linear_autoencoder(G, scale), schedule, name="gaussian-linear-ae")


def linear_ae_problem(sigma_y: float = 0.1, schedule: VPSchedule | None = None) -> dict:
    """A 4-value image Gaussian ``N(mu, Sigma)``, a dense 2 x 4 ``A`` (``A A^T != I``), ``y`` made
    from a point 1.5 prior standard deviations out, the exact posterior, and the same image prior
    as a latent prior behind ``linear_autoencoder(G, 0.7)`` (``G = I + 0.5 randn``, condition
    number 3.7) on ``schedule`` (default linear betas). Keys: mu, Sigma, A, y, G, scale, op,
    pixel, latent, mu_z, Sigma_z, m_post, C_post, sigma_y."""
    g = torch.Generator().manual_seed(11)
    d = math.prod(SHAPE)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=DT))
    evals = torch.tensor([0.6, 0.3, 0.15, 0.08], dtype=DT)
    Sigma = Q @ torch.diag(evals) @ Q.T
    mu = torch.tensor([0.2, -0.1, 0.3, 0.0], dtype=DT)
    G = torch.eye(d, dtype=DT) + 0.5 * torch.randn(d, d, generator=g, dtype=DT)
    A = torch.randn(2, d, generator=g, dtype=DT) / math.sqrt(d)
    x_true = mu + Q @ (evals.sqrt() * torch.tensor([1.5, -1.5, 1.5, 1.5], dtype=DT))
    y = A @ x_true + sigma_y * torch.randn(2, generator=g, dtype=DT)
    schedule = schedule or VPSchedule.linear()
    scale = 0.7
    pixel = GaussianPrior(mu, Sigma, schedule, shape=SHAPE)
    latent = latent_gaussian(mu, Sigma, G, scale, schedule)
    m_post, C_post = pixel.posterior(A, y, sigma_y)
    gz = latent.model.gp
    return dict(mu=mu, Sigma=Sigma, A=A, y=y, G=G, scale=scale, op=DenseOperator(A), pixel=pixel, latent=latent,
                mu_z=gz.mu, Sigma_z=gz.Sigma, m_post=m_post, C_post=C_post, sigma_y=sigma_y)
