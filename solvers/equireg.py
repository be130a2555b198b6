"""EquiReg: the equivariance penalty as a per-row plug-in for every solver.

Two forms on the current clean estimate ``x`` (pixel ``x0_hat`` or latent ``z0_hat``), an MPE
function ``f`` and a group element ``T`` drawn per row:

- ``equi``    (paper Def. 4.1): ``R(T f(x) - f(T x))``
- ``equicon`` (Def. 4.2, the library's ``equi_plus``): ``R(x - T^-1 f(T x))``, ``f`` into x's space.

Reductions ``R`` per row: ``norm`` (L2, not squared), ``sqnorm`` (sum of squares), ``mse`` (mean of
squares). Weighted by ``lambda_t = lam * schedule(step)`` with per-row ``lam`` (B,).

Checked against the authors' library Anima-Lab/Equireg: ``equireg/penalty.py`` (``equi``,
``equi_plus``, the three reductions), ``equireg/schedules.py`` (constant every ``int(1/equi_freq)``
steps, cutoff ``step > total - cutoff_steps``), ``equireg/equireg.py`` (penalty scaled by alpha,
zero when the schedule skips). Deviations, each on purpose:

- Reductions are **per row** (the library reduces the whole batch tensor, which couples samples;
  identical at batch 1).
- Group elements are drawn **per row** from a per-row generator derived from the row's seed (the
  library draws one element per call for the whole batch from Python's ``random``). The stream is
  separate from the solver's noise, so ``lam = 0`` reproduces the baseline bit for bit.
- ``freq`` is an integer period (every ``freq``-th step; the library's ``equi_freq`` is a fraction,
  period ``int(1/equi_freq)``, library default 0.1 = every 10th; default here every step, SPEC).
- ``cutoff`` drops the last ``cutoff_frac`` (default 10%, the paper's App. E rule, rounded up) of
  the steps; the library drops a fixed 100 steps, which would disable the term at 50 steps.
- Noise-scaled schedules (paper App. E uses one for Equi-DPS and Equi-LatentDAPS; the formula is in
  neither the code nor the text): ``noise_sqrt`` = ``lam sqrt(1 - abar_t)`` and ``noise_sigma`` =
  ``lam sigma_t / sigma_max`` (``sigma_t = sqrt((1-abar_t)/abar_t)``). The default for Equi-DPS is
  ``noise_sqrt``: it lies in (0, 1], so the paper's lambda keeps its meaning as the largest
  weight; it is the factor by which eps enters Tweedie's estimate, i.e. it follows the scale of
  ``x0_hat``'s error that the penalty is meant to correct; and it falls to ~0.01 at the last step,
  playing the role of the early stop the paper uses for its unscaled runs. ``noise_sigma`` is below
  1/100 of lam for the last ~60% of a linear-beta trajectory (sigma_max ~ 157), which would make
  the paper's Equi-DPS lambdas inert.
- MPE functions: ``decoder`` ``D`` (latent in: the library's PSLD recipe), ``encoder`` ``E``
  (pixel in: its SITCOM recipe and DPS example), ``autoencoder`` = ``D o E`` on pixels and
  ``E o D`` on latents (the paper's view), or any callable.

Lambda's influence (issue 12, section 3): every solver combines the penalty's gradient with its
data gradient through ``split_grad`` (the two gradients taken as separate vector-Jacobian products,
whose sum is the update's gradient), and ``Influence`` keeps per-row means of
``||grad lambda_t R|| / ||grad data||`` (and, for ReSample's latent optimisation, of the objective
ratio) on the rows' device; ``write_influence`` puts them into ``ctx.extras`` (nothing without an
active regularizer). The price: one more backward pass through the model per regularized step.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from solvers.api import RegularizerSpec

__all__ = ["KINDS", "REDUCTIONS", "SCHEDULES", "MPE_NAMES", "reduce_rows", "equi", "equicon",
           "resolve_mpe", "validate_spec", "schedule_factor", "PenaltyTerm", "EquiReg", "Influence",
           "split_grad", "row_norm", "write_influence"]

KINDS = ("none", "equi", "equicon")
SCHEDULES = ("constant", "cutoff", "noise_sqrt", "noise_sigma")
MPE_NAMES = ("decoder", "encoder", "autoencoder")


def _sqsum(d: torch.Tensor) -> torch.Tensor:
    return (d.reshape(d.shape[0], -1) ** 2).sum(1)


REDUCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "norm": lambda d: torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1),
    "sqnorm": _sqsum,
    "mse": lambda d: _sqsum(d) / d[0].numel(),
}


def reduce_rows(d: torch.Tensor, reduction: str) -> torch.Tensor:
    """Per-row reduction of a (B, ...) difference to (B,)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; allowed: {sorted(REDUCTIONS)}")
    return REDUCTIONS[reduction](d)


