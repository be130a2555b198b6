"""Inpainting: ``y = m * x`` with a 0/1 mask ``m`` shared by all channels.

Checked in DPS (`DPS2022/diffusion-posterior-sampling`, util/img_utils.py: `random_sq_bbox`,
`mask_generator`) and DAPS (`zhangbingliang2019/DAPS`, forward_operator/__init__.py):
- box: a ``box_size``-square hole, top and left each uniform in ``[margin, size - margin - box)``
  (``np.random.randint``, upper bound exclusive); at 256 px the hole is 128 and DPS's margin 16
  (DAPS uses 32: pass ``margin``).
- random: exactly ``int(H * W * p)`` pixels dropped without replacement (``np.random.choice(...,
  replace=False)``), not Bernoulli; ReSample/DAPS use p = 0.7, DPS/PSLD draw p ~ U(0.3, 0.7) per
  image (``p_range``).
The measurement keeps the image shape; noise is added to every pixel, hole included (that is
`add_noise`'s job). A is a diagonal 0/1 projection, so it is self-adjoint and its own
pseudo-inverse, and the naive inverse is ``A^T y = m * y``. ``transpose(kind="official")`` is also
``m * y`` (the masked measurement the latent solvers glue in); note that DPS's own
``InpaintingOperator.transpose`` (guided_diffusion/measurements.py) returns ``y`` unchanged.
"""
from __future__ import annotations

import torch

from .base import Operator, check_number, scale_length
from .registry import register


class MaskOperator(Operator):
    """Shared machinery: a per-row mask buffer ``(B, 1, H, W)``; subclasses only draw the mask."""

    linear = True
    _TENSORS = ("mask",)

    def _draw_mask(self, generator: torch.Generator) -> torch.Tensor:
        """One ``(H, W)`` 0/1 mask from ``generator``."""
        raise NotImplementedError

    def _build(self) -> None:
        self.mask = torch.stack([self._draw_mask(g) for g in self.generators()])[:, None].to(torch.float64)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self._buf("mask", x)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y * self._buf("mask", y)

    _official_transpose = _adjoint

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """A 0/1 diagonal projection is its own pseudo-inverse."""
        return self.transpose(y)

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``A^T y``: the observed pixels, zeros (mid-grey) in the holes."""
        return self.transpose(y)


@register("box_inpainting")
class BoxInpainting(MaskOperator):
    """A square hole at a seeded random position (DPS's box mask)."""

    # 32x32: a 16x16 hole is a quarter of the area, as the paper's 128 hole at 256; margin 2 keeps
    # DPS's 16/256 ratio, so the top-left corner ranges over [2, 14).
    EMBEDDED_DEFAULTS = {"box_size": 16, "margin": 2}

    @classmethod
    def paper_defaults(cls, image_shape):
        _, h, _ = image_shape
        return {"box_size": scale_length(128, h), "margin": scale_length(16, h)}

    @classmethod
    def _validate(cls, params, image_shape):
        _, h, w = image_shape
        check_number(cls.name, params, "box_size", lo=1, integer=True)
        check_number(cls.name, params, "margin", lo=0, integer=True)
        box, margin = params["box_size"], params["margin"]
        if min(h, w) - margin - box <= margin:
            raise ValueError(f"{cls.name}: box_size {box} with margin {margin} leaves no position in a "
                             f"{h}x{w} image; need box_size + 2 * margin < {min(h, w)}")

    def _draw_mask(self, generator):
        _, h, w = self.image_shape
        box, margin = self.params["box_size"], self.params["margin"]
        top = int(torch.randint(margin, h - margin - box, (1,), generator=generator))
        left = int(torch.randint(margin, w - margin - box, (1,), generator=generator))
        mask = torch.ones(h, w)
        mask[top:top + box, left:left + box] = 0
        return mask


@register("random_inpainting")
class RandomInpainting(MaskOperator):
    """Exactly ``int(H*W*p)`` pixels dropped, positions drawn without replacement per seed."""

    # 32x32: p = 0.7 as ReSample/DAPS; at that rate the task stays a real inverse problem at any size.
    EMBEDDED_DEFAULTS = {"p": 0.7}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {"p": 0.7, "p_range": None}

    @classmethod
    def _validate(cls, params, image_shape):
        check_number(cls.name, params, "p", lo=0.0, hi=1.0, hi_open=True)
        rng = params["p_range"]
        if rng is not None:
            if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) for v in rng)
                    and 0.0 <= rng[0] <= rng[1] < 1.0):
                raise ValueError(f"{cls.name}: parameter 'p_range' must be null or [lo, hi] with 0 <= lo <= hi < 1, got {rng!r}")

    def _build(self) -> None:
        self.drop_fraction: list[float] = []
        super()._build()

    def _draw_mask(self, generator):
        _, h, w = self.image_shape
        rng = self.params["p_range"]
        p = self.params["p"]
        if rng is not None:  # DPS/PSLD: p ~ U(lo, hi) per image
            p = rng[0] + (rng[1] - rng[0]) * float(torch.rand((), generator=generator, dtype=torch.float64))
        self.drop_fraction.append(p)
        n_drop = int(h * w * p)
        mask = torch.ones(h * w)
        mask[torch.randperm(h * w, generator=generator)[:n_drop]] = 0
        return mask.view(h, w)
