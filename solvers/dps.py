"""DPS (Chung et al., 2023): DDPM ancestral sampling plus a gradient step on ``||y - A(x0_hat)||``.

    x0_hat  = clamp(Tweedie(x_t), -1, 1)            (clamp inside the gradient path, option)
    x'      = DDPM ancestral step from (x_t, x0_hat)
    x_{t-1} = x' - zeta * grad_{x_t} ( ||y - A(x0_hat)|| + lambda_t R(x0_hat) )

Checked against DPS2022/diffusion-posterior-sampling: ``guided_diffusion/condition_methods.py``
(``PosteriorSampling``: ``torch.linalg.norm(measurement - A(x_0_hat))``, not squared, gradient
w.r.t. the pre-step ``x_prev``, ``x_t -= norm_grad * scale``), ``guided_diffusion/gaussian_diffusion.py``
(``p_sample_loop``: ``p_sample`` first, then the conditioning on its output; ``clip_denoised``
clamps ``pred_xstart`` before the posterior mean, inside the graph) and ``configs/*`` (scale =
zeta per task: 0.3 SR/Gaussian/motion/nonlinear, 0.5 random inpainting, 1.0 phase retrieval).

Per row: zeta is ``batch.params["step_size"]`` (B,) and the residual is the operator's per-row norm
(official: one norm over the whole batch, run at batch 1 — identical there).

EquiReg attaches the library's way (Anima-Lab/Equireg ``README``/DPS example: penalty added to
the data loss before the gradient), so it shares zeta: ``lambda_t R`` on ``x0_hat`` (the
*clamped* estimate, which is what the data term sees too). Default lambda schedule ``noise_sqrt``
(paper App. E scales lambda by the noise schedule for Equi-DPS; reasons in ``solvers/equireg.py``).

Lambda's influence (``extras["influence_grad"]``, with a regularizer): per row, the mean over
the steps where the penalty is on of ``||grad_{x_t} lambda_t R|| / ||grad_{x_t} ||y - A(x0_hat)||||``
(zeta multiplies both, so it cancels); ``equireg.split_grad`` takes the two gradients apart.

Deviations: the ancestral step uses the fixed posterior variance (``variance`` option,
``small`` default) because the priors predict eps only — official DPS uses the FFHQ model's
learned variance; the timestep grid for ``num_steps < 1000`` is ``sampler.timestep_grid``.
"""
from __future__ import annotations

from solvers.api import register_solver
from solvers.equireg import write_influence
from solvers.sampler import guided_loop, initial_noise

DEFAULTS = {
    "step_size": None,  # zeta, per row; no silent default: it matters by several dB (FIELD-NOTES)
    "clamp": True,  # official clip_denoised
    "variance": "small",  # official: learned_range (not available from an eps-only prior)
}


@register_solver("dps", space="pixel", defaults=DEFAULTS, reg_schedule="noise_sqrt", row_params=("step_size",))
def dps(ctx):
    """DPS in pixel space; per-row zeta ``step_size``; EquiReg on the clamped ``x0_hat``."""
    reg = ctx.regularizer
    zeta = ctx.param("step_size")

    def loss(step):
        return ctx.residual(step.x0)

    def penalty(step):
        return reg.term(step.x0, step.i, step.n, step.sigma)

    x_T = initial_noise(ctx.prior, ctx.generators, ctx.dtype, ctx.device)
    x = guided_loop(ctx, x_T, update="ddpm", clamp=bool(ctx.options["clamp"]), variance=ctx.options["variance"],
                    loss=loss, penalty=penalty if reg is not None else None, scale=lambda step: zeta)
    write_influence(ctx)
    return x
