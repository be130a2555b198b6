"""``biharmonic``: biharmonic inpainting by scikit-image, for the inpainting masks.

Calls ``skimage.restoration.inpaint_biharmonic(image, mask, channel_axis=-1)`` (Damelin & Hoang,
"On Surface Completion and Image Inpainting by Biharmonic Functions: Numerical Aspects", 2018) on
each row, with the operator's public ``mask`` attribute ((1 or B, 1, H, W), 1 = observed) giving
the unknown pixels (``mask == 0``). scikit-image keeps the observed pixels as measured (noisy) and
clips the fill to the observed per-channel range. It has no weight: the solver has no
``step_param`` (a sweep's ``step_size`` is dropped) and nothing for ``equibench tune`` to search.

Host side: scikit-image needs numpy, so the batch moves to the CPU once (one transfer of ``y`` and
the masks), rows are inpainted one after another in float64, and the result moves back to ``y``'s
device and dtype once. This is the one classical solver that is not device-resident.
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.restoration import inpaint_biharmonic

from solvers.classical.common import register_classical

TASKS = ("box_inpainting", "random_inpainting")


def inpaint_rows(y: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """scikit-image biharmonic inpainting per row: ``y`` (B, C, H, W), ``unknown`` (B, H, W) bool."""
    out = [inpaint_biharmonic(np.moveaxis(img, 0, -1), hole, channel_axis=-1) for img, hole in zip(y, unknown)]
    return np.moveaxis(np.stack(out), -1, 1)


@register_classical("biharmonic", tasks=TASKS, defaults={}, options={}, weighted=False)
def biharmonic(ctx):
    """Biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``) of the masked pixels; no
    weight. Runs on the CPU (one transfer each way per batch)."""
    y = ctx.y
    unknown = (ctx.operator.mask[:, 0] == 0).expand(y.shape[0], -1, -1)
    filled = inpaint_rows(y.detach().to("cpu", torch.float64).numpy(), unknown.cpu().numpy())
    return torch.from_numpy(filled).to(device=y.device, dtype=y.dtype)
