"""Measurement noise with per-row random streams.

``add_noise(y, sigma_y, generators)`` returns ``y + sigma_y * n`` where row ``i`` of ``n`` comes only
from ``generators[i]`` (drawn on that generator's device, then moved to ``y``'s), so a row's noise
does not depend on the batch it sits in. It mirrors `solvers/rng.py`'s ``randn_like_rows`` without
importing it (operators do not depend on solvers). The default ``sigma_y`` (0.05) belongs to the
spec, not to this function.
"""
from __future__ import annotations

from typing import Sequence

import torch


def add_noise(y: torch.Tensor, sigma_y: float | torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """``y + sigma_y * n``, ``n ~ N(0, I)`` per row; ``sigma_y`` a number or a ``(B,)`` tensor."""
    if y.dim() < 1 or y.shape[0] != len(generators):
        raise ValueError(f"add_noise: batch {y.shape[0] if y.dim() else 0} but {len(generators)} generators")
    noise = torch.stack([torch.randn(tuple(y.shape[1:]), generator=g, device=g.device, dtype=y.dtype)
                         for g in generators]).to(y.device)
    sigma = torch.as_tensor(sigma_y, dtype=y.dtype, device=y.device)
    if sigma.dim() == 1:
        if sigma.shape[0] != y.shape[0]:
            raise ValueError(f"add_noise: sigma_y has {sigma.shape[0]} entries for batch {y.shape[0]}")
        sigma = sigma.view(-1, *([1] * (y.dim() - 1)))
    elif sigma.dim() != 0:
        raise ValueError("add_noise: sigma_y must be a number or a (B,) tensor")
    return y + sigma * noise
