"""DAPS and LatentDAPS (Zhang et al., 2025): decoupled annealing posterior sampling.

One annealing loop serves both solvers (``daps`` on a pixel prior, ``latent_daps`` on a latent one):

    levels   sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min    (Karras grid, rho 7, N = num_steps)
    x        = sigma_max * n
    for k in 0..N-1:
        x0_hat = Euler PF-ODE of prior.denoise from sigma_k down to ode_sigma_min in M steps
        x0     = MCMC on x0, started at x0_hat, K steps, step size lr_k, with the score
                 s(x0) = -grad ||A(x0) - y||^2 / tau^2 + (x0_hat - x0) / sigma_k^2 [- grad lambda_k R(x0)]
                 langevin: x0 += lr_k s + sqrt(2 lr_k) n
                 hmc:      v = m v + sqrt(lr_k) s + sqrt(2 (1 - m)) n;  x0 += sqrt(lr_k) v   (v ~ N(0, I) per level)
        x      = x0 + sigma_{k+1} n          (no noise after the last level)
    return x0  (decoded for latent priors)

lr_k = lr * (1 + r_k (lr_min_ratio - 1)) decays linearly from ``lr`` to ``lr * lr_min_ratio``.
The per-row ``lr`` is ``batch.params["step_size"]`` (else the ``step_size`` option, else the
task's own). The MCMC settings (K, lr, lr_min_ratio, momentum, algorithm) are one frozen
``MCMCSettings`` per task (``solvers/daps_tasks.py``), chosen by ``task`` / ``operator.name``; an
option (or a per-row lr) replaces only its own field of that task's object, and an unknown task
raises. ``num_steps`` is the number of annealing levels N.

Checked against zhangbingliang2019/DAPS (newest stored snapshot, commit 098df6b):
``sampler.py`` (``DAPS.sample`` / ``LatentDAPS.sample``: ODE from the level's sigma, MCMC, re-noise
with the next level, the last level re-noised with sigma 0 so the output is the last MCMC sample;
``get_start`` = ``randn * sigma_max``), ``cores/scheduler.py`` (``EDMScheduler``: ``poly-7``
levels ``(smax^(1/7) + r (smin^(1/7) - smax^(1/7)))^7``; ``DiffusionPFODE`` with torchdiffeq
``euler`` on the ``num_steps + 1`` grid points, derivative ``-sigma * score = (x - D) / sigma``,
returns the state at the last grid point, not a final denoise), ``cores/mcmc.py``
(``MCMCSampler``: ``prior_solver='gaussian'`` so prior term + xt term = ``(x0hat - x) / sigma^2``;
data term ``-grad(sum((A(x) - y)^2)) / tau^2`` -- note: no factor 1/2, so the implied Gaussian
likelihood has std ``tau / sqrt(2)``; ``mc_update`` langevin/hmc exactly as above; HMC velocity
redrawn ``randn`` at every level in ``mc_prepare``; ``get_lr`` linear in ``ratio``),
``forward_operator/__init__.py`` (``Operator.loss`` = per-row sum of squares;
``LatentWrapper.gradient`` = gradient through ``decode``, clamped elementwise to [-1, 1]),
``model/precond.py`` + ``model/__init__.py`` (``VPPrecond``: the pixel DDPM *and* the LDM are both
driven through the continuous VP schedule beta_min 0.1, beta_d 19.9), and the configs
``configs/sampler/edm_daps.yaml`` (pixel: N 200, sigma 100 -> 0.1, ODE 5 steps to 0.01),
``configs/sampler/latent_edm_daps.yaml`` and ``sd_edm_daps.yaml`` (latent: N 50, sigma 10 -> 0.1,
ODE 2 steps to 0.001), ``configs/task/*.yaml`` (the per-task MCMC settings tabulated in
``TASK_DEFAULTS``, ``solvers/daps_tasks.py``) and ``commands/*.sh`` (``num_runs=4`` only for phase
retrieval: best of 4).

Deviations and choices, each said here (options are named in ``*_DEFAULTS``):

- **Noise-level mapping.** ``prior.denoise(x, sigma)`` maps sigma through the *prior's own* VP
  schedule (``schedule.timestep_for_sigma``). The official LatentDAPS maps sigma to LDM timesteps
  through the pixel model's continuous VP schedule (beta 0.1..20), not the LDM's own sqrt-linear
  0.0015..0.0195, so it queries the LDM at the wrong timestep; we use the right one.
- **Grid indexing.** Default ``grid="endpoints"``: N levels from sigma_max to sigma_min inclusive and
  ``r_k = k / (N - 1)``, so lr reaches ``lr * lr_min_ratio`` at the last level. The official code
  builds N+1 Karras points, drops the last (so sigma_min itself is never a level) and uses
  ``r_k = k / (N + 1)`` (lr never reaches the minimum): ``grid="official"``.
- **Tweedie centre.** ``ode_steps=0`` (an EquiBench addition) uses ``x0_hat = D(x, sigma_k)`` instead
  of the ODE; on a Gaussian prior this is what makes DAPS converge to the exact posterior as
  N grows (see tests/test_daps.py); the ODE centre is the official default.
- **Per row.** Every norm and gradient is per row (the official sums the loss over the batch,
  which gives the same per-row gradients); each row has its own lr and lambda.
- **Divergence.** The official returns zeros for the whole batch when any entry turns NaN; here a
  non-finite row is frozen at its last finite state and flagged (``ctx.monitor``).
- **Noise.** All draws come from the rows' generators (``solvers.rng``): ``x_T``, then per level
  the HMC velocity, the K MCMC draws and the re-noising draw, served from per-row chunks whose
  length depends only on the row's shape and the run's length (``_RowNoise``), never on the batch,
  so a row's draws are the same alone or in any batch.
- **EquiReg** (paper App. E, Alg. 7: "an additional gradient update step"; SPEC: its gradient joins
  the Langevin drift). Default ``reg_attach="drift"``: ``s -= grad lambda_k R(x0)`` inside the score,
  so it shares lr_k (and HMC's velocity). ``reg_attach="step"``: after each MCMC update,
  ``x0 -= grad lambda_k R(x0)`` (unit step). R is evaluated per row on the current clean estimate
  (the MCMC variable x0 / z0); its gradient is not clamped (the official clamp belongs to the data
  gradient). The lambda schedule runs over the N annealing levels (``freq``, ``cutoff`` count
  levels); the noise schedules see ``sigma_k``; ``noise_sigma`` divides by this run's annealing
  ``sigma_max`` (we set ``regularizer.sigma_max``). Default schedule ``noise_sqrt``
  (``lam sigma_k / sqrt(1 + sigma_k^2)``, i.e. ``lam sqrt(1 - abar)`` at that noise level): the
  paper scales lambda by the noise schedule for Equi-LatentDAPS without the formula, and this is
  the same function of the noise level as Equi-DPS's default, so a lambda means the same in both.
  Scale: in the drift the penalty gradient sits next to the data term's ``1/tau^2 = 1e4`` and the
  prior term's ``1/sigma_k^2``, so a lambda that matters here is orders of magnitude larger than
  the paper's DPS/PSLD lambdas (the paper gives none for LatentDAPS); ``step`` gives lambda a unit
  scale of its own. Lambda's influence (``extras["influence_grad"]``): per row, the mean over the
  MCMC steps where the penalty is on of ``||grad lambda_k R|| / ||grad ||A(x) - y||^2 / tau^2||``
  (the likelihood part of the drift, after LatentDAPS's clamp; not the prior part); with
  ``reg_attach="step"`` the denominator is that term's move ``lr_k`` times it.
- **Small ODE levels.** ``ode_sigma_min`` may lie below the prior schedule's smallest sigma
  (LatentDAPS's 0.001; sqrt-linear LDM betas start at sigma 0.039, linear DDPM betas at 0.010).
  Euler never evaluates D at the final grid point, but intermediate ones can fall below that range
  (from sigma_k = 0.1 the 2-step grid is 0.1, 0.0145, 0.001); ``prior.denoise`` then queries the
  model at its first timestep (``timestep_for_sigma`` clamps), as any discrete-time model must.
- **Best of 4** (phase retrieval) is the front door's ``restarts``/``select`` options, not ours.
"""
from __future__ import annotations

