"""Phase retrieval: the Fourier amplitude of the zero-padded image.

Checked in DPS (`DPS2022/diffusion-posterior-sampling`, guided_diffusion/measurements.py
``PhaseRetrievalOperator`` with util/fastmri_utils.py ``fft2c_new``) and DAPS
(`zhangbingliang2019/DAPS`, forward_operator/__init__.py ``PhaseRetrieval``): pad
``int(oversample / 8 * size)`` zeros on every side (oversample 2.0: 256 -> 384), then
``y = |fftshift(fft2(ifftshift(x_pad), norm="ortho"))|`` over the two spatial axes, per channel:
the amplitude, not its square. DPS applies it to x in [-1, 1] (``input_range="signed"``, the default
here); DAPS to ``(x + 1) / 2`` (``"unit"``). DPS hard-codes 256 in the pad; here it scales with H
and W separately.

The operator is non-linear (no transpose). `naive_inverse` returns what needs no phase: the DC
coefficient gives each channel's mean, ``|sum x| / sqrt(N_pad)``, so it returns the constant image
with that mean (mapped back from ``(x + 1) / 2`` for ``"unit"``). For ``"signed"`` the sign of the
mean is not identifiable (x and -x have the same amplitude) and the non-negative one is returned.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Operator, check_choice, check_number
from .registry import register

INPUT_RANGES = {
    "signed": (lambda x: x, lambda m: m),                 # DPS: x itself
    "unit": (lambda x: (x + 1) / 2, lambda m: 2 * m - 1),  # DAPS: (x + 1) / 2, and back
}


@register("phase_retrieval")
class PhaseRetrieval(Operator):
    """``y = |F(pad(x'))|`` with the centred orthonormal 2-D DFT; ``x'`` per ``input_range``."""

    linear = False
    # 32x32: oversample 2.0 as the paper: 8 px of zeros per side, a 48x48 amplitude.
    EMBEDDED_DEFAULTS = {"oversample": 2.0}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {"oversample": 2.0, "input_range": "signed"}

    @classmethod
    def _validate(cls, params, image_shape):
        check_number(cls.name, params, "oversample", lo=0.0)
        check_choice(cls.name, params, "input_range", INPUT_RANGES)

    @property
    def pads(self) -> tuple[int, int]:
        _, h, w = self.image_shape
        s = float(self.params["oversample"]) / 8.0
        return int(s * h), int(s * w)

    @property
    def measurement_shape(self):
        c, h, w = self.image_shape
        ph, pw = self.pads
        return (c, h + 2 * ph, w + 2 * pw)

    def _forward(self, x):
        ph, pw = self.pads
        xp = F.pad(INPUT_RANGES[self.params["input_range"]][0](x), (pw, pw, ph, ph))
        spectrum = torch.fft.fft2(torch.fft.ifftshift(xp, dim=(-2, -1)), norm="ortho")
        return torch.fft.fftshift(spectrum, dim=(-2, -1)).abs()

    def naive_inverse(self, y):
        """The constant image with each channel's measured mean (see the module docstring)."""
        self._check_input(y, self.measurement_shape, "y")
        _, h, w = self.image_shape
        mh, mw = y.shape[-2:]
        mean = y[..., mh // 2, mw // 2] * (mh * mw) ** 0.5 / (h * w)
        x = INPUT_RANGES[self.params["input_range"]][1](mean)
        return x[..., None, None].expand(-1, -1, h, w).clamp(-1, 1).contiguous()