def equi(f: Callable, group, x: torch.Tensor, g: torch.Tensor, reduction: str = "norm") -> torch.Tensor:
    """``R(T_g f(x) - f(T_g x))`` per row."""
    return reduce_rows(group.act(f(x), g) - f(group.act(x, g)), reduction)


def equicon(f: Callable, group, x: torch.Tensor, g: torch.Tensor, reduction: str = "norm") -> torch.Tensor:
    """``R(x - T_g^-1 f(T_g x))`` per row; ``f`` must map into ``x``'s own space."""
    return reduce_rows(x - group.inverse(f(group.act(x, g)), g), reduction)


FORMS = {"equi": equi, "equicon": equicon}


def _autoencoder(spec: RegularizerSpec, prior):
    ae = spec.autoencoder if spec.autoencoder is not None else getattr(prior, "autoencoder", None)
    if ae is None:
        raise ValueError(f"mpe {spec.mpe!r} needs an autoencoder: the {prior.space}-space prior has none; "
                         "pass RegularizerSpec(autoencoder=...) or a callable mpe")
    return ae


def resolve_mpe(spec: RegularizerSpec, prior) -> Callable:
    """The MPE function ``f`` acting on the prior's diffusion variable (pixel or latent).

    pixel prior: ``encoder`` E, ``autoencoder`` D o E; latent prior: ``decoder`` D, ``autoencoder``
    E o D. ``equicon`` needs ``f`` into x's own space, so only ``autoencoder`` or a callable.
    """
    if callable(spec.mpe):
        return spec.mpe
    if spec.mpe not in MPE_NAMES:
        raise ValueError(f"unknown mpe {spec.mpe!r}; allowed: {list(MPE_NAMES)} or a callable")
    latent = prior.space == "latent"
    if spec.kind == "equicon" and spec.mpe != "autoencoder":
        raise ValueError(f"equicon needs f mapping back into x's own space: mpe 'autoencoder' or a callable, "
                         f"not {spec.mpe!r}")
    if spec.mpe == "decoder" and not latent:
        raise ValueError("mpe 'decoder' takes latents: it fits a latent-space prior, not a pixel one")
    if spec.mpe == "encoder" and latent:
        raise ValueError("mpe 'encoder' takes images: it fits a pixel-space prior, not a latent one")
    ae = _autoencoder(spec, prior)
    if spec.mpe == "decoder":
        return ae.decode
    if spec.mpe == "encoder":
        return ae.encode
    return (lambda z: ae.encode(ae.decode(z))) if latent else (lambda x: ae.decode(ae.encode(x)))


def _groups():
    try:
        from operators import GROUPS, build_group
    except ImportError as exc:  # operators/ not importable: say so instead of a bare ImportError
        raise ValueError(f"symmetry groups unavailable (operators.build_group): {exc}") from exc
    return GROUPS, build_group


def validate_spec(spec: RegularizerSpec, prior) -> None:
    """Every check on a ``RegularizerSpec`` that can be made before compute."""
    if not isinstance(spec, RegularizerSpec):
        raise ValueError(f"regularizer must be a RegularizerSpec, got {type(spec).__name__}")
    if spec.kind not in KINDS:
        raise ValueError(f"unknown regularizer kind {spec.kind!r}; allowed: {list(KINDS)}")
    if not spec.active:
        return
    if spec.reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {spec.reduction!r}; allowed: {sorted(REDUCTIONS)}")
    if spec.schedule is not None and spec.schedule not in SCHEDULES:
        raise ValueError(f"unknown lambda schedule {spec.schedule!r}; allowed: {list(SCHEDULES)} or None")
    if not isinstance(spec.freq, int) or spec.freq < 1:
        raise ValueError(f"freq must be an int >= 1, got {spec.freq!r}")
    if not 0 <= float(spec.cutoff_frac) < 1:
        raise ValueError(f"cutoff_frac must be in [0, 1), got {spec.cutoff_frac!r}")
    groups, build_group = _groups()
    if spec.group not in groups:
        raise ValueError(f"unknown group {spec.group!r}; allowed: {sorted(groups)}")
    build_group(spec.group, sample=spec.group_sample)  # validates the sampling mode
    resolve_mpe(spec, prior)


