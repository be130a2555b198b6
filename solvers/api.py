"""The solver front door: rows in, reconstructions out, one validated entry point.

``solve(name, prior, batch, num_steps, regularizer, options)`` is the only function callers use.
It validates everything it can *before* any compute (unknown solver, prior space, transpose,
shapes, lambdas, options, regularizer), runs the registered solver once per restart, flags rows
whose state went non-finite or whose output left every data range (``|x| > DIVERGED_ABOVE``:
``status == "diverged"``), picks the best restart per row, and adds the
per-row measurement residual ``extras["y_residual"] = ||y - A(x_hat)||``.

A solver is a function ``fn(ctx: SolveContext) -> x_image`` registered with
``@register_solver(name, space=..., needs_transpose=..., defaults={...}, family=..., needs_prior=...,
tasks=...)`` (``SolverInfo`` says what each field means; ``family`` is ``diffusion`` unless a solver
says otherwise, the classical baselines in ``solvers/classical`` say ``classical``). It reads per-row
hyperparameters with ``ctx.param(name)``, draws randomness only from ``ctx.generators`` (through
``solvers.rng``), passes every new state through ``ctx.monitor.guard(new, old)`` (the one place
divergence is handled), and may put per-row tensors into ``ctx.extras``.

Rows never interact: per-row hyperparameters are (B,) tensors, every norm is per row, and the
random streams of restart ``k > 0`` and of the regularizer are derived from each row's own
generator seed (``rng.row_seed(seed, tag)``), so a row's result is the same alone or in any batch.

Validation lives in ``solvers/validation.py``, the best-of-K restart selection in
``solvers/restarts.py``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from solvers import rng as _rng
from solvers.priors import Prior
from solvers.restarts import SELECT_CHOICES, select_restarts
from solvers.validation import as_rows as _as_rows, resolve_options as _resolve_options, validate as _validate

__all__ = [
    "RowBatch", "RegularizerSpec", "SolveOutput", "SolverInfo", "SolveContext", "RowMonitor",
    "SOLVERS", "register_solver", "solve", "derive_generators", "SELECT_CHOICES",
]

SPACES = ("pixel", "latent", "any")
FAMILIES = ("diffusion", "classical")


# ----------------------------------------------------------------------------- data classes
@dataclass
class RowBatch:
    """B rows to reconstruct.

    ``y``: (B, *operator.measurement_shape) measurements. ``operator``: an ``operators.Operator``
    whose batch is 1 (shared) or B (one instance per row). ``generators``: one ``torch.Generator``
    per row (``rng.make_generators``). ``params``: per-row hyperparameters as scalars or (B,)
    tensors, e.g. ``{"step_size": zeta, "lam": lam}``; a name missing here falls back to the
    solver option of the same name. ``x_true``: the ground truth, only needed by the oracle
    restart selection (``select: oracle_psnr``); solvers never see it.
    """

    y: torch.Tensor
    operator: Any
    generators: Sequence[torch.Generator]
    params: dict = field(default_factory=dict)
    x_true: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return int(self.y.shape[0])


@dataclass
class RegularizerSpec:
    """EquiReg plug-in settings (SPEC "EquiReg"); the per-row weight is ``batch.params["lam"]``.

    kind: ``none`` (the baseline), ``equi`` (``R(T f(x) - f(T x))``) or ``equicon``
    (``R(x - T^-1 f(T x))``). mpe: ``decoder`` | ``encoder`` | ``autoencoder`` (``D o E`` on pixels,
    ``E o D`` on latents) or any callable ``f(x) -> tensor``. autoencoder: the
    ``priors.Autoencoder`` that the named MPE functions come from; ``None`` means the prior's own
    (latent priors) — a pixel prior needs one given here. group: an ``operators.GROUPS`` name.
    reduction: ``norm`` (L2, not squared) | ``sqnorm`` | ``mse``, always per row. schedule:
    ``constant`` | ``cutoff`` (zero for the last ``cutoff_frac`` of steps) | ``noise_sqrt``
    (``lam sqrt(1 - abar_t)``) | ``noise_sigma`` (``lam sigma_t / sigma_max``) | ``None`` (the
    solver's paper default, ``SolverInfo.reg_schedule``). freq: apply every ``freq``-th step only.
    group_sample: which elements the group draws (``operators.groups``: ``library`` — the authors'
    library's non-identity draws, default —, ``nontrivial`` or ``all``).
    """

    kind: str = "none"
    mpe: Any = "autoencoder"
    group: str = "hflip"
    reduction: str = "norm"
    schedule: str | None = None
    freq: int = 1
    cutoff_frac: float = 0.1
    autoencoder: Any = None
    group_sample: str = "library"

    @property
    def active(self) -> bool:
        return self.kind != "none"


@dataclass
class SolveOutput:
    """``x``: (B, *image_shape) reconstructions in image space. ``status``: per row ``ok`` or
    ``diverged``. ``extras``: per-row tensors (always ``y_residual``; with restarts also
    ``restart`` (B,) and ``restart_residuals`` (B, K)). ``meta``: run-level facts (resolved options,
    regularizer schedule, restart selection rule and whether it used the ground truth)."""

    x: torch.Tensor
    status: list
    extras: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)


@dataclass
class SolverInfo:
    """A registry entry: the function and what validation needs to know about it.

    ``space``: prior space the solver needs (``any`` accepts both). ``needs_transpose``: it calls
    ``operator.transpose``. ``defaults``: every option it accepts with its official default (an
    unknown option is an error). ``reg_schedule``: the lambda schedule used when
    ``RegularizerSpec.schedule`` is ``None`` (the paper's choice for that solver).
    ``row_params``: per-row hyperparameters it reads with ``ctx.param``; each must be given in
    ``batch.params`` or as a non-None option. ``validate(prior, batch, num_steps, options)``:
    optional extra checks run before compute. ``step_param``: the per-row hyperparameter that a
    sweep's generic ``step_size`` sets (DPS's zeta, PSLD's omega, ReSample's DPS-step scale, DAPS's
    Langevin lr), so one spec field sweeps every solver's guidance strength; ``None``: the solver
    has no weight and the generic ``step_size`` is dropped (nothing to search).
    ``family``: ``diffusion`` (posterior samplers, the default) or ``classical`` (baselines in
    ``solvers/classical``, which reports group separately; EquiReg is refused for them).
    ``needs_prior``: ``False`` lets ``solve`` take ``prior=None`` (classical solvers ignore a given
    prior). ``tasks``: operator names (``operators.OPERATORS`` keys) the solver supports, ``None``
    for any; another operator is refused before compute, naming the allowed ones.
    """

    name: str
    fn: Callable
    space: str
    needs_transpose: bool
    defaults: dict
    reg_schedule: str
    row_params: tuple = ()
    validate: Callable | None = None
    doc: str = ""
    step_param: str | None = "step_size"
    family: str = "diffusion"
    needs_prior: bool = True
    tasks: tuple | None = None

    def supports(self, operator_name: str) -> bool:
        """Whether the solver runs on operator ``operator_name`` (see ``tasks``)."""
        return self.tasks is None or operator_name in self.tasks


SOLVERS: dict[str, SolverInfo] = {}


def register_solver(name: str, *, space: str, needs_transpose: bool = False, defaults: dict | None = None,
                    reg_schedule: str = "cutoff", row_params: Sequence[str] = (), validate: Callable | None = None,
                    step_param: str | None = "step_size", family: str = "diffusion", needs_prior: bool = True,
                    tasks: Sequence[str] | None = None):
    """Decorator registering ``fn(ctx) -> x_image`` as solver ``name`` (see ``SolverInfo``)."""
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def deco(fn):
        SOLVERS[name] = SolverInfo(name, fn, space, bool(needs_transpose), dict(defaults or {}),
                                   reg_schedule, tuple(row_params), validate, (fn.__doc__ or "").strip(),
                                   step_param, family, bool(needs_prior), None if tasks is None else tuple(tasks))
        return fn

    return deco


# ----------------------------------------------------------------------------- divergence
# A finite output this far outside every world's range (images in [-1, 1], mixture samples within a
# few units of 0, PDE fields of order 10) is a run that blew up, not a reconstruction: DAPS at lr 3e-4
# on mog8 inpainting ended at |x| ~ 1e19 while every state stayed finite. It is also beyond what the
# store's float16 images hold (65504). Such rows are ``diverged`` like non-finite ones.
DIVERGED_ABOVE = 1e4

class RowMonitor:
    """Freezes rows whose state becomes non-finite; the one divergence mechanism all solvers use.

    ``guard(new, old)`` returns ``new`` for healthy rows and ``old`` for rows that are (or just
    became) diverged, so a diverged row keeps its last finite state while the rest continue.
    Rows never mix, so computing on a frozen row and discarding the result is harmless.
    """

    def __init__(self, batch: int, device):
        self.diverged = torch.zeros(batch, dtype=torch.bool, device=device)

    def guard(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        bad = ~torch.isfinite(new.detach()).reshape(new.shape[0], -1).all(1)
        self.diverged |= bad
        keep = self.diverged.view(-1, *([1] * (new.ndim - 1)))
        return torch.where(keep, old.detach(), new)

    def flag(self, rows: torch.Tensor) -> None:
        """Mark rows (a (B,) bool tensor) as diverged, e.g. a non-finite final output."""
        self.diverged |= rows.to(self.diverged.device)


# ----------------------------------------------------------------------------- context
@dataclass
class SolveContext:
    """What a solver function receives for one run (one restart)."""

    prior: Prior | None  # None only for solvers registered with needs_prior=False
    batch: RowBatch
    num_steps: int
    options: dict
    generators: list
    monitor: RowMonitor
    regularizer: Any = None  # an equireg.EquiReg or None (baseline / all lambdas zero)
    extras: dict = field(default_factory=dict)

    @property
    def B(self) -> int:
        return self.batch.size

    @property
    def device(self) -> torch.device:
        return self.batch.y.device

    @property
    def dtype(self) -> torch.dtype:
        return self.batch.y.dtype

    @property
    def operator(self):
        return self.batch.operator

    @property
    def y(self) -> torch.Tensor:
        return self.batch.y

    def param(self, name: str) -> torch.Tensor:
        """Per-row hyperparameter ``name`` as a (B,) tensor (batch.params, else the option)."""
        v = self.batch.params.get(name, self.options.get(name))
        if v is None:
            raise ValueError(f"solver needs per-row parameter {name!r} (batch.params or options)")
        return _as_rows(v, self.B, name).to(self.device, self.dtype)

    def rows(self, v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Broadcast a (B,) tensor over ``like``'s trailing dims."""
        return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))

    def residual(self, x_image: torch.Tensor) -> torch.Tensor:
        """Per-row unsquared ``||y - A(x)||`` through the operator (it owns its data loss)."""
        return self.operator.residual(x_image, self.y)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """The diffusion variable in image space (decode for latent priors)."""
        return self.prior.decode(x) if self.prior.space == "latent" else x


