"""The shared sampler skeleton: timestep grid, Tweedie, DDPM/DDIM steps, a guided loop, PF-ODE.

Every VP solver (DPS, PSLD, ReSample) is this loop plus its guidance:

    for each step i with timesteps t > t_prev:
        x0 = Tweedie(x_t) (optionally clamped to [-1, 1] inside the gradient path)
        x' = DDPM ancestral step or DDIM step from (x_t, x0, eps)
        if loss:  x' = x' - scale_i * grad_{x_t} sum_rows (loss_i + penalty_i)(x0)   (per-row, per-row scale;
                                                        the two gradients taken apart: equireg.split_grad)
        x' = post_step(x')                                                  (e.g. ReSample's hard DC)
        x  = monitor.guard(x', x_t)                                         (freeze non-finite rows)

Checked against the official DDPM/DDIM code the solvers build on: guided-diffusion's
``GaussianDiffusion.q_posterior_mean_variance`` / ``p_sample`` as vendored in
DPS2022/diffusion-posterior-sampling ``guided_diffusion/gaussian_diffusion.py`` (posterior mean
coefficients, ancestral noise, no noise at the last step, ``SpacedDiffusion`` recomputing betas from
the kept ``alphas_cumprod``), and the LDM ``DDIMSampler.p_sample_ddim`` vendored in LituRout/PSLD
and soominkwon/resample (``x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - s^2) eps + s n``).
Deviations, all named options or stated here:

- Grid: ``VPSchedule.timesteps(N)`` = ``linspace(T-1, 0, N)`` rounded, and after the last step
  ``abar_prev = 1`` (diffusers' ``set_alpha_to_one``), so the last step lands on ``x0`` itself.
  guided-diffusion's respacing keeps ``range(0, T, T/N)``-style steps ending at 0 (same end point);
  LDM's DDIM uses ``range(0, T, T/N) + 1`` and ``abar_prev = abar[0]`` at the last step.
- Variance of the ancestral step: official DPS uses the FFHQ model's *learned* variance
  (``learned_range``); priors here predict eps only, so ``variance="small"`` (the posterior
  variance ``beta~_t``, DDPM's fixedsmall, default) or ``"large"`` (``beta_t``).
- Tweedie is computed here from ``prior.eps`` (never a scheduler's built-in clipping): the clamp is
  an explicit option and sits inside the gradient path as in official DPS (``clip_denoised``).

Also here for noise-level samplers (DAPS): ``karras_sigmas`` and the Euler PF-ODE ``pf_ode_euler``
on the EDM-form denoiser ``prior.denoise``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from solvers.equireg import split_grad
from solvers.priors import Prior
from solvers.rng import randn_like_rows, randn_rows

__all__ = ["timestep_grid", "tweedie", "ddpm_step", "ddim_step", "Step", "guided_loop", "initial_noise",
           "karras_sigmas", "pf_ode_euler", "abar_rows"]


def timestep_grid(prior: Prior, num_steps: int) -> list[tuple[int, int]]:
    """``[(t, t_prev), ...]`` descending, ``num_steps`` pairs; the last ``t_prev`` is ``-1`` (abar = 1)."""
    ts = prior.schedule.timesteps(num_steps).tolist()
    # rounding can repeat a value only when num_steps > T, which timesteps() refuses
    return list(zip(ts, ts[1:] + [-1]))


def abar_rows(prior: Prior, t: int, like: torch.Tensor) -> torch.Tensor:
    """``alpha_bar_t`` as a (B,) tensor in ``like``'s dtype/device; ``t = -1`` gives 1."""
    B = like.shape[0]
    if t < 0:
        return torch.ones(B, dtype=like.dtype, device=like.device)
    a = prior.schedule.abar_values[int(t)]  # a Python float: no tensor read per step (no host sync)
    return torch.full((B,), a, dtype=like.dtype, device=like.device)


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def initial_noise(prior: Prior, generators, dtype, device) -> torch.Tensor:
    """``x_T ~ N(0, I)`` of the prior's diffusion shape, one row per generator."""
    return randn_rows(prior.shape, generators, device=device, dtype=dtype)