def schedule_factor(name: str, step: int, num_steps: int, *, freq: int = 1, cutoff_frac: float = 0.1,
                    sigma: torch.Tensor | float | None = None, sigma_max: float | None = None):
    """The schedule's multiplier of ``lam`` at ``step`` of ``num_steps``: a float or a (B,) tensor.

    ``sigma`` is the EDM noise level of the current step (``sqrt((1-abar)/abar)`` on a VP schedule,
    the annealing level in DAPS); the noise schedules need it, and ``noise_sigma`` ``sigma_max``.
    """
    if step % freq != 0:
        return 0.0
    if name == "constant":
        return 1.0
    if name == "cutoff":
        n_off = math.ceil(cutoff_frac * num_steps - 1e-9)
        return 0.0 if step >= num_steps - n_off else 1.0
    if name in ("noise_sqrt", "noise_sigma"):
        if sigma is None:
            raise ValueError(f"schedule {name!r} needs the step's noise level sigma")
        s = torch.as_tensor(sigma)
        if name == "noise_sqrt":
            return s / (1 + s ** 2).sqrt()  # = sqrt(1 - abar)
        if sigma_max is None:
            raise ValueError("schedule 'noise_sigma' needs sigma_max")
        return s / float(sigma_max)
    raise ValueError(f"unknown lambda schedule {name!r}; allowed: {list(SCHEDULES)}")


class PenaltyTerm(NamedTuple):
    """The penalty at one step: ``value`` (B,) ``lambda_t R`` and ``applied`` (B,) bool, the rows whose
    schedule is on at this step (a row with ``lam = 0`` is applied with value exactly 0)."""

    value: torch.Tensor
    applied: torch.Tensor


class EquiReg:
    """The penalty bound to one run: ``penalty(x, step, num_steps, sigma) -> (B,) lambda_t R``.

    ``lam`` (B,) per-row weights; ``generators`` per-row streams for the group draws (the solver
    skeleton passes ones derived from the rows' seeds). ``default_schedule`` applies when
    ``spec.schedule`` is None. ``sigma_max`` for ``noise_sigma`` defaults to the prior's VP
    schedule's (noise-level samplers pass their own annealing maximum). ``influence`` is this
    run's ``Influence`` meter (lambda's influence per row, filled by the solvers).
    """

    def __init__(self, spec: RegularizerSpec, prior, lam: torch.Tensor, generators, default_schedule: str = "cutoff",
                 sigma_max: float | None = None):
        validate_spec(spec, prior)
        _, build_group = _groups()
        self.spec = spec
        self.f = resolve_mpe(spec, prior)
        self.group = build_group(spec.group, sample=spec.group_sample)
        self.form = FORMS[spec.kind]
        self.lam = lam
        self.generators = list(generators)
        self.schedule = spec.schedule or default_schedule
        self.sigma_max = float(sigma_max) if sigma_max is not None else float(prior.schedule.sigma_max)
        self.influence = Influence()

    def _factor(self, step: int, num_steps: int, sigma):
        return schedule_factor(self.schedule, step, num_steps, freq=self.spec.freq, cutoff_frac=self.spec.cutoff_frac,
                               sigma=sigma, sigma_max=self.sigma_max)

    def weight(self, step: int, num_steps: int, sigma=None) -> torch.Tensor:
        """``lambda_t`` per row, (B,)."""
        fac = torch.as_tensor(self._factor(step, num_steps, sigma), dtype=self.lam.dtype).to(self.lam.device)
        return self.lam * fac

    def raw(self, x: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
        """Unweighted ``R(...)`` per row; draws one group element per row when ``g`` is None."""
        if g is None:
            g = self.group.sample(self.generators).to(x.device)
        return self.form(self.f, self.group, x, g, self.spec.reduction)

    def term(self, x: torch.Tensor, step: int, num_steps: int, sigma=None) -> PenaltyTerm | None:
        """``PenaltyTerm(lambda_t R, applied)`` per row, or ``None`` -- without any compute or group
        draw -- when the schedule is off at this step. Decided without a host sync: a schedule whose
        factor is a tensor (the noise schedules, positive at every noise level) is evaluated and
        masked per row. Rows with ``lam = 0`` contribute exactly zero."""
        if sigma is not None and not torch.is_tensor(sigma):  # a level given as a number (DAPS): on the device,
            sigma = torch.full((), float(sigma), dtype=torch.get_default_dtype(), device=x.device)  # as as_tensor
        fac = self._factor(step, num_steps, sigma)
        if not torch.is_tensor(fac) and fac <= 0:
            return None
        if torch.is_tensor(fac):  # already on the rows' device when sigma is (a step's (B,) noise level)
            fac = fac.to(device=x.device, dtype=x.dtype).expand(x.shape[0])
        else:  # a Python number: filled on the device (a CPU tensor moved there would be a host-to-device sync)
            fac = torch.full((x.shape[0],), float(fac), dtype=x.dtype, device=x.device)
        w = self.lam.to(device=x.device, dtype=x.dtype) * fac
        r = self.raw(x)
        return PenaltyTerm(torch.where(w > 0, w.to(r.dtype) * r, torch.zeros_like(r)), fac > 0)

    def penalty(self, x: torch.Tensor, step: int, num_steps: int, sigma=None) -> torch.Tensor:
        """``lambda_t * R`` per row (B,); zeros without any compute (or group draw) when the
        schedule is off at this step (see ``term``)."""
        t = self.term(x, step, num_steps, sigma)
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device) if t is None else t.value


