"""A seeded dead-leaves image model: the embedded world's in-distribution data.

Why dead leaves (Matheron 1968; Lee, Mumford and Huang, "Occlusion models for natural images",
IJCV 2001): occluding opaque shapes with power-law sizes reproduce the statistics that make
natural images hard to restore (scale invariance, a ~1/f^2 power spectrum, sharp occlusion edges,
flat regions), yet the model is a *distribution* one can sample without limit and split by seed,
so train / tune / report images are independent draws of exactly the same law, which a bank of
crops of ten photos cannot give.

The law is exactly invariant under the dihedral group D4 (flips and 90-degree rotations), the
group EquiReg assumes: leaf centres are uniform on a square that extends past the image by the
largest radius on every side; shapes are discs or axis-aligned rectangles whose two sides are
i.i.d. (a rotation swaps them); each leaf's colour ramp has a uniformly distributed direction;
anti-aliasing is a 2x2 box average of a 2x supersampled render (itself D4-symmetric).

- sizes: radius (disc) or half-side (rectangle) ``r`` with density ~ ``r^-3`` on ``[R_MIN, R_MAX]``
  pixels (the scale-invariant exponent of Lee et al.); 
- colours: pixels drawn from the palette photos (``PALETTE_PHOTOS`` in ``data.py``), plus a small
  linear ramp per leaf (shading) and no noise;
- occlusion: leaves fall front to back; a pixel shows the first leaf that covers it, and a
  background colour where none does (rare with ``N_LEAVES`` leaves).

Each image is a pure function of its integer seed (one ``torch.Generator`` per image), so the
data are the same on every machine and an image can be named by its seed alone.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .photos import quantize

VERSION = "v1"  # bump when the law changes (names the cached training bank)

R_MIN, R_MAX = 1.5, 16.0  # in output pixels (32x32 images)
N_LEAVES = 300
SUPERSAMPLE = 2
PALETTE_WINDOW = 0.25  # fraction of a palette photo's side that one image draws its colours from
RAMP_STD = 0.35  # colour change (in [0, 1] units) across one R_MAX along the ramp direction


def _power_law(gen: torch.Generator, n: int, lo: float, hi: float, alpha: float = 3.0) -> torch.Tensor:
    """``n`` draws with density ~ r^-alpha on [lo, hi] (inverse CDF)."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    e = 1.0 - alpha
    return ((lo ** e + u * (hi ** e - lo ** e)) ** (1.0 / e)).float()


def _colours(gen: torch.Generator, palette: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` colours from one random window of one palette photo (``palette``: (P, 3, S, S)), so
    an image's colours are as correlated as a scene's; the window is ``PALETTE_WINDOW`` of S."""
    p, _, s, _ = palette.shape
    w = max(1, int(round(PALETTE_WINDOW * s)))
    k = int(torch.randint(0, p, (1,), generator=gen))
    top, left = (int(v) for v in torch.randint(0, s - w + 1, (2,), generator=gen))
    window = palette[k, :, top: top + w, left: left + w].reshape(3, -1).T
    return window[torch.randint(0, window.shape[0], (n,), generator=gen)]


def leaf_params(seed: int, palette: torch.Tensor, size: int) -> dict:
    """The random parameters of one image (all drawn from its own generator, in a fixed order)."""
    gen = torch.Generator().manual_seed(int(seed))
    n = N_LEAVES
    span = size + 2 * R_MAX
    centre = torch.rand(n, 2, generator=gen) * span - R_MAX  # (row, col) in output pixels
    r1 = _power_law(gen, n, R_MIN, R_MAX)
    r2 = _power_law(gen, n, R_MIN, R_MAX)
    is_disc = torch.rand(n, generator=gen) < 0.5
    colour = _colours(gen, palette, n + 1)  # +1: background
    angle = torch.rand(n, generator=gen) * (2 * math.pi)
    ramp = torch.randn(n, 3, generator=gen) * (RAMP_STD / R_MAX)
    return {"centre": centre, "r1": r1, "r2": r2, "disc": is_disc, "colour": colour, "angle": angle, "ramp": ramp}


def render(p: dict, size: int) -> torch.Tensor:
    """One image (3, size, size) in [0, 1] from ``leaf_params``."""
    s = SUPERSAMPLE
    coords = (torch.arange(size * s, dtype=torch.float32) + 0.5) / s  # pixel centres, output units
    yy, xx = coords.view(1, -1, 1), coords.view(1, 1, -1)
    dy = yy - p["centre"][:, 0].view(-1, 1, 1)
    dx = xx - p["centre"][:, 1].view(-1, 1, 1)
    r1, r2 = p["r1"].view(-1, 1, 1), p["r2"].view(-1, 1, 1)
    disc = dy.square() + dx.square() <= r1.square()
    rect = (dy.abs() <= r1) & (dx.abs() <= r2)
    cover = torch.where(p["disc"].view(-1, 1, 1), disc, rect)  # (n, H, W)
    any_cover = cover.any(0)
    first = cover.float().argmax(0)  # the front-most covering leaf (leaves are listed front to back)
    n = cover.shape[0]
    direction = torch.stack([torch.sin(p["angle"]), torch.cos(p["angle"])], 1)  # (n, 2)
    proj = dy * direction[:, 0].view(-1, 1, 1) + dx * direction[:, 1].view(-1, 1, 1)  # (n, H, W)
    pick = first.unsqueeze(0)
    along = proj.gather(0, pick)[0]  # (H, W): position along the chosen leaf's ramp
    base = p["colour"][:n][first]  # (H, W, 3)
    shade = p["ramp"][first] * along.unsqueeze(-1)
    img = torch.where(any_cover.unsqueeze(-1), base + shade, p["colour"][n].expand_as(base))
    img = img.permute(2, 0, 1).clamp(0, 1)
    return quantize(F.avg_pool2d(img[None], s)[0])


def image(seed: int, palette: torch.Tensor, size: int) -> torch.Tensor:
    """The dead-leaves image of ``seed`` as (3, size, size) in [0, 1]."""
    return render(leaf_params(seed, palette, size), size)


def images(seeds, palette: torch.Tensor, size: int) -> torch.Tensor:
    """Images of ``seeds`` stacked, (N, 3, size, size) in [0, 1]."""
    return torch.stack([image(int(s), palette, size) for s in seeds])
