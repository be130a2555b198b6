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

What the gluing does. ``A^T y + (I - A^T A) x0`` is the orthogonal projection of ``x0`` onto the
measurement-consistent set ``{x : A x = y}`` **only when ``A A^T = I``** (rows of ``A``
orthonormal: e.g. a pixel-selection mask read as a map onto the observed pixels). For a general
``A`` (bicubic SR, blur, a dense matrix) the adjoint gluing point is not measurement consistent;
its consistent counterpart is ``A^+ y + (I - A^+ A) x0 = x0 + A^+ (y - A x0)``. Hence:

Options and deviations:
- ``gluing``: ``adjoint`` (default, the official form with ``A^T``) or ``pseudo_inverse`` (``A^+``:
  the gluing point satisfies ``A x = y`` for any full-row-rank ``A``; ``operator.pseudo_inverse``
  where the operator has a closed form -- masks, SR --, else conjugate gradients,
  ``operators.cg_pseudo_inverse`` with ``pinv_iters`` steps, e.g. for blur).
- ``transpose`` (adjoint gluing only): ``adjoint`` (default, the true ``A^T``) or ``official`` (the
  repo's stand-in).
- ``noise_in_loss`` (default off): the official adds fresh measurement noise (``noise_sigma``,
  0.05) to ``A(x0)`` inside the loss each step; off, the loss is the operator's own residual.
- Norms per row (official: one norm over the batch, run at batch 1 — identical there).
- Grid/last step per ``sampler.timestep_grid`` (LDM: ``range(0, T, T/N) + 1``).
- Step budget: the unit step on ``omega ||A D(z0) - y||`` is PSLD's 1000-step convention. Below
  ~200 steps PSLD runs outside it: each DDIM move is larger but the guidance step is not, and at
  20 steps the early guidance is ~10x the DDIM move (FIELD-NOTES, 2026-12-01); scale ``omega`` /
  ``gamma`` with the budget rather than reuse the paper's values.

EquiReg: added to the same loss before the gradient (the library's PSLD recipe: ``equi``,
``norm``, hflip, every step, lambda 0.01, with ``f`` the decoder on ``z0``); default schedule
``cutoff`` (paper App. E: constant lambda, zero for the last 10% of sampling). Lambda's influence
(``extras["influence_grad"]``): per row, the mean over the steps where the penalty is on of
``||grad_{z_t} lambda_t R|| / ||grad_{z_t}(omega meas + gamma glue)||`` (``equireg.split_grad``).
"""
from __future__ import annotations

import torch

from operators.base import cg_pseudo_inverse
from solvers.api import register_solver
from solvers.equireg import write_influence
from solvers.rng import randn_like_rows
from solvers.sampler import guided_loop, initial_noise

DEFAULTS = {
    "omega": 1.0,
    "gamma": 0.1,
    "eta": 0.0,
    "gluing": "adjoint",
    "transpose": "adjoint",
    "pinv_iters": 100,
    "noise_in_loss": False,
    "noise_sigma": 0.05,
}
TRANSPOSE_KINDS = ("adjoint", "official")
GLUING_KINDS = ("adjoint", "pseudo_inverse")


def _validate(prior, batch, num_steps, opts):
    if opts["transpose"] not in TRANSPOSE_KINDS:
        raise ValueError(f"transpose must be one of {TRANSPOSE_KINDS}, got {opts['transpose']!r}")
    if opts["gluing"] not in GLUING_KINDS:
        raise ValueError(f"gluing must be one of {GLUING_KINDS}, got {opts['gluing']!r}")
    if opts["gluing"] == "pseudo_inverse" and opts["transpose"] != "adjoint":
        raise ValueError("transpose 'official' applies to gluing 'adjoint' only; gluing 'pseudo_inverse' uses A^+")
    it = opts["pinv_iters"]
    if not isinstance(it, int) or isinstance(it, bool) or it < 1:
        raise ValueError(f"pinv_iters must be an int >= 1, got {it!r}")
    if not batch.operator.linear:
        raise ValueError("psld's gluing term needs a linear operator")


def pseudo_inverse(op, y: torch.Tensor, iters: int) -> torch.Tensor:
    """``A^+ y``: the operator's closed form where it has one, else conjugate gradients."""
    closed = getattr(op, "pseudo_inverse", None)
    if closed is not None:
        try:
            return closed(y)
        except NotImplementedError:  # the contract: "where cheap", NotImplementedError otherwise
            pass
    return cg_pseudo_inverse(op, y, iters)


def glue_point(ctx, x0: torch.Tensor) -> torch.Tensor:
    """The gluing point: ``A^T y + x0 - A^T A x0`` (``adjoint``, with the ``transpose`` kind) or
    ``x0 + A^+ (y - A x0)`` (``pseudo_inverse``; = ``A^+ y + (I - A^+ A) x0``, one solve)."""
    op, o = ctx.operator, ctx.options
    if o["gluing"] == "pseudo_inverse":
        return x0 + pseudo_inverse(op, ctx.y - op.forward(x0), int(o["pinv_iters"]))
    kind = o["transpose"]
    return op.transpose(ctx.y, kind=kind) + x0 - op.transpose(op.forward(x0), kind=kind)


def gluing(ctx, x0: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """Per-row ``||E(glue_point(x0)) - z0||`` (PSLD's gluing / "inpaint_error")."""
    d = ctx.prior.encode(glue_point(ctx, x0)) - z0
    return torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1)


@register_solver("psld", space="latent", needs_transpose=True, defaults=DEFAULTS, reg_schedule="cutoff",
                 row_params=("omega", "gamma"), validate=_validate, step_param="omega")
def psld(ctx):
    """PSLD on a latent prior; per-row ``omega``, ``gamma``; EquiReg on ``z0`` in the same loss."""
    reg = ctx.regularizer
    omega, gamma = ctx.param("omega"), ctx.param("gamma")
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
        return omega * meas + gamma * gluing(ctx, x0, z0)

    def penalty(step):
        return reg.term(step.x0, step.i, step.n, step.sigma)

    z_T = initial_noise(ctx.prior, ctx.generators, ctx.dtype, ctx.device)
    z = guided_loop(ctx, z_T, update="ddim", eta=float(ctx.options["eta"]), loss=loss,
                    penalty=penalty if reg is not None else None)
    write_influence(ctx)
    with torch.no_grad():
        return ctx.prior.decode(z)
