"""ReSample (Song et al., 2024): latent DDIM + DPS-like steps + hard data consistency + resampling.

Every step (index ``k = N-1-i`` counts down from ``N-1``):

    z0      = Tweedie(z_t)
    z'      = DDIM(z_t, z0, eps), eta 0
    z'      = z' - 0.5 abar_t grad_{z_t} ||y - A(D(z0))||                     (DPS-like step)

and when ``0 < k <= N - N//3`` and ``k % period == 0`` (hard data consistency):

    z0*     = Tweedie after up to 4 unconditional DDIM moves from z' (5 look-ahead evaluations)
    k >= N//3: x* = argmin_x MSE(y, A(x)) from D(z0*)  (AdamW lr 1e-2), z* = E(x*)   (pixel stage)
    k <  N//3: z* = argmin_z MSE(y, A(D(z))) + lambda_t R(z) from z0*  (AdamW lr 5e-3) (latent stage)
    g       = 40 (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)
    z_{t-1} = (g sqrt(abar_prev) z* + (1 - abar_prev) z') / (g + 1 - abar_prev)
              + sqrt(1 / (1/g + 1/(1 - abar_prev))) n

and after the last step one more latent optimization of the final ``z`` (official), then ``D(z)``.

Checked against soominkwon/resample ``ldm/models/diffusion/ddim.py`` (``resample_sampling``:
``scale=a_t*.5``, ``splits = 3``, ``index <= total_steps - index_split and index > 0``,
``index % 10 == 0``, ``inter_timesteps = 5``, the sigma formula with 40, pixel stage for
``index >= index_split``, ``stochastic_resample``, the final ``latent_optimization``;
``pixel_optimization``: AdamW lr 1e-2, 2000 iterations, stop when MSE < 1e-6;
``latent_optimization``: AdamW lr 5e-3, 500 iterations, stop when MSE < 1e-6 or, after 200
iterations, when the loss 200 iterations earlier was lower; AdamW's default weight decay 0.01 in
both, kept) and ``ldm_inverse/condition_methods.py`` (unsquared norm of ``y - A(D(x0_hat))``,
gradient w.r.t. ``z_t``).

Deviations, each a named option:
- ``tweedie``: ``correct`` (default) uses ``(z_t - sqrt(1 - abar) eps) / sqrt(abar)``; the official
  ``pseudo_x0`` uses ``(1 - abar)`` in place of ``sqrt(1 - abar)`` — ``official`` reproduces it (in
  the DPS-like step and the look-ahead).
- ``period``: the official every-10th-index rule is for 500 steps; ``auto`` scales it to
  ``max(1, round(10 N / 500))`` so the hard-consistency indices keep their place in the trajectory.
- ``pixel_iters`` / ``latent_iters`` / ``plateau``: ``auto`` scales 2000 / 500 / 200 by
  ``min(1, N / 500)`` (at least 20 / 10 / 5) so small budgets stay small; integers are used as given.
- Per-row everything: each row's optimizer loss is its own MSE (sum of rows before backward, so
  each row gets its own gradient; AdamW is elementwise) and each row stops on its own criterion
  (official: one loss for the whole batch).
- Grid and final ``abar_prev = 1`` per ``sampler.timestep_grid``.

EquiReg joins the latent-optimization objective only (paper App. E, Algorithms 4-5), with
``lambda_t`` at the current outer step (``N-1`` for the final optimization); default schedule
``cutoff`` (paper: constant, zero for the last 10% of sampling). Lambda's influence, per row, over
the latent-optimisation iterations in which the penalty is on and the row still moves (the penalty
never enters the DPS-like steps or the pixel stage, so they do not count):
``extras["influence_grad"]`` = mean ``||grad_z lambda_t R|| / ||grad_z MSE(y, A(D(z)))||`` and
``extras["influence_obj"]`` = mean ``lambda_t R / MSE(y, A(D(z)))`` (``equireg.split_grad``).
"""
from __future__ import annotations

import math

import torch

from solvers.api import register_solver
from solvers.equireg import split_grad, write_influence
from solvers.hostflag import StopFlag
from solvers.rng import randn_like_rows
from solvers.sampler import abar_rows, ddim_step, guided_loop, initial_noise, timestep_grid, tweedie