def tweedie(prior: Prior, x_t: torch.Tensor, t: int, eps: torch.Tensor | None = None, clamp: bool = False):
    """``(x0_hat, eps)`` with ``x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)``.

    ``clamp`` clips ``x0_hat`` to [-1, 1] inside the autograd graph (official DPS ``clip_denoised``;
    the clipped entries then carry no data gradient).
    """
    tt = torch.full((x_t.shape[0],), int(t), dtype=torch.long, device=x_t.device)
    if eps is None:
        eps = prior.eps(x_t, tt)
    a = _rows(abar_rows(prior, t, x_t), x_t)
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    return (x0.clamp(-1, 1) if clamp else x0), eps


def ddpm_step(prior: Prior, x_t, x0, t: int, t_prev: int, noise: torch.Tensor | None, variance: str = "small"):
    """Ancestral step: a draw from ``q(x_{t_prev} | x_t, x0)`` of the (respaced) forward process.

    With ``a = abar_t``, ``ap = abar_{t_prev}``, ``beta = 1 - a / ap``: mean
    ``sqrt(ap) beta / (1 - a) x0 + sqrt(1 - beta) (1 - ap) / (1 - a) x_t``; variance
    ``beta (1 - ap) / (1 - a)`` (``small``) or ``beta`` (``large``); no noise when ``t_prev < 0``.
    """
    a = _rows(abar_rows(prior, t, x_t), x_t)
    ap = _rows(abar_rows(prior, t_prev, x_t), x_t)
    beta = 1 - a / ap
    mean = ap.sqrt() * beta / (1 - a) * x0 + (1 - beta).sqrt() * (1 - ap) / (1 - a) * x_t
    if t_prev < 0 or noise is None:
        return mean
    if variance == "small":
        var = beta * (1 - ap) / (1 - a)
    elif variance == "large":
        var = beta
    else:
        raise ValueError(f"variance must be 'small' or 'large', got {variance!r}")
    return mean + var.sqrt() * noise


def ddim_step(prior: Prior, x_t, x0, eps, t: int, t_prev: int, eta: float = 0.0, noise: torch.Tensor | None = None):
    """DDIM: ``sqrt(ap) x0 + sqrt(1 - ap - s^2) eps + s n``, ``s = eta sqrt((1-ap)/(1-a)) sqrt(1 - a/ap)``.

    ``eps`` is the model's prediction (LDM's DDIM uses it directly, not re-derived from a clamped
    ``x0``). ``eta = 0`` is deterministic (PSLD, ReSample).
    """
    a = _rows(abar_rows(prior, t, x_t), x_t)
    ap = _rows(abar_rows(prior, t_prev, x_t), x_t)
    s = eta * ((1 - ap) / (1 - a) * (1 - a / ap)).clamp_min(0).sqrt()
    out = ap.sqrt() * x0 + (1 - ap - s ** 2).clamp_min(0).sqrt() * eps
    if eta > 0 and noise is not None and t_prev >= 0:
        out = out + s * noise
    return out


@dataclass
class Step:
    """One step of the guided loop, handed to the hooks.

    ``x_t`` (requires grad when the loop is guided), ``eps``, ``x0`` (Tweedie, in the graph),
    ``x_prev`` (the unguided DDPM/DDIM update, detached), ``abar_t``/``abar_prev`` (B,),
    ``sigma`` (B,) the EDM noise level ``sqrt((1-abar_t)/abar_t)`` (for lambda schedules).
    """

    i: int
    n: int
    t: int
    t_prev: int
    x_t: torch.Tensor
    eps: torch.Tensor
    x0: torch.Tensor
    x_prev: torch.Tensor
    abar_t: torch.Tensor
    abar_prev: torch.Tensor

    @property
    def sigma(self) -> torch.Tensor:
        return ((1 - self.abar_t) / self.abar_t).sqrt()