import math

import torch

from solvers.api import register_solver
from solvers.daps_tasks import TASK_ALIASES, TASK_DEFAULTS, MCMCSettings, task_settings
from solvers.equireg import row_norm, write_influence
from solvers.rng import randn_rows
from solvers.sampler import initial_noise, karras_sigmas, pf_ode_euler

__all__ = ["TASK_DEFAULTS", "TASK_ALIASES", "MCMCSettings", "PIXEL_DEFAULTS", "LATENT_DEFAULTS", "daps",
           "latent_daps", "annealing_levels", "lr_ratios", "task_settings"]

# ----------------------------------------------------------------------------- official defaults
_COMMON = {
    # per-task MCMC settings: None = the task's own field of TASK_DEFAULTS[config_set][task]
    "step_size": None,      # lr (per row via batch.params["step_size"])
    "mcmc_steps": None,     # K MCMC steps per level
    "lr_min_ratio": None,   # lr decays linearly to lr * lr_min_ratio
    "momentum": None,       # HMC damping m
    "mc_algo": None,        # "langevin" | "hmc"
    "task": None,           # DAPS task name or alias; None = operator.name (unknown names raise)
    "tau": 0.01,            # data-term temperature (official 0.01 for every task)
    "rho": 7.0,             # Karras exponent of both grids (official poly-7)
    "grid": "endpoints",    # "endpoints" | "official" (see module docstring)
    "reg_attach": "drift",  # EquiReg: "drift" (SPEC) | "step"
}
#: Pixel DAPS (``configs/sampler/edm_daps.yaml`` + ``configs/task/*.yaml`` group ``pixel``).
PIXEL_DEFAULTS = {**_COMMON, "sigma_max": 100.0, "sigma_min": 0.1, "ode_steps": 5, "ode_sigma_min": 0.01,
                  "config_set": "pixel", "data_grad_clip": None}
