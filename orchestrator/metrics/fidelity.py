"""Raw-value metrics, one value per row: relative L2 and the measurement residual.

They see the raw values (no mapping to a display range, no clamping): they also serve PDE fields,
which are not images.

- Relative L2: ``||x_hat - x|| / ||x||`` per row (``inf``/``nan`` when ``x`` is zero).
- ``y_residual``: ``||y - A(x_hat)||`` per row through ``operator.residual`` (the operator owns its
  data loss; docs/CONTRACTS.md). The store keeps the solver's own value (``from_solver``: every
  solver writes ``extras["y_residual"]``), which the worker does not recompute.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.metrics.registry import register_metric

if TYPE_CHECKING:
    import torch


def rel_l2(x_hat: "torch.Tensor", x_true: "torch.Tensor") -> "torch.Tensor":
    """Per-row ``||x_hat - x|| / ||x||`` on the raw values; (B,)."""
    from solvers.psnr import check_pair, float_dtype

    check_pair(x_hat, x_true)
    dt = float_dtype(x_hat.device)
    d, x = x_hat.detach().to(dt).flatten(1), x_true.detach().to(dt).flatten(1)
    return (d - x).norm(dim=1) / x.norm(dim=1)


def y_residual(x_hat: "torch.Tensor", y: "torch.Tensor", operator) -> "torch.Tensor":
    """Per-row measurement consistency ``||y - A(x_hat)||`` via ``operator.residual``; (B,)."""
    import torch

    from solvers.psnr import float_dtype

    with torch.no_grad():
        return operator.residual(x_hat.detach(), y).to(float_dtype(x_hat.device))


register_metric("rel_l2", label="Rel. L2", direction="lower", kind="image", decimals=2, percent=True,
                fn=lambda m, c: rel_l2(c["x_hat"], c["x_true"]))
register_metric("y_residual", label="||y-A(x)||", direction="lower", kind="image", decimals=3, needs=("y", "operator"),
                from_solver=True, fn=lambda m, c: y_residual(c["x_hat"], c["y"], c["operator"]))
