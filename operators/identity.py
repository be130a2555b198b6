"""Denoising: ``A = I`` (the measurement is the image plus noise, added by `add_noise`).

Checked against DPS's ``DenoiseOperator`` (`DPS2022/diffusion-posterior-sampling`,
guided_diffusion/measurements.py): forward and transpose are the identity.
"""
from __future__ import annotations

from .base import Operator
from .registry import register


@register("identity")
class Identity(Operator):
    """``y = x``; its own adjoint, pseudo-inverse and naive inverse."""

    linear = True
    EMBEDDED_DEFAULTS: dict = {}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {}

    def _forward(self, x):
        return x

    def _adjoint(self, y):
        return y

    _official_transpose = _adjoint

    def pseudo_inverse(self, y):
        self._check_input(y, self.measurement_shape, "y")
        return y

    def naive_inverse(self, y):
        self._check_input(y, self.measurement_shape, "y")
        return y
