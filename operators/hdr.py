"""High dynamic range: ``y = clip(scale * x, -1, 1)``.

Checked in DAPS (`zhangbingliang2019/DAPS`, forward_operator/__init__.py ``HighDynamicRange``,
scale 2). Non-linear: the gradient is zero wherever the measurement saturates. `naive_inverse`
returns ``y / scale``, exact on every unsaturated pixel (the measurement itself would be the image
brightened ``scale`` times).
"""
from __future__ import annotations

import torch

from .base import Operator, check_number
from .registry import register


@register("hdr")
class HighDynamicRange(Operator):
    """``y = clamp(scale * x, -1, 1)``."""

    linear = False
    # 32x32: scale 2 as the paper; the task does not depend on the image size.
    EMBEDDED_DEFAULTS = {"scale": 2.0}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {"scale": 2.0}

    @classmethod
    def _validate(cls, params, image_shape):
        check_number(cls.name, params, "scale", lo=0.0, lo_open=True)

    def _forward(self, x):
        return torch.clamp(self.params["scale"] * x, -1, 1)

    def naive_inverse(self, y):
        """``y / scale``: the unclipped inverse."""
        self._check_input(y, self.measurement_shape, "y")
        return y / self.params["scale"]
