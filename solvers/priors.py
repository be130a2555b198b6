"""Diffusion priors: the one interface every solver samples through.

A prior answers two questions in either parametrisation solvers think in:
``eps(x_t, t)`` for VP samplers (DPS, PSLD, ReSample) and the EDM-form denoiser
``denoise(x, sigma)`` for noise-level samplers (DAPS), tied together by the prior's own VP
schedule (``x = x_t / sqrt(abar)``, ``sigma = sqrt((1 - abar) / abar)``). Latent priors also
``encode``/``decode``. Concrete priors wrap any eps-predicting module, or compute the score in
closed form (``GaussianPrior``, used by the exact-posterior tests).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

__all__ = ["VPSchedule", "Prior", "UNetPrior", "Autoencoder", "LatentPrior", "GaussianPrior"]


class VPSchedule:
    """A discrete variance-preserving schedule of ``T`` steps with continuous interpolation.

    ``sigma(t)`` for fractional ``t`` interpolates ``log sigma`` linearly between integer steps and
    ``abar(t) = 1 / (1 + sigma(t)^2)``, so ``timestep_for_sigma`` and ``sigma`` are exact inverses.
    """

    def __init__(self, betas: torch.Tensor, kind: str = "custom", **meta):
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must be a 1-D tensor of at least 2 values in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, 0)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self._log_sigmas = self.sigmas.log()
        #: ``alpha_bar`` as Python floats: per-step lookups read these, never a tensor (no host sync)
        self.abar_values = self.alphas_cumprod.tolist()
        self._on_device: dict = {}  # device -> log sigmas there (copied once, not per step)
        self._sigma_range = (float(self.sigmas[0]), float(self.sigmas[-1]))  # read per step: Python floats
        self.kind = kind
        self.meta = meta

    # ----------------------------------------------------------------- constructors
    @classmethod
    def linear(cls, T: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "VPSchedule":
        """DDPM's linear betas (DPS, DAPS pixel, the embedded pixel prior)."""
        return cls(torch.linspace(beta_start, beta_end, T, dtype=torch.float64), "linear",
                   T=T, beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def scaled_linear(cls, T: int = 1000, beta_start: float = 0.0015, beta_end: float = 0.0195) -> "VPSchedule":
        """LDM's sqrt-linear betas (LDM-VQ-4, Stable Diffusion)."""
        b = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, T, dtype=torch.float64) ** 2
        return cls(b, "scaled_linear", T=T, beta_start=beta_start, beta_end=beta_end)

    @classmethod
    def from_diffusers_config(cls, cfg: dict) -> "VPSchedule":
        """From a diffusers scheduler config (``scheduler_config.json``)."""
        T = int(cfg.get("num_train_timesteps", 1000))
        if cfg.get("trained_betas") is not None:
            return cls(torch.tensor(cfg["trained_betas"], dtype=torch.float64), "trained")
        kind = cfg.get("beta_schedule", "linear")
        builders = {"linear": cls.linear, "scaled_linear": cls.scaled_linear}
        if kind not in builders:
            raise ValueError(f"unsupported beta_schedule {kind!r}; allowed: {sorted(builders)}")
        return builders[kind](T, float(cfg.get("beta_start", 1e-4)), float(cfg.get("beta_end", 0.02)))

    def to_config(self) -> dict:
        return {"kind": self.kind, **self.meta}

    # ----------------------------------------------------------------- queries
    @property
    def T(self) -> int:
        return int(self.betas.numel())

    @property
    def sigma_min(self) -> float:
        return self._sigma_range[0]

    @property
    def sigma_max(self) -> float:
        return self._sigma_range[1]

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Noise level at (possibly fractional) timesteps ``t``; same device/shape as ``t``."""
        tf = torch.as_tensor(t).to(torch.float64).clamp(0, self.T - 1)
        lo = tf.floor().long().clamp(max=self.T - 2)
        w = tf - lo.to(torch.float64)
        ls = self._log_sigmas_on(tf.device)
        return (ls[lo] * (1 - w) + ls[lo + 1] * w).exp()

    def _log_sigmas_on(self, device) -> torch.Tensor:
        """``log sigma`` on ``device``, copied there once (a per-call copy is a host-to-device sync on CUDA)."""
        device = torch.device(device)
        if device.type == "cpu":
            return self._log_sigmas
        if device not in self._on_device:
            self._on_device[device] = self._log_sigmas.to(device)
        return self._on_device[device]

    def abar(self, t: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` at (possibly fractional) timesteps ``t`` (float64)."""
        return 1.0 / (1.0 + self.sigma(t) ** 2)

    def timestep_for_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep whose noise level is ``sigma`` (clamped to the schedule's range)."""
        s = torch.as_tensor(sigma, dtype=torch.float64)
        ls = self._log_sigmas_on(s.device)
        x = s.clamp(self.sigma_min, self.sigma_max).log()
        hi = torch.searchsorted(ls, x.contiguous()).clamp(1, self.T - 1)
        lo = hi - 1
        w = (x - ls[lo]) / (ls[hi] - ls[lo])
        return lo.to(torch.float64) + w

    def timesteps(self, num_steps: int) -> torch.Tensor:
        """``num_steps`` evenly spaced integer timesteps, descending from ``T-1`` (DDIM's 'leading'-free spacing)."""
        if num_steps < 1 or num_steps > self.T:
            raise ValueError(f"num_steps must be in [1, {self.T}], got {num_steps}")
        return torch.linspace(self.T - 1, 0, num_steps, dtype=torch.float64).round().long()


def _per_row(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a (B,) or scalar tensor over ``like``'s trailing dims, in ``like``'s dtype/device."""
    v = torch.as_tensor(v, device=like.device)
    if v.ndim == 0:
        v = v.expand(like.shape[0])
    return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


class Prior(nn.Module):
    """Base class of every prior. Subclasses implement ``eps``.

    Attributes: ``space`` ("pixel" or "latent"), ``shape`` (C, H, W) of the diffusion variable,
    ``image_shape`` (C, H, W) of images, ``schedule``, ``name``.
    """

    space = "pixel"

    def __init__(self, schedule: VPSchedule, shape: Sequence[int], image_shape: Sequence[int] | None = None, name: str = "prior"):
        super().__init__()
        self.schedule = schedule
        self.shape = tuple(int(s) for s in shape)
        self.image_shape = tuple(int(s) for s in (image_shape or shape))
        self.name = name

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def abar(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``alpha_bar(t)`` broadcast over ``like``."""
        t = torch.as_tensor(t, device=like.device)
        return _per_row(self.schedule.abar(t), like)

    def x0_from_eps(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate ``(x_t - sqrt(1 - abar) eps) / sqrt(abar)``."""
        a = self.abar(t, x_t)
        return (x_t - (1 - a).sqrt() * eps) / a.sqrt()

    def tweedie(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.x0_from_eps(x_t, t, self.eps(x_t, t))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """EDM-form denoiser ``D(x, sigma) = E[x0 | x0 + sigma n = x]`` through the VP schedule."""
        sigma = torch.as_tensor(sigma, device=x.device, dtype=torch.float64)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        t = self.schedule.timestep_for_sigma(sigma)
        s = _per_row(sigma, x)
        x_t = x / (1 + s ** 2).sqrt()
        return x - s * self.eps(x_t, t.to(x.device))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} is a {self.space}-space prior and has no encoder")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} is a {self.space}-space prior and has no decoder")


class UNetPrior(Prior):
    """A pixel prior from any module ``model(x_t, t)`` predicting noise.

    ``model`` may return a tensor or an object with ``.sample`` (diffusers); when it predicts
    more channels than the data has (guided-diffusion's learned sigma), the first ``C`` are eps.
    """

    def __init__(self, model: nn.Module, schedule: VPSchedule, shape: Sequence[int], name: str = "unet", **kw):
        super().__init__(schedule, shape, name=name, **kw)
        self.model = model

    def eps(self, x_t, t):
        t = torch.as_tensor(t, device=x_t.device)
        if t.ndim == 0:
            t = t.expand(x_t.shape[0])
        if not torch.is_floating_point(t):
            t = t.float()
        out = self.model(x_t, t.to(x_t.dtype) if t.dtype != x_t.dtype else t)
        out = getattr(out, "sample", out)
        return out[:, : x_t.shape[1]]


class Autoencoder(nn.Module):
    """An encoder/decoder pair in the scaled latent space diffusion runs in.

    Wraps callables so that any VAE/VQ model (diffusers or the project's own) fits: ``encode``
    returns scaled latents, ``decode`` takes scaled latents. Also the EquiReg MPE function.
    """

    def __init__(self, encode_fn: Callable, decode_fn: Callable, latent_shape: Sequence[int],
                 image_shape: Sequence[int], modules: nn.Module | None = None, scale: float = 1.0):
        super().__init__()
        self._encode_fn, self._decode_fn = encode_fn, decode_fn
        self.latent_shape = tuple(latent_shape)
        self.image_shape = tuple(image_shape)
        self.scale = float(scale)
        self.net = modules  # registered so .to(device) moves the weights

    def encode(self, x):
        return self._encode_fn(x) * self.scale

    def decode(self, z):
        return self._decode_fn(z / self.scale)


class LatentPrior(UNetPrior):
    """A latent diffusion prior: an eps model on ``z`` plus the autoencoder that maps to images."""

    space = "latent"

    def __init__(self, model: nn.Module, autoencoder: Autoencoder, schedule: VPSchedule, name: str = "ldm"):
        super().__init__(model, schedule, autoencoder.latent_shape, name=name, image_shape=autoencoder.image_shape)
        self.autoencoder = autoencoder

    def encode(self, x):
        return self.autoencoder.encode(x)

    def decode(self, z):
        return self.autoencoder.decode(z)


class GaussianPrior(Prior):
    """``x0 ~ N(mu, Sigma)`` with the closed-form noise prediction at every level.

    ``x_t = sqrt(abar) x0 + sqrt(1-abar) n`` is Gaussian with covariance
    ``abar Sigma + (1-abar) I``, so ``eps = sqrt(1-abar) C_t^{-1} (x_t - sqrt(abar) mu)`` exactly.
    Used as ground truth: for a linear operator the posterior is Gaussian too (``posterior``).
    """

    def __init__(self, mu: torch.Tensor, Sigma: torch.Tensor, schedule: VPSchedule, shape: Sequence[int] | None = None):
        mu = torch.as_tensor(mu, dtype=torch.float64).flatten()
        d = mu.numel()
        super().__init__(schedule, shape or (1, 1, d), name="gaussian")
        if math.prod(self.shape) != d:
            raise ValueError(f"shape {self.shape} does not hold {d} values")
        Sigma = torch.as_tensor(Sigma, dtype=torch.float64)
        evals, evecs = torch.linalg.eigh(0.5 * (Sigma + Sigma.T))
        if bool((evals <= 0).any()):
            raise ValueError("Sigma must be positive definite")
        self.register_buffer("mu", mu)
        self.register_buffer("Sigma", Sigma)
        self.register_buffer("evals", evals)
        self.register_buffer("evecs", evecs)

    def eps(self, x_t, t):
        B = x_t.shape[0]
        a = self.schedule.abar(torch.as_tensor(t, device=x_t.device)).to(self.mu.device)
        if a.ndim == 0:
            a = a.expand(B)
        flat = x_t.reshape(B, -1).to(torch.float64)
        r = flat - a.sqrt()[:, None] * self.mu
        coef = 1.0 / (a[:, None] * self.evals[None] + (1 - a[:, None]))  # (B, d)
        Cinv_r = ((r @ self.evecs) * coef) @ self.evecs.T
        return ((1 - a).sqrt()[:, None] * Cinv_r).to(x_t.dtype).reshape(x_t.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact prior samples, (n, *shape)."""
        z = torch.randn(n, self.mu.numel(), generator=generator, dtype=torch.float64)
        x = self.mu + (z * self.evals.sqrt()) @ self.evecs.T
        return x.reshape(n, *self.shape)

    def posterior(self, A: torch.Tensor, y: torch.Tensor, sigma_y: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of ``x0 | y`` for ``y = A x0 + sigma_y n`` (A a dense (m, d) matrix)."""
        A = torch.as_tensor(A, dtype=torch.float64)
        y = torch.as_tensor(y, dtype=torch.float64).flatten()
        S = self.Sigma
        K = S @ A.T @ torch.linalg.inv(A @ S @ A.T + sigma_y ** 2 * torch.eye(A.shape[0], dtype=torch.float64))
        mean = self.mu + K @ (y - A @ self.mu)
        cov = S - K @ A @ S
        return mean, 0.5 * (cov + cov.T)
