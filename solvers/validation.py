"""Validation before compute for ``solvers.api.solve`` (moved out of ``solvers/api.py``).

``validate`` raises ``ValueError`` for everything docs/CONTRACTS.md ("Solvers") lists — unknown
options, prior space (or a missing prior for a solver that needs one), an operator outside the
solver's ``tasks``, a missing transpose, shapes, generators, per-row parameters, ``lam < 0``, a bad
``RegularizerSpec`` or one given to a non-diffusion solver, the restart selection — and then runs
the solver's own ``validate`` hook.
"""
from __future__ import annotations

import torch

from solvers.priors import Prior
from solvers.restarts import SELECT_CHOICES


def as_rows(v, B: int, name: str) -> torch.Tensor:
    """A per-row parameter (scalar or (B,)) as a (B,) tensor; bad shapes or non-finite values raise."""
    # python numbers go through float64 so a scalar 0.3 equals a float64 tensor of 0.3 exactly
    t = torch.as_tensor(v, dtype=torch.float64) if isinstance(v, (int, float)) and not isinstance(v, bool) \
        else torch.as_tensor(v)
    if t.ndim == 0:
        t = t.expand(B)
    if t.ndim != 1 or t.shape[0] != B:
        raise ValueError(f"parameter {name!r} must be a scalar or shape ({B},), got {tuple(t.shape)}")
    if torch.is_floating_point(t) and not bool(torch.isfinite(t).all()):
        raise ValueError(f"parameter {name!r} has non-finite values")
    return t


def _check_regularizer(spec, info, prior: Prior | None, batch) -> None:
    from solvers import equireg  # local: equireg imports solvers.api, which imports this module

    if spec.active and info.family != "diffusion":
        raise ValueError(f"regularizer {spec.kind!r} refused: {info.name!r} is a {info.family} solver and EquiReg "
                         f"applies to diffusion solvers only; use regularizer kind 'none'")
    equireg.validate_spec(spec, prior)
    if spec.active and "lam" not in batch.params:
        raise ValueError("regularizer is active but batch.params has no 'lam'")


def _check_prior_and_task(info, prior: Prior | None, op) -> None:
    if prior is None and info.needs_prior:
        raise ValueError(f"solver {info.name!r} needs a {info.space} prior, got None")
    if prior is not None and info.space != "any" and prior.space != info.space:
        raise ValueError(f"solver {info.name!r} needs a {info.space}-space prior, got a {prior.space}-space prior "
                         f"({getattr(prior, 'name', type(prior).__name__)})")
    op_name = getattr(op, "name", None)
    if not info.supports(op_name):
        raise ValueError(f"solver {info.name!r} does not support operator {op_name!r}; allowed: {list(info.tasks)}")


def _check_shapes(op, prior: Prior | None, batch) -> tuple:
    """y against the operator, operator against the prior and the rows; returns the image shape."""
    B, y = batch.size, batch.y
    if not torch.is_tensor(y) or not torch.is_floating_point(y):
        raise ValueError("batch.y must be a floating-point tensor")
    m_shape = tuple(getattr(op, "measurement_shape", y.shape[1:]))
    if tuple(y.shape[1:]) != m_shape:
        raise ValueError(f"y has shape {tuple(y.shape[1:])} per row but operator {getattr(op, 'name', '')!r} "
                         f"measures {m_shape}")
    i_shape = tuple(op.image_shape) if hasattr(op, "image_shape") else tuple(prior.image_shape)
    if prior is not None and i_shape != tuple(prior.image_shape):
        raise ValueError(f"operator image_shape {i_shape} != prior image_shape {tuple(prior.image_shape)}")
    op_b = int(getattr(op, "batch", 1))
    if op_b not in (1, B):
        raise ValueError(f"operator batch {op_b} must be 1 or the row count {B}")
    return i_shape


def _check_rows(info, batch, opts: dict) -> None:
    """Generators (count, device) and per-row parameters (shapes, presence, ``lam >= 0``)."""
    B, y = batch.size, batch.y
    if len(batch.generators) != B:
        raise ValueError(f"{len(batch.generators)} generators for {B} rows")
    off = sorted({str(g.device) for g in batch.generators if g.device.type != y.device.type})
    if off:
        raise ValueError(f"generators on {off} but y on {y.device}: make them with "
                         f"rng.make_generators(seeds, device=y.device)")
    for k, v in batch.params.items():
        as_rows(v, B, k)
    for k in info.row_params:
        if batch.params.get(k) is None and opts.get(k) is None:
            raise ValueError(f"solver {info.name!r} needs per-row parameter {k!r}: give it in batch.params or options")
        as_rows(batch.params.get(k, opts.get(k)), B, k)
    lam = batch.params.get("lam")
    if lam is not None and bool((torch.as_tensor(lam) < 0).any()):
        raise ValueError("lam must be >= 0 for every row")


def _check_selection(batch, select: str, restarts: int, i_shape: tuple) -> None:
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if select not in SELECT_CHOICES:
        raise ValueError(f"select must be one of {SELECT_CHOICES}, got {select!r}")
    if select == "oracle_psnr":
        if batch.x_true is None:
            raise ValueError("select 'oracle_psnr' is an oracle: it needs batch.x_true (the ground truth)")
        if tuple(batch.x_true.shape) != (batch.size, *i_shape):
            raise ValueError(f"x_true shape {tuple(batch.x_true.shape)} != {(batch.size, *i_shape)}")


def validate(info, prior: Prior | None, batch, num_steps: int, reg, opts: dict, select: str, restarts: int) -> None:
    """Raise ``ValueError`` for the first problem found (see the module docstring)."""
    op = batch.operator
    _check_prior_and_task(info, prior, op)
    if info.needs_transpose and not getattr(op, "has_transpose", False):
        raise ValueError(f"solver {info.name!r} needs operator.transpose, which {getattr(op, 'name', op)!r} lacks")
    if not isinstance(num_steps, int) or isinstance(num_steps, bool) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
    i_shape = _check_shapes(op, prior, batch)
    _check_rows(info, batch, opts)
    if reg is not None:
        _check_regularizer(reg, info, prior, batch)
    _check_selection(batch, select, restarts, i_shape)
    if info.validate is not None:
        info.validate(prior, batch, num_steps, opts)


def resolve_options(info, options: dict | None) -> tuple[dict, int, str]:
    """``(options merged over info.defaults, restarts, select)``; unknown names raise ``ValueError``."""
    options = dict(options or {})
    restarts = int(options.pop("restarts", 1))
    select = options.pop("select", "measurement_consistency")
    unknown = sorted(set(options) - set(info.defaults))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for solver {info.name!r}; allowed: "
                         f"{sorted(info.defaults) + ['restarts', 'select']}")
    return {**info.defaults, **options}, restarts, select