#: LatentDAPS (``configs/sampler/latent_edm_daps.yaml`` + group ``ldm``; ``config_set="sd"`` for SD).
LATENT_DEFAULTS = {**_COMMON, "sigma_max": 10.0, "sigma_min": 0.1, "ode_steps": 2, "ode_sigma_min": 0.001,
                   "config_set": "ldm", "data_grad_clip": 1.0}

# A run's noise is drawn per row in chunks of at most this many elements per row (see _RowNoise).
_CHUNK_ELEMS = 1 << 16


# ----------------------------------------------------------------------------- pieces
def annealing_levels(sigma_max: float, sigma_min: float, n: int, rho: float = 7.0, grid: str = "endpoints"):
    """The N annealing levels (float64, descending). ``official``: N+1 points, the last dropped."""
    if grid == "endpoints":
        return karras_sigmas(sigma_max, sigma_min, n, rho)
    if grid == "official":
        return karras_sigmas(sigma_max, sigma_min, n + 1, rho)[:n]
    raise ValueError(f"grid must be 'endpoints' or 'official', got {grid!r}")


def lr_ratios(n: int, grid: str = "endpoints") -> list[float]:
    """``r_k`` of the linear lr decay at each level: ``k/(N-1)`` (endpoints) or ``k/(N+1)`` (official)."""
    if grid == "official":
        return [k / (n + 1) for k in range(n)]
    return [k / (n - 1) if n > 1 else 0.0 for k in range(n)]


