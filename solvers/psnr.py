"""PSNR, the one implementation: the orchestrator's per-image metric (``orchestrator.metrics``),
the oracle restart selection (``solvers.restarts``) and the embedded model card
(``solvers.embedded``) all call ``psnr``.

Images arrive as ``(B, C, H, W)`` in ``value_range`` (the project's ``[-1, 1]`` by default) and are
scored as displayed images: mapped to ``[0, 1]`` and clamped (``to_unit``), so an estimate outside
the range is scored as the picture a user would save. ``10 log10(1 / MSE)`` per image (data range
1); identical images give ``inf``, as scikit-image does. Computed in float64 (float32 on MPS, which
has no float64), on the inputs' device.
"""
from __future__ import annotations

from typing import Sequence

import torch


def float_dtype(device: torch.device) -> torch.dtype:
    """The dtype metrics compute in on ``device``: float64, float32 on MPS."""
    return torch.float32 if device.type == "mps" else torch.float64


def to_unit(x: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """``x`` mapped from ``value_range`` to ``[0, 1]`` and clamped, detached, in ``float_dtype``."""
    lo, hi = float(value_range[0]), float(value_range[1])
    x = x.detach().to(float_dtype(x.device))
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def check_pair(x_hat: torch.Tensor, x_true: torch.Tensor) -> None:
    """Two ``(B, C, H, W)`` tensors of one shape, else ``ValueError``."""
    if x_hat.ndim != 4 or x_hat.shape != x_true.shape:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x_hat.shape)} "
                         f"and {tuple(x_true.shape)}")


def psnr(x_hat: torch.Tensor, x_true: torch.Tensor, value_range: Sequence[float] = (-1.0, 1.0)) -> torch.Tensor:
    """Per-image PSNR in dB on images mapped to [0, 1] (data range 1); (B,)."""
    check_pair(x_hat, x_true)
    a, b = to_unit(x_hat, value_range), to_unit(x_true, value_range)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)