# ----------------------------------------------------------------------------- lambda's influence
def row_norm(t: torch.Tensor) -> torch.Tensor:
    """Per-row L2 norm of a (B, ...) tensor."""
    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), dim=1)


class Influence:
    """Per-row running means of lambda's influence (issue 12, section 3), kept on the rows' device.

    ``add(key, num, den, applied)`` adds the ratio ``num / den`` (0 where ``num == 0``, so a
    ``lam = 0`` row has influence 0 even where its data term is flat) to the rows in ``applied``;
    sums and counts stay tensors (no host sync inside a sampling loop). Keys: ``influence_grad``
    (``||grad lambda_t R|| / ||grad data||``, both w.r.t. the variable the solver updates) and
    ``influence_obj`` (``lambda_t R / data objective``, ReSample's latent optimisation). A row
    never applied gets NaN (0 / 0). Rows never mix: every quantity is per row.
    """

    def __init__(self):
        self._sum: dict[str, torch.Tensor] = {}
        self._count: dict[str, torch.Tensor] = {}

    def add(self, key: str, num: torch.Tensor, den: torch.Tensor, applied: torch.Tensor) -> None:
        num, den = num.detach(), den.detach()
        ratio = torch.where(num == 0, torch.zeros_like(num), num / den)
        on = applied.to(ratio.device)
        self._sum[key] = self._sum.get(key, 0) + torch.where(on, ratio, torch.zeros_like(ratio))
        self._count[key] = self._count.get(key, 0) + on.to(ratio.dtype)

    def add_grads(self, g_pen: torch.Tensor, g_data: torch.Tensor, applied: torch.Tensor) -> None:
        """``influence_grad`` from the two gradients (per-row L2 norms)."""
        self.add("influence_grad", row_norm(g_pen), row_norm(g_data), applied)

    def means(self, keys, B: int, device, dtype) -> dict[str, torch.Tensor]:
        """``{key: (B,) mean}`` for every key in ``keys`` (all NaN for a key never added)."""
        out = {}
        for k in keys:
            if k in self._sum:
                out[k] = self._sum[k] / self._count[k]
            else:
                out[k] = torch.full((B,), math.nan, device=device, dtype=dtype)
        return out


def split_grad(data: torch.Tensor, term: PenaltyTerm | None, wrt: torch.Tensor, meter: Influence | None = None,
               rows: torch.Tensor | None = None) -> torch.Tensor:
    """``grad_wrt sum_rows(data + term.value)``, the one place every solver combines the two.

    Taken as two vector-Jacobian products (the data term's, then the penalty's), whose sum is the
    combined gradient, so the meter can record ``||grad penalty|| / ||grad data||`` per row for the
    rows in ``term.applied`` (and ``rows``, e.g. the rows an optimiser still moves). Without a
    penalty (or off at this step) it is the single data gradient, as before.
    """
    if term is None or not term.value.requires_grad:
        g, = torch.autograd.grad(data.sum(), wrt)
        return g
    g_data, = torch.autograd.grad(data.sum(), wrt, retain_graph=True)
    g_pen, = torch.autograd.grad(term.value.sum(), wrt, allow_unused=True)
    if g_pen is None:
        g_pen = torch.zeros_like(g_data)
    if meter is not None:
        meter.add_grads(g_pen, g_data, term.applied if rows is None else term.applied & rows)
    return g_data + g_pen


def write_influence(ctx, keys=("influence_grad",)) -> None:
    """Put the run's influence means into ``ctx.extras`` (nothing without an active regularizer)."""
    reg = ctx.regularizer
    if reg is not None:
        ctx.extras.update(reg.influence.means(keys, ctx.B, ctx.device, ctx.dtype))
