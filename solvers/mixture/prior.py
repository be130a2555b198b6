"""Priors with the exact score: a mixture world's pixel prior, its latent prior and its autoencoder.

``MixturePrior`` is a ``solvers.priors.Prior`` like ``UNetPrior``: solvers call ``eps(x_t, t)``
(integer or fractional timesteps, (B,)), ``denoise``/``x0_from_eps`` (inherited, derived from
``eps`` through the schedule) and read ``schedule``/``shape``/``space``, so every solver runs on it
unchanged. ``eps`` is the exact ``E[n | x_t]`` of the mixture (``GaussianMixture.eps``) computed in
float64 and returned in the caller's dtype; the schedule is DDPM's linear betas (T = 1000,
1e-4..0.02: SPEC, the schedule the pixel solvers assume).

``LatentMixturePrior`` is the same on ``z = E(x) = D^T x`` (``world.World.latent``) with
``encode``/``decode``/``autoencoder`` for PSLD, ReSample and LatentDAPS; ``LinearAutoencoder`` is the
orthogonal pair, also the EquiReg MPE function of pixel solvers (``mpe: encoder | autoencoder``).

Dtypes: loaders cast modules to float32 (``solvers.loaders._finish``); the mixture's tensors are
not module buffers, so that cast never touches them; ``.to(device)`` moves them, still float64.
(No float64 on Apple's MPS: these priors refuse it.)
"""
from __future__ import annotations

import torch

from solvers.mixture.gmm import GaussianMixture
from solvers.priors import Autoencoder, Prior, VPSchedule

__all__ = ["MixturePrior", "LatentMixturePrior", "LinearAutoencoder", "world_prior", "world_autoencoder"]


def _probe_device(fn) -> torch.device:
    """The device a ``Module._apply`` function moves tensors to."""
    dev = fn(torch.zeros(1, dtype=torch.float64)).device
    if dev.type == "mps":
        raise ValueError("mixture priors compute in float64, which MPS lacks; use the CPU or CUDA")
    return dev


class MixturePrior(Prior):
    """The exact prior of a Gaussian mixture over pixels (see the module docstring)."""

    space = "pixel"

    def __init__(self, mixture: GaussianMixture, schedule: VPSchedule | None = None, name: str = "mixture"):
        super().__init__(schedule or VPSchedule.linear(1000), mixture.shape, name=name)
        self.mixture = mixture

    @property
    def device(self) -> torch.device:
        return self.mixture.device

    def _apply(self, fn, recurse=True):
        self.mixture = self.mixture.to(_probe_device(fn))
        return super()._apply(fn, recurse)

    def _on(self, device) -> GaussianMixture:
        if self.mixture.device != torch.device(device):
            self.mixture = self.mixture.to(device)
        return self.mixture

    def _abar(self, t, B: int) -> torch.Tensor:
        a = self.schedule.abar(torch.as_tensor(t).to(self.device))
        return a.expand(B) if a.ndim == 0 else a.reshape(-1)

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact ``E[n | x_t]`` at timesteps ``t`` (B,) or a scalar; float64 inside."""
        B = x_t.shape[0]
        out = self._on(x_t.device).eps(x_t.reshape(B, -1), self._abar(t, B).to(x_t.device))
        return out.to(x_t.dtype).reshape(x_t.shape)

    def score(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``grad log p_t(x_t)`` (float64), the quantity ``eps`` rescales."""
        B = x_t.shape[0]
        return self._on(x_t.device).score(x_t.reshape(B, -1), self._abar(t, B).to(x_t.device)).reshape(x_t.shape)

    def log_prob(self, x: torch.Tensor, t=None) -> torch.Tensor:
        """``log p_t(x)`` (``t=None``: the clean prior), (B,)."""
        a = 1.0 if t is None else self._abar(t, x.shape[0]).to(x.device)
        return self._on(x.device).log_prob(x.reshape(x.shape[0], -1), a)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Exact prior draws, (n, C, H, W) float64 on the CPU."""
        return self.mixture.sample(n, generator)[0].reshape(n, *self.shape)


class LinearAutoencoder(Autoencoder):
    """``x = D z``, ``z = D^T x`` for an orthogonal ``D`` (d, d), in float64, output in the input's dtype."""

    def __init__(self, decoder: torch.Tensor, shape):
        super().__init__(self._enc, self._dec, tuple(shape), tuple(shape))
        self.D = decoder.to(torch.float64)

    def _apply(self, fn, recurse=True):
        self.D = self.D.to(_probe_device(fn))
        return super()._apply(fn, recurse)

    def _map(self, v: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        flat = v.reshape(v.shape[0], -1).to(torch.float64) @ M.to(v.device)
        return flat.to(v.dtype).reshape(v.shape)

    def _enc(self, x):
        return self._map(x, self.D)  # rows: z^T = x^T D

    def _dec(self, z):
        return self._map(z, self.D.T)  # rows: x^T = z^T D^T


class LatentMixturePrior(MixturePrior):
    """The exact prior of ``z = D^T x`` with the world's autoencoder (``space = "latent"``)."""

    space = "latent"

    def __init__(self, latent: GaussianMixture, autoencoder: LinearAutoencoder, schedule: VPSchedule | None = None,
                 name: str = "mixture-latent"):
        super().__init__(latent, schedule, name=name)
        self.autoencoder = autoencoder

    def encode(self, x):
        return self.autoencoder.encode(x)

    def decode(self, z):
        return self.autoencoder.decode(z)


def world_autoencoder(name: str) -> LinearAutoencoder:
    """The orthogonal autoencoder of world ``name``."""
    from solvers.mixture.world import world

    w = world(name)
    return LinearAutoencoder(w.decoder, w.shape)


def world_prior(name: str, space: str = "pixel") -> MixturePrior:
    """World ``name``'s exact prior in ``space`` (``pixel`` or ``latent``)."""
    from solvers.mixture.world import world

    w = world(name)
    if space == "pixel":
        return MixturePrior(w.mixture, name=f"mixture:{name}")
    if space == "latent":
        return LatentMixturePrior(w.latent, world_autoencoder(name), name=f"mixture:{name}:latent")
    raise ValueError(f"space must be 'pixel' or 'latent', got {space!r}")