# ----------------------------------------------------------------------------- helpers
def derive_generators(generators: Sequence[torch.Generator], tag) -> list[torch.Generator]:
    """Fresh per-row generators seeded from each row's own seed and ``tag`` (same device).

    Used for restarts ``k > 0`` and for the regularizer's group draws, so neither changes the
    solver's own noise stream (``lam = 0`` reproduces the baseline bit for bit).
    """
    return [_rng.make_generators([_rng.row_seed(g.initial_seed(), tag)], g.device)[0] for g in generators]


def check_options(name: str, options: dict | None) -> None:
    """Validate a solver's options (names and the generic ``restarts``/``select`` values) without
    any data or model, so a sweep spec can fail before compute; raises ``ValueError``."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; allowed: {sorted(SOLVERS)}")
    try:
        _, restarts, select = _resolve_options(SOLVERS[name], options)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if select not in SELECT_CHOICES:
        raise ValueError(f"select must be one of {SELECT_CHOICES}, got {select!r}")


def _map_step_size(info: SolverInfo, batch: RowBatch) -> RowBatch:
    """Route the generic per-row ``step_size`` to the solver's own knob (``info.step_param``); a
    solver without one (``None``) drops it."""
    p = batch.params
    if info.step_param == "step_size" or "step_size" not in p or info.step_param in p:
        return batch
    params = {k: v for k, v in p.items() if k != "step_size"}
    if info.step_param is not None:
        params[info.step_param] = p["step_size"]
    return dataclasses.replace(batch, params=params)


def _run_once(info: SolverInfo, prior: Prior | None, batch: RowBatch, num_steps: int, reg_spec, opts: dict,
              generators: list) -> SolveOutput:
    from solvers import equireg

    B = batch.size
    monitor = RowMonitor(B, batch.y.device)
    regularizer = None
    if reg_spec is not None and reg_spec.active:
        lam = _as_rows(batch.params["lam"], B, "lam").to(batch.y.device, batch.y.dtype)
        if bool((lam > 0).any()):
            regularizer = equireg.EquiReg(reg_spec, prior, lam, derive_generators(generators, "equireg"),
                                          default_schedule=info.reg_schedule)
    ctx = SolveContext(prior, batch, num_steps, opts, list(generators), monitor, regularizer)
    x = info.fn(ctx)
    flat = x.detach().reshape(B, -1)
    monitor.flag(~torch.isfinite(flat).all(1) | (flat.abs().amax(1) > DIVERGED_ABOVE))
    with torch.no_grad():
        res = batch.operator.residual(x.detach(), batch.y)
    extras = {k: v.detach() for k, v in ctx.extras.items()}
    extras["y_residual"] = res.detach()
    status = ["diverged" if d else "ok" for d in monitor.diverged.tolist()]
    return SolveOutput(x.detach(), status, extras)


def solve(name: str, prior: Prior | None, batch: RowBatch, num_steps: int, regularizer: RegularizerSpec | None = None,
          options: dict | None = None) -> SolveOutput:
    """Run solver ``name`` on ``batch``; see the module docstring. ``prior`` may be ``None`` for a
    solver registered with ``needs_prior=False`` (the classical baselines).

    ``options`` are the solver's own (``SOLVERS[name].defaults`` lists them with their official
    defaults) plus ``restarts`` (K runs per row with independent streams; run 0 uses the rows'
    generators as given) and ``select`` (``measurement_consistency``: per row the run with the
    lowest ``||y - A(x)||``, ground-truth free, the default; ``oracle_psnr``: the run with the
    highest PSNR against ``batch.x_true`` — DAPS's evaluation rule, an oracle, labelled so in
    ``meta``). Diverged runs are never selected while another run of that row is finite.
    """
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; allowed: {sorted(SOLVERS)}")
    info = SOLVERS[name]
    batch = _map_step_size(info, batch)
    opts, restarts, select = _resolve_options(info, options)
    _validate(info, prior, batch, num_steps, regularizer, opts, select, restarts)

    runs = []
    for k in range(restarts):
        gens = list(batch.generators) if k == 0 else derive_generators(batch.generators, ("restart", k))
        runs.append(_run_once(info, prior, batch, num_steps, regularizer, opts, gens))
    meta = {"solver": name, "family": info.family, "num_steps": num_steps, "options": opts, "restarts": restarts}
    if regularizer is not None and regularizer.active:
        meta["regularizer_schedule"] = regularizer.schedule or info.reg_schedule
    if restarts == 1:
        out = runs[0]
        out.meta = meta
        return out

    return select_restarts(runs, select, batch.x_true, meta)
