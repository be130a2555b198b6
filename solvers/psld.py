"""PSLD (Rout et al., 2023): latent DDIM with a measurement term and a "gluing" term.

    z0      = Tweedie(z_t)                          (no clamp)
    z'      = DDIM(z_t, z0, eps), eta 0
    x0      = D(z0)
    glue    = || E(A^T y + x0 - A^T A x0) - z0 ||
    z_{t-1} = z' - grad_{z_t} ( omega ||A(x0) - y|| + gamma glue + lambda_t R(z0) )   (unit step)

Checked against LituRout/PSLD ``stable-diffusion/ldm/models/diffusion/psld.py``
(``p_sample_ddim``, ``general_inverse``/``inpainting`` branches): both norms unsquared
``torch.linalg.norm`` over the whole tensor, ``error = inpaint_error * gamma + meas_error * omega``,
gradient w.r.t. ``z_t``, ``z_prev - gradients``; the measurement prediction passes through the
noiser (``meas_pred = noiser(meas_pred)``) and the gluing uses the repo's ``operator.transpose``
(the identity for blur, nearest upsampling for SR). Defaults: Stable Diffusion's omega 1.0,
gamma 0.1 (box inpainting 0.01 / 0.1 and LDM-FFHQ 0.1 / 0.1, SR omega 0.9 per the PSLD scripts —
pass them per row).

Options and deviations:
- ``transpose``: ``adjoint`` (default, the true ``A^T``, so the gluing really projects onto the
  measurement-consistent set) or ``official`` (the repo's stand-in).
- ``noise_in_loss`` (default off): the official adds fresh measurement noise (``noise_sigma``,
  0.05) to ``A(x0)`` inside the loss each step; off, the loss is the operator's own residual.
- Norms per row (official: one norm over the batch, run at batch 1 — identical there).
- Grid/last step per ``sampler.timestep_grid`` (LDM: ``range(0, T, T/N) + 1``).

EquiReg: added to the same loss before the gradient (the library's PSLD recipe: ``equi``,
``norm``, hflip, every step, lambda 0.01, with ``f`` the decoder on ``z0``); default schedule
``cutoff`` (paper App. E: constant lambda, zero for the last 10% of sampling).
"""
from __future__ import annotations

import torch

from solvers.api import register_solver
from solvers.rng import randn_like_rows
from solvers.sampler import guided_loop, initial_noise

DEFAULTS = {
    "omega": 1.0,
    "gamma": 0.1,
    "eta": 0.0,
    "transpose": "adjoint",
    "noise_in_loss": False,
    "noise_sigma": 0.05,
}
TRANSPOSE_KINDS = ("adjoint", "official")


def _validate(prior, batch, num_steps, opts):
    if opts["transpose"] not in TRANSPOSE_KINDS:
        raise ValueError(f"transpose must be one of {TRANSPOSE_KINDS}, got {opts['transpose']!r}")
    if not batch.operator.linear:
        raise ValueError("psld's gluing term needs a linear operator")


def gluing(ctx, x0: torch.Tensor, z0: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-row ``||E(A^T y + x0 - A^T A x0) - z0||`` (PSLD's gluing / "inpaint_error")."""
    op = ctx.operator
    glued = op.transpose(ctx.y, kind=kind) + x0 - op.transpose(op.forward(x0), kind=kind)
    d = ctx.prior.encode(glued) - z0
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)


@register_solver("psld", space="latent", needs_transpose=True, defaults=DEFAULTS, reg_schedule="cutoff",
                 row_params=("omega", "gamma"), validate=_validate, step_param="omega")
def psld(ctx):
    """PSLD on a latent prior; per-row ``omega``, ``gamma``; EquiReg on ``z0`` in the same loss."""
    reg = ctx.regularizer
    omega, gamma = ctx.param("omega"), ctx.param("gamma")
    kind = ctx.options["transpose"]
    noisy = bool(ctx.options["noise_in_loss"])

    def loss(step):
        z0 = step.x0
        x0 = ctx.prior.decode(z0)
        if noisy:
            ax = ctx.operator.forward(x0)
            ax = ax + ctx.options["noise_sigma"] * randn_like_rows(ax, ctx.generators)
            meas = torch.linalg.vector_norm((ax - ctx.y).reshape(ax.shape[0], -1), dim=1)
        else:
            meas = ctx.residual(x0)
        total = omega * meas + gamma * gluing(ctx, x0, z0, kind)
        if reg is not None:
            total = total + reg.penalty(z0, step.i, step.n, step.sigma)
        return total

    z_T = initial_noise(ctx.prior, ctx.generators, ctx.dtype, ctx.device)
    z = guided_loop(ctx, z_T, update="ddim", eta=float(ctx.options["eta"]), loss=loss)
    with torch.no_grad():
        return ctx.prior.decode(z)