def _validate(space: str):
    sets = ("pixel", "pixel_hmc") if space == "pixel" else ("ldm", "sd")

    def check(prior, batch, num_steps, opts):
        if opts["config_set"] not in sets:
            raise ValueError(f"config_set must be one of {sets} for this solver, got {opts['config_set']!r}")
        st = task_settings(opts, batch.operator)  # raises on an unknown task
        if st.mc_algo not in ("langevin", "hmc"):
            raise ValueError(f"mc_algo must be 'langevin' or 'hmc', got {st.mc_algo!r}")
        if not isinstance(st.mcmc_steps, int) or isinstance(st.mcmc_steps, bool) or st.mcmc_steps < 0:
            raise ValueError(f"mcmc_steps must be an int >= 0, got {st.mcmc_steps!r}")
        if not 0 <= float(st.momentum) < 1:
            raise ValueError(f"momentum must be in [0, 1), got {st.momentum!r}")
        if not 0 <= float(st.lr_min_ratio):
            raise ValueError(f"lr_min_ratio must be >= 0, got {st.lr_min_ratio!r}")
        lr = batch.params.get("step_size", opts.get("step_size"))
        if lr is not None and bool((torch.as_tensor(lr) <= 0).any()):
            raise ValueError("step_size (the MCMC lr) must be > 0 for every row")
        if not float(opts["tau"]) > 0:
            raise ValueError(f"tau must be > 0, got {opts['tau']!r}")
        if not 0 < float(opts["sigma_min"]) <= float(opts["sigma_max"]):
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {opts['sigma_min']!r}, {opts['sigma_max']!r}")
        m = opts["ode_steps"]
        if not isinstance(m, int) or isinstance(m, bool) or m < 0:
            raise ValueError(f"ode_steps must be an int >= 0 (0 = Tweedie centre), got {m!r}")
        if m > 0 and not 0 < float(opts["ode_sigma_min"]) < float(opts["sigma_min"]):
            raise ValueError(f"need 0 < ode_sigma_min < sigma_min, got {opts['ode_sigma_min']!r}")
        if opts["grid"] not in ("endpoints", "official"):
            raise ValueError(f"grid must be 'endpoints' or 'official', got {opts['grid']!r}")
        if opts["reg_attach"] not in ("drift", "step"):
            raise ValueError(f"reg_attach must be 'drift' or 'step', got {opts['reg_attach']!r}")
        if not float(opts["rho"]) > 0:
            raise ValueError(f"rho must be > 0, got {opts['rho']!r}")
        c = opts["data_grad_clip"]
        if c is not None and not float(c) > 0:
            raise ValueError(f"data_grad_clip must be None or > 0, got {c!r}")

    return check