def guided_loop(ctx, x: torch.Tensor, *, update: str = "ddpm", eta: float = 0.0, clamp: bool = False,
                variance: str = "small", loss: Callable | None = None, penalty: Callable | None = None,
                scale: Callable | None = None, post_step: Callable | None = None) -> torch.Tensor:
    """Run ``ctx.num_steps`` reverse steps from ``x`` and return the final state (detached).

    Hooks (all optional; a solver is only these):
    - ``loss(step) -> (B,)``: per-row guidance (data) loss built from ``step.x0`` (and ``step.x_t``);
      rows are summed before ``autograd.grad`` so each row gets its own gradient.
    - ``penalty(step) -> equireg.PenaltyTerm | None``: the regularizer's term, kept apart from
      ``loss`` so that ``equireg.split_grad`` takes the two gradients separately (the update uses
      their sum, as if one loss) and records lambda's influence in ``ctx.regularizer.influence``.
    - ``scale(step) -> (B,)``: per-row step size multiplying the gradient (default 1).
    - ``post_step(step, x_prev) -> x_prev``: anything after the guided update (ReSample).
    ``update``: ``ddpm`` (ancestral, ``variance`` small|large) or ``ddim`` (``eta``).
    Noise is drawn from ``ctx.generators`` every step (same draws whatever the loss), and every
    new state passes through ``ctx.monitor.guard`` so a non-finite row is frozen, not propagated.
    """
    if update not in ("ddpm", "ddim"):
        raise ValueError(f"update must be 'ddpm' or 'ddim', got {update!r}")
    prior = ctx.prior
    grid = timestep_grid(prior, ctx.num_steps)
    n = len(grid)
    meter = ctx.regularizer.influence if getattr(ctx, "regularizer", None) is not None else None
    x = x.detach()
    for i, (t, t_prev) in enumerate(grid):
        guided = loss is not None
        x_t = x.detach().requires_grad_(guided)
        with torch.set_grad_enabled(guided):
            x0, eps = tweedie(prior, x_t, t, clamp=clamp)
        need_noise = t_prev >= 0 and (update == "ddpm" or eta > 0)
        noise = randn_like_rows(x, ctx.generators) if need_noise else None
        with torch.no_grad():
            if update == "ddpm":
                x_prev = ddpm_step(prior, x_t, x0, t, t_prev, noise, variance)
            else:
                x_prev = ddim_step(prior, x_t, x0, eps, t, t_prev, eta, noise)
        step = Step(i, n, t, t_prev, x_t, eps, x0, x_prev, abar_rows(prior, t, x), abar_rows(prior, t_prev, x))
        if guided:
            with torch.enable_grad():
                per_row = loss(step)
                term = penalty(step) if penalty is not None else None
            grad = split_grad(per_row, term, x_t, meter)
            s = scale(step) if scale is not None else torch.ones_like(per_row)
            x_prev = x_prev - _rows(s, grad) * grad
        if post_step is not None:
            x_prev = post_step(step, x_prev.detach())
        x = ctx.monitor.guard(x_prev.detach(), x_t.detach())
    return x.detach()


# ----------------------------------------------------------------------------- noise-level samplers
def karras_sigmas(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0, dtype=torch.float64) -> torch.Tensor:
    """EDM/Karras grid of ``n`` levels from ``sigma_max`` down to ``sigma_min`` (DAPS's annealing)."""
    if n == 1:
        return torch.tensor([float(sigma_max)], dtype=dtype)
    r = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return ((hi + r * (lo - hi)) ** rho).to(dtype)


def pf_ode_euler(prior: Prior, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Euler steps of the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``.

    ``x`` is at noise level ``sigmas[0]`` (EDM form ``x0 + sigma n``); returns ``x`` at
    ``sigmas[-1]``. ``sigmas`` may be (K,) shared or (K, B) per row.
    """
    B = x.shape[0]
    levels = sigmas.to(device=x.device, dtype=torch.float64)
    if levels.ndim == 1:
        levels = levels[:, None].expand(-1, B)
    for k in range(levels.shape[0] - 1):
        s, s_next = levels[k], levels[k + 1]
        d = (x - prior.denoise(x, s)) / _rows(s, x)
        x = x + _rows(s_next - s, x) * d
    return x