DEFAULTS = {
    "dps_scale": 0.5,  # z' -= dps_scale * abar_t * grad
    "resample_gamma": 40.0,
    "period": "auto",  # official 10 at 500 steps
    "lookahead": 5,  # official inter_timesteps
    "pixel_lr": 1e-2,
    "latent_lr": 5e-3,
    "pixel_iters": "auto",  # official 2000
    "latent_iters": "auto",  # official 500
    "plateau": "auto",  # official 200
    "stop_eps": 1e-3,  # stop when MSE < stop_eps**2
    "weight_decay": 0.01,  # torch AdamW default, as the official
    "final_latent_opt": True,
    "tweedie": "correct",
}
TWEEDIE = ("correct", "official")


def _auto(value, official: int, n: int, floor: int) -> int:
    if value == "auto":
        return max(floor, int(round(official * min(1.0, n / 500))))
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"expected 'auto' or an int >= 0, got {value!r}")
    return value


def _validate(prior, batch, num_steps, opts):
    if opts["tweedie"] not in TWEEDIE:
        raise ValueError(f"tweedie must be one of {TWEEDIE}, got {opts['tweedie']!r}")
    for k, official, floor in (("pixel_iters", 2000, 20), ("latent_iters", 500, 10), ("plateau", 200, 5)):
        _auto(opts[k], official, num_steps, floor)
    if opts["period"] != "auto" and (not isinstance(opts["period"], int) or opts["period"] < 1):
        raise ValueError(f"period must be 'auto' or an int >= 1, got {opts['period']!r}")


def _z0(prior, z_t, t, eps, kind):
    """Tweedie from the model's eps, correct or as the official ``pseudo_x0`` (see module doc)."""
    if kind == "correct":
        return tweedie(prior, z_t, t, eps=eps)[0]
    a = abar_rows(prior, t, z_t).view(-1, *([1] * (z_t.ndim - 1)))
    return (z_t - (1 - a) * eps) / a.sqrt()


def adamw_options(device: torch.device) -> dict:
    """AdamW's extra options on ``device``: ``capturable`` on CUDA keeps its step counter on the device
    (the default keeps it on the host and reads it with ``.item()`` every step: a host sync)."""
    return {"capturable": True} if torch.device(device).type == "cuda" else {}


def optimize_rows(init: torch.Tensor, objective, *, lr: float, iters: int, stop_below: float,
                  plateau: int | None = None, weight_decay: float = 0.01, penalty=None, meter=None) -> torch.Tensor:
    """Per-row AdamW on ``objective(v) [+ penalty(v).value] -> (B,)`` from ``init``; each row stops on its own.

    A row stops after the step on which its loss fell below ``stop_below`` or (with ``plateau``)
    exceeded its loss ``plateau`` iterations earlier; stopped rows keep their value. Losses of rows
    are summed before the gradient, so rows never mix (AdamW is elementwise). ``penalty(v) ->
    equireg.PenaltyTerm | None`` joins the loss; its gradient is taken apart from the data
    objective's (``equireg.split_grad``) and ``meter`` (an ``equireg.Influence``) records, for the
    rows still moving, the gradient ratio and the objective ratio ``lambda R / objective``.
    """
    v = init.detach().clone().requires_grad_(True)
    opt = torch.optim.AdamW([v], lr=lr, weight_decay=weight_decay, **adamw_options(v.device))
    B = v.shape[0]
    active = torch.ones(B, dtype=torch.bool, device=v.device)
    history: list[torch.Tensor] = []
    stop = StopFlag(v.device)  # "every row stopped", read without blocking on the device (solvers.hostflag)
    for _ in range(iters):
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            data = objective(v)
            term = penalty(v) if penalty is not None else None
        v.grad = split_grad(data, term, v, meter, rows=active)
        loss = data if term is None else data + term.value
        if term is not None and meter is not None:
            meter.add("influence_obj", term.value, data, term.applied & active)
        before = v.detach().clone()
        opt.step()
        cur = loss.detach()
        done = (cur < stop_below) | ~torch.isfinite(cur)
        if plateau:
            history.append(cur)
            if len(history) > plateau:
                done = done | (history.pop(0) < cur)
        with torch.no_grad():
            keep = (~active).view(-1, *([1] * (v.ndim - 1)))
            v.copy_(torch.where(keep, before, v))
        active = active & ~done
        stop.post(~active.any())
        if stop.done():
            break
    return v.detach()


