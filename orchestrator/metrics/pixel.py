"""Display-image metrics, one value per image: PSNR and SSIM (raw-value errors: ``fidelity``).

- PSNR and SSIM see images as displayed: mapped from ``value_range`` to ``[0, 1]`` and clamped.
  PSNR is ``solvers.psnr.psnr`` (the project's one implementation, also used by the oracle
  restart selection and the embedded model card): ``10 log10(1 / MSE)``, ``inf`` for identical
  images, as scikit-image does.
- SSIM: Wang et al. with an 11x11 Gaussian window of std 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
  population (not sample) covariances, averaged over the valid region and the channels. This is
  exactly scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)``: its Gaussian filter (truncate
  3.5 -> radius 5) followed by cropping 5 pixels per border equals a 'valid' 11x11 convolution.
  ``tests/test_metrics.py`` checks both against scikit-image to 1e-4 (they agree to ~1e-15).
  Computed in float64 (float32 on MPS, which has no float64).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.metrics.registry import register_metric

if TYPE_CHECKING:
    import torch


def psnr(x_hat: "torch.Tensor", x_true: "torch.Tensor", value_range=(-1.0, 1.0)) -> "torch.Tensor":
    """Per-image PSNR in dB on images mapped to [0, 1] (data range 1); (B,). See ``solvers.psnr``."""
    from solvers.psnr import psnr as _psnr

    return _psnr(x_hat, x_true, value_range)


def _gaussian_1d(size: int, sigma: float, dtype, device) -> "torch.Tensor":
    import torch

    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(x_hat: "torch.Tensor", x_true: "torch.Tensor", value_range=(-1.0, 1.0), win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> "torch.Tensor":
    """Per-image SSIM on [0, 1] images with a Gaussian window (see the module docstring); (B,)."""
    import torch
    import torch.nn.functional as F

    from solvers.psnr import check_pair, to_unit

    check_pair(x_hat, x_true)
    B, C, H, W = x_hat.shape
    if H < win_size or W < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {H}x{W}")
    a, b = to_unit(x_hat, value_range), to_unit(x_true, value_range)
    g = _gaussian_1d(win_size, sigma, a.dtype, a.device)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (B, 5C, H, W)
    n = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    mu_a, mu_b, e_aa, e_bb, e_ab = stack.split(C, dim=1)
    var_a, var_b, cov = e_aa - mu_a ** 2, e_bb - mu_b ** 2, e_ab - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2  # data range 1
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


register_metric("psnr", label="PSNR", direction="higher", kind="image", decimals=2,
                fn=lambda m, c: psnr(c["x_hat"], c["x_true"], m.value_range))
register_metric("ssim", label="SSIM", direction="higher", kind="image", decimals=3,
                fn=lambda m, c: ssim(c["x_hat"], c["x_true"], m.value_range))
