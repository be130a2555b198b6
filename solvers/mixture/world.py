"""Build a mixture world from its ``WorldSpec``: the prior mixture and the linear autoencoder.

**Components.** ``components / |G|`` base patterns are drawn from the world's seed, each a
Gaussian-low-passed white-noise image scaled to ``mean_rms``, with ``rank`` low-passed factor
images scaled to ``factor_rms``; every base pattern contributes its whole orbit under the group
``G`` (``operators.groups``): component ``(b, g)`` has mean ``T_g mu_b`` and factors ``T_g F_b``, all
with the same isotropic std ``iso_std``. Base weights are ``0.5 + U(0, 1)`` normalised (no mode
negligible), shared by the orbit. Hence ``p(T x) = p(x)`` exactly: EquiReg's symmetry assumption
holds in this world, not approximately.

**The "manifold".** All means and factors lie in ``S = span{mu_k, U_k}`` (dimension at most
``K (1 + r)``, well below ``d`` in every preset), a ``G``-invariant subspace. Data are ``S`` plus
isotropic noise of std ``iso_std``: a thickened union of K low-dimensional affine pieces.

**Autoencoder.** ``D = P_S + R P_S^perp`` with ``R`` a random rotation of the complement
(``P`` orthogonal projectors): orthogonal, so ``E = D^T = D^{-1}`` and the latent law of
``z = E(x)`` is again an exact mixture (``GaussianMixture.rotated``). ``D`` is the identity on
``S`` and commutes with ``G`` there (``T D x = D T x`` for ``x`` in ``S``, as ``S`` is
``G``-invariant), while off ``S`` it does not (``R`` is generic): the linear analogue of what EquiReg
assumes of a trained VAE, equivariance on the data manifold and not off it. So ``Equi`` with
``f = E`` or ``D`` penalises exactly the part of an estimate that lies off ``S``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from solvers.mixture.gmm import GaussianMixture
from solvers.mixture.presets import WorldSpec, world_spec

__all__ = ["World", "build", "world"]


@dataclass(frozen=True)
class World:
    """A built world: its spec, the pixel-space prior mixture, the autoencoder matrix ``D`` (d, d,
    orthogonal, ``x = D z``), the latent mixture of ``z = D^T x``, and ``S``'s basis (d, s)."""

    spec: WorldSpec
    mixture: GaussianMixture
    decoder: torch.Tensor
    latent: GaussianMixture
    manifold: torch.Tensor

    @property
    def shape(self) -> tuple:
        return (self.spec.channels, self.spec.size, self.spec.size)


def _lowpass(x: torch.Tensor, std: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, C, H, W) with reflect padding (std in pixels)."""
    h = x.shape[-1]
    radius = max(1, min(int(math.ceil(2.5 * std)), h - 1))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / std) ** 2)
    k = k / k.sum()
    n, c = x.shape[:2]
    y = x.reshape(n * c, 1, *x.shape[-2:])
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(x.shape)


def _fields(n: int, shape: tuple, std: float, rms: float, gen: torch.Generator) -> torch.Tensor:
    """``n`` smooth random images (n, C, H, W), each with RMS ``rms``."""
    x = _lowpass(torch.randn(n, *shape, generator=gen, dtype=torch.float64), std)
    x = x - x.mean(dim=(1, 2, 3), keepdim=True) * 0.5  # keep some of each pattern's offset
    return x * (rms / x.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt())


def _orthonormal_span(vectors: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """An orthonormal basis (d, s) of the span of the rows of ``vectors`` (n, d)."""
    u, sv, _ = torch.linalg.svd(vectors.T, full_matrices=False)
    return u[:, sv > tol * sv.max()]


def _decoder(basis: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """``D = P_S + R P_S^perp``: identity on span(basis), a random rotation of the complement."""
    d, s = basis.shape
    full, _ = torch.linalg.qr(torch.cat([basis, torch.randn(d, d - s, generator=gen, dtype=torch.float64)], 1))
    perp = full[:, s:]
    q, r = torch.linalg.qr(torch.randn(d - s, d - s, generator=gen, dtype=torch.float64))
    rot = q * torch.sign(torch.diagonal(r))  # Haar-distributed rotation of the complement
    return basis @ basis.T + perp @ rot @ perp.T


def build(spec: WorldSpec) -> World:
    """Every tensor of the world ``spec`` (deterministic in ``spec.seed``; float64, CPU)."""
    from operators import build_group

    group = build_group(spec.group, sample="all")
    order = group.order
    if spec.components % order:
        raise ValueError(f"world {spec.name!r}: {spec.components} components is not a multiple of the "
                         f"order {order} of group {spec.group!r} (each base pattern brings its whole orbit)")
    shape = (spec.channels, spec.size, spec.size)
    d = spec.dim
    gen = torch.Generator().manual_seed(int(spec.seed))
    n_base = spec.components // order
    base_means = _fields(n_base, shape, spec.smooth, spec.mean_rms, gen) if spec.mean_rms > 0 else torch.zeros(n_base, *shape, dtype=torch.float64)
    base_factors = _fields(n_base * spec.rank, shape, spec.smooth, spec.factor_rms, gen).reshape(n_base, spec.rank, *shape)
    base_w = 0.5 + torch.rand(n_base, generator=gen, dtype=torch.float64)
    means, bases, lowrank, weights = [], [], [], []
    for b in range(n_base):
        for g in range(order):
            means.append(group.act(base_means[b:b + 1], g).reshape(d))
            fac = group.act(base_factors[b], g).reshape(spec.rank, d).T if spec.rank else torch.zeros(d, 0, dtype=torch.float64)
            u, sv, _ = torch.linalg.svd(fac, full_matrices=False)
            bases.append(u)
            lowrank.append(sv ** 2)
            weights.append(base_w[b] / order)
    w = torch.stack(weights)
    mixture = GaussianMixture(w / w.sum(), torch.stack(means), torch.stack(bases), torch.stack(lowrank),
                              torch.full((spec.components,), spec.iso_std ** 2, dtype=torch.float64), shape)
    span = _orthonormal_span(torch.cat([mixture.means, mixture.basis.transpose(1, 2).reshape(-1, d)]))
    if span.shape[1] >= d:
        raise ValueError(f"world {spec.name!r}: means and factors span all {d} dimensions; the autoencoder "
                         "would be the identity (use fewer components or a lower rank)")
    D = _decoder(span, gen)
    return World(spec, mixture, D, mixture.rotated(D), span)


@functools.lru_cache(maxsize=8)
def world(name: str) -> World:
    """The registered world ``name``, built once per process."""
    return build(world_spec(name))