@register_solver("resample", space="latent", defaults=DEFAULTS, reg_schedule="cutoff", validate=_validate,
                 row_params=("dps_scale",), step_param="dps_scale")
def resample(ctx):
    """ReSample on a latent prior; EquiReg in the latent-space optimization only."""
    prior, op, o = ctx.prior, ctx.operator, ctx.options
    reg = ctx.regularizer
    N = ctx.num_steps
    grid = timestep_grid(prior, N)
    period = _auto(o["period"], 10, N, 1) if o["period"] == "auto" else o["period"]
    pixel_iters = _auto(o["pixel_iters"], 2000, N, 20)
    latent_iters = _auto(o["latent_iters"], 500, N, 10)
    plateau = _auto(o["plateau"], 200, N, 5)
    split = N // 3
    m = math.prod(op.measurement_shape)
    stop = float(o["stop_eps"]) ** 2

    def mse(x):
        return op.residual(x, ctx.y) ** 2 / m

    def latent_opt(z_init, step_index):
        # on the rows' device, filled (a CPU tensor moved there per call would be a host-to-device sync)
        sigma = prior.schedule.sigma(torch.full((), float(grid[step_index][0]), dtype=torch.float64, device=z_init.device))
        pen = (lambda z: reg.term(z, step_index, N, sigma)) if reg is not None else None
        return optimize_rows(z_init, lambda z: mse(prior.decode(z)), lr=o["latent_lr"], iters=latent_iters,
                             stop_below=stop, plateau=plateau, weight_decay=o["weight_decay"], penalty=pen,
                             meter=reg.influence if reg is not None else None)

    def dps_loss(step):
        z0 = step.x0 if o["tweedie"] == "correct" else _z0(prior, step.x_t, step.t, step.eps, "official")
        return ctx.residual(prior.decode(z0))

    scale_rows = ctx.param("dps_scale")  # per row: a sweep's step_size lands here

    def dps_scale(step):
        return scale_rows * step.abar_t

    def hard_consistency(step, z_prev):
        k = N - 1 - step.i
        if not (0 < k <= N - split and k % period == 0):
            return z_prev
        with torch.no_grad():  # look-ahead: Tweedie after up to lookahead-1 unconditional DDIM moves
            z = z_prev
            moves = max(0, min(int(o["lookahead"]) - 1, N - 2 - step.i))
            for j in range(moves):
                t_j, t_next = grid[step.i + 1 + j]
                eps = prior.eps(z, torch.full((z.shape[0],), t_j, dtype=torch.long, device=z.device))
                z = ddim_step(prior, z, _z0(prior, z, t_j, eps, "correct"), eps, t_j, t_next)
            t_look = grid[step.i + 1 + moves][0]
            eps = prior.eps(z, torch.full((z.shape[0],), t_look, dtype=torch.long, device=z.device))
            z0 = _z0(prior, z, t_look, eps, o["tweedie"])
        if k >= split:
            x_star = optimize_rows(prior.decode(z0).detach(), mse, lr=o["pixel_lr"], iters=pixel_iters,
                                   stop_below=stop, weight_decay=o["weight_decay"])
            with torch.no_grad():
                z_star = prior.encode(x_star)
        else:
            z_star = latent_opt(z0, step.i)
        a = step.abar_t.view(-1, *([1] * (z_prev.ndim - 1)))
        ap = step.abar_prev.view_as(a)
        g = o["resample_gamma"] * (1 - ap) / (1 - a) * (1 - a / ap)
        mean = (g * ap.sqrt() * z_star + (1 - ap) * z_prev) / (g + 1 - ap)
        std = (1 / (1 / g + 1 / (1 - ap))).sqrt()
        return mean + std * randn_like_rows(z_prev, ctx.generators)

    z_T = initial_noise(prior, ctx.generators, ctx.dtype, ctx.device)
    z = guided_loop(ctx, z_T, update="ddim", eta=0.0, loss=dps_loss, scale=dps_scale, post_step=hard_consistency)
    if o["final_latent_opt"]:
        z = ctx.monitor.guard(latent_opt(z, N - 1), z)
    write_influence(ctx, ("influence_grad", "influence_obj"))
    with torch.no_grad():
        return prior.decode(z)