class _RowNoise:
    """All of a run's N(0, I) draws shaped like ``x``, served one at a time, drawn in chunks.

    Row ``i``'s draws come only from ``generators[i]`` (``solvers.rng.randn_rows``). A chunk holds
    ``min(remaining, _CHUNK_ELEMS // row_numel)`` draws: it depends on the row's shape and the run's
    length only, never on the batch, so a row's noise is the same alone or in any batch.
    """

    def __init__(self, like: torch.Tensor, generators, total: int):
        self.shape, self.gens = tuple(like.shape[1:]), generators
        self.device, self.dtype = like.device, like.dtype
        self.per_chunk = max(1, _CHUNK_ELEMS // max(1, like[0].numel()))
        self.left, self.bank, self.j = int(total), None, 0

    def next(self) -> torch.Tensor:
        if self.bank is None or self.j >= self.bank.shape[1]:
            if self.left <= 0:
                raise RuntimeError("DAPS noise stream exhausted (draw count mismatch)")
            c = min(self.per_chunk, self.left)
            self.bank = randn_rows((c, *self.shape), self.gens, device=self.device, dtype=self.dtype)
            self.left -= c
            self.j = 0
        out = self.bank[:, self.j]
        self.j += 1
        return out


def _annealed_sampler(ctx):
    """The shared DAPS loop; returns the last clean estimate in the diffusion variable's space."""
    opts, prior, op, y = ctx.options, ctx.prior, ctx.operator, ctx.y
    st = task_settings(opts, op)
    latent = prior.space == "latent"
    N = ctx.num_steps
    K, algo, m = int(st.mcmc_steps), st.mc_algo, float(st.momentum)
    tau2 = float(opts["tau"]) ** 2
    clip = opts["data_grad_clip"]
    has_lr = ctx.batch.params.get("step_size") is not None or opts.get("step_size") is not None
    lr0 = ctx.param("step_size") if has_lr else torch.full((ctx.B,), float(st.step_size), device=ctx.device,
                                                             dtype=ctx.dtype)
    sig = annealing_levels(float(opts["sigma_max"]), float(opts["sigma_min"]), N, float(opts["rho"]), opts["grid"])
    sig = sig.tolist()  # Python floats: the loop reads no tensor (no host sync per level)
    ratios = lr_ratios(N, opts["grid"])
    M = int(opts["ode_steps"])
    # every level's ODE grid, moved to the rows' device once (a per-level copy is a host-to-device sync)
    ode_grids = torch.stack([karras_sigmas(s, float(opts["ode_sigma_min"]), M + 1, float(opts["rho"])) for s in sig]
                            ).to(ctx.device) if M > 0 else None
    reg = ctx.regularizer
    if reg is not None:
        reg.sigma_max = float(opts["sigma_max"])  # noise_sigma is relative to the annealing maximum
    ctx.extras["lr"] = lr0.detach().clone()

    def data_grad(x):
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            img = prior.decode(xi) if latent else xi
            loss = op.residual(img, y).pow(2)
            g, = torch.autograd.grad(loss.sum(), xi)
        return g.clamp(-float(clip), float(clip)) if clip is not None else g

    def reg_grad(x, k, s):
        """``(grad lambda_k R, applied rows)``, or ``(None, None)`` where the schedule is off."""
        if reg is None:
            return None, None
        xi = x.detach().requires_grad_(True)
        with torch.enable_grad():
            term = reg.term(xi, k, N, s)
            if term is None:  # schedule off at this level: no draw, no compute
                return None, None
            g, = torch.autograd.grad(term.value.sum(), xi)
        return g, term.applied

    x = initial_noise(prior, ctx.generators, ctx.dtype, ctx.device) * sig[0]
    x0 = x
    hmc_v = algo == "hmc" and K > 0
    noise = _RowNoise(x, ctx.generators, N * (K + int(hmc_v)) + N - 1)
    for k in range(N):
        s = sig[k]
        with torch.no_grad():
            if M > 0:
                x0_hat = pf_ode_euler(prior, x, ode_grids[k])
            else:
                x0_hat = prior.denoise(x, torch.full((ctx.B,), s, dtype=torch.float64, device=ctx.device))
        x0_hat = ctx.monitor.guard(x0_hat.detach(), x0)  # x0 = x at the first level
        lr = ctx.rows(lr0 * (1 + ratios[k] * (float(st.lr_min_ratio) - 1)), x)
        v = noise.next() if hmc_v else None
        xm = x0_hat.clone()
        for _ in range(K):
            eps = noise.next()
            drift_data = data_grad(xm) / tau2  # the likelihood part of the drift (negated)
            score = -drift_data + (x0_hat - xm) / s ** 2
            rg, applied = reg_grad(xm, k, s)
            if rg is not None:  # lambda's influence against the likelihood term of the move
                ref = drift_data if opts["reg_attach"] == "drift" else lr * drift_data
                reg.influence.add("influence_grad", row_norm(rg), row_norm(ref), applied)
            if rg is not None and opts["reg_attach"] == "drift":
                score = score - rg
            if algo == "langevin":
                new = xm + lr * score + (2 * lr).sqrt() * eps
            else:
                v = m * v + lr.sqrt() * score + math.sqrt(2 * (1 - m)) * eps
                new = xm + lr.sqrt() * v
            if rg is not None and opts["reg_attach"] == "step":
                new = new - rg
            xm = ctx.monitor.guard(new.detach(), xm)
        x0 = xm
        if k + 1 < N:
            x = ctx.monitor.guard(x0 + sig[k + 1] * noise.next(), x)
    write_influence(ctx)
    return x0.detach()


@register_solver("daps", space="pixel", defaults=PIXEL_DEFAULTS, reg_schedule="noise_sqrt",
                 validate=_validate("pixel"))
def daps(ctx):
    """DAPS on a pixel prior: N annealing levels (num_steps), ODE x0_hat, Langevin on x0 (per-task lr)."""
    return _annealed_sampler(ctx)


@register_solver("latent_daps", space="latent", defaults=LATENT_DEFAULTS, reg_schedule="noise_sqrt",
                 validate=_validate("latent"))
def latent_daps(ctx):
    """LatentDAPS: DAPS on z with the data term through decode, clamped latent gradient, damped HMC."""
    with torch.no_grad():
        return ctx.prior.decode(_annealed_sampler(ctx)).detach()
