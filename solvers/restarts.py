"""Best-of-K restart selection: per row, one of K runs of a solver (moved out of ``solvers/api.py``).

``select_restarts(runs, select, x_true)`` combines K ``SolveOutput`` runs of the same rows:
``measurement_consistency`` (default, ground-truth free) keeps per row the run with the lowest
``||y - A(x)||``; ``oracle_psnr`` the run with the highest PSNR against ``x_true`` — DAPS's
evaluation rule for phase retrieval (SPEC "Best of 4"), an oracle, and labelled so in ``meta``.
A diverged (or non-finite-residual) run is never selected while another run of that row is finite;
a row is ``diverged`` only when all its runs are.
"""
from __future__ import annotations

import math

import torch

from solvers.psnr import psnr

SELECT_CHOICES = ("measurement_consistency", "oracle_psnr")


def _pick(runs: list, res: torch.Tensor, select: str, x_true) -> tuple[torch.Tensor, str]:
    """(B,) index of the selected run per row, and the rule as recorded in ``meta``."""
    if select == "oracle_psnr":
        score = torch.stack([psnr(r.x, x_true.to(r.x)) for r in runs], 1)
        score = torch.where(torch.isfinite(res), score, torch.full_like(score, -math.inf))
        return score.argmax(1), "oracle_psnr (ORACLE: uses the ground truth)"
    return res.argmin(1), "measurement_consistency (ground-truth free)"


def select_restarts(runs: list, select: str, x_true: torch.Tensor | None, meta: dict):
    """One ``SolveOutput`` from K runs: per row the selected run's ``x``, status and extras, plus
    ``extras["restart"]`` (B,) (the chosen run) and ``extras["restart_residuals"]`` (B, K)."""
    from solvers.api import SolveOutput  # local: api imports this module

    res = torch.stack([r.extras["y_residual"] for r in runs], 1)  # (B, K)
    div = torch.tensor([[s == "diverged" for s in r.status] for r in runs], device=res.device).T
    res = torch.where(div | ~torch.isfinite(res), torch.full_like(res, math.inf), res)
    pick, meta["select"] = _pick(runs, res, select, x_true)
    B = res.shape[0]
    rows = torch.arange(B, device=pick.device)
    x = torch.stack([r.x for r in runs], 1)[rows, pick]
    diverged = [all(r.status[i] == "diverged" for r in runs) for i in range(B)]
    extras = {}
    for key in runs[0].extras:
        stacked = torch.stack([r.extras[key] for r in runs], 1)
        extras[key] = stacked[rows, pick.to(stacked.device)]
    extras["restart"] = pick
    extras["restart_residuals"] = res
    return SolveOutput(x, ["diverged" if d else "ok" for d in diverged], extras, meta)
