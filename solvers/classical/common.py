"""What the classical baselines share: registration, option checks, finite differences, TV.

Every classical solver is registered through `register_classical`: ``family="classical"``,
``space="any"`` and ``needs_prior=False`` (``solve`` accepts ``prior=None``; a given prior is
ignored, so the orchestrator may keep handing one), at most one per-row weight called ``weight``
(its ``step_param``, so a sweep's generic ``step_size`` and ``equibench tune``'s step search set
it), and the operator names it supports (``tasks``, from the ``operators.OPERATORS`` registry).
EquiReg is refused for them by ``solvers.validation`` (it applies to diffusion solvers).

Finite differences follow scikit-image's ``denoise_tv_chambolle`` (skimage/restoration/_denoise.py,
``_denoise_tv_chambolle_nd``): forward differences ``x[i+1] - x[i]``, zero in the last row/column
(Neumann boundary), so `grad` here and skimage's ``g`` are the same array and ``div = -grad^T``.
TV is isotropic and per channel (skimage's ``channel_axis`` denoises channels independently).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from operators import OPERATORS
from solvers.api import register_solver
from solvers.validation import as_rows

#: operator names by linearity, from the operator registry (the single source of names)
LINEAR_TASKS = tuple(sorted(n for n, cls in OPERATORS.items() if cls.linear))
NONLINEAR_TASKS = tuple(sorted(n for n, cls in OPERATORS.items() if not cls.linear))


# ----------------------------------------------------------------------------- registration
def register_classical(name: str, *, tasks: Sequence[str], defaults: dict, options: dict,
                       weighted: bool = True, needs_transpose: bool = False):
    """Register ``fn(ctx) -> x`` as classical solver ``name``.

    ``defaults`` holds every option (with ``weight`` when ``weighted``); ``options`` maps option
    names to a checker kind for `check_options` (``int>=0``, ``int>=1``, ``float>0``, ``float>=0``,
    ``bool`` or a tuple of choices), run before compute together with the per-row weight check.
    """
    missing = sorted(set(options) - set(defaults))
    if missing:
        raise ValueError(f"{name}: checked options {missing} have no default")

    def validate(prior, batch, num_steps, opts):
        check_options(name, opts, options)
        if weighted:
            weight = as_rows(batch.params.get("weight", opts["weight"]), batch.size, "weight")
            if bool((weight < 0).any()):
                raise ValueError(f"{name}: weight must be >= 0 for every row")

    return register_solver(name, space="any", needs_transpose=needs_transpose, defaults=defaults,
                           row_params=("weight",) if weighted else (), validate=validate,
                           step_param="weight" if weighted else None, family="classical",
                           needs_prior=False, tasks=tasks)


_KINDS: dict[str, Callable] = {
    "int>=0": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "int>=1": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "float>0": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf"),
    "float>=0": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < float("inf"),
    "bool": lambda v: isinstance(v, bool),
}


def check_options(name: str, opts: dict, kinds: dict) -> None:
    """Raise ``ValueError`` naming the option and what it must be, for the first bad value."""
    for key, kind in kinds.items():
        value = opts[key]
        if isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"{name}: option {key!r} must be one of {list(kind)}, got {value!r}")
        elif not _KINDS[kind](value):
            raise ValueError(f"{name}: option {key!r} must be {kind.replace('>', ' >')}, got {value!r}")


# ----------------------------------------------------------------------------- per-row helpers
def rows_like(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A (B,) tensor viewed to broadcast over ``like`` (B, ...)."""
    return v.to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


def row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row inner product ``<a_i, b_i>``: (B,)."""
    return (a * b).flatten(1).sum(1)


# ----------------------------------------------------------------------------- differences, TV
def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences of (B, C, H, W) -> (B, C, 2, H, W) (vertical, horizontal), zero in the
    last row / column (Neumann), as skimage's TV code."""
    gv = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    gh = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    return torch.stack([gv, gh], dim=2)


def div(p: torch.Tensor) -> torch.Tensor:
    """Discrete divergence, the negative adjoint of `grad`: (B, C, 2, H, W) -> (B, C, H, W)."""
    pv, ph = p[:, :, 0, :-1, :], p[:, :, 1, :, :-1]
    return F.pad(pv, (0, 0, 0, 1)) - F.pad(pv, (0, 0, 1, 0)) + F.pad(ph, (0, 1)) - F.pad(ph, (1, 0))


def tv(x: torch.Tensor) -> torch.Tensor:
    """Per-row isotropic total variation ``sum_{c,i} |grad x_c(i)|_2``: (B,)."""
    return torch.linalg.vector_norm(grad(x), dim=2).flatten(1).sum(1)


def tv_smooth(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-row smoothed TV ``sum sqrt(|grad x|^2 + eps^2) - eps`` (differentiable at 0; -> `tv`
    as ``eps -> 0``): (B,)."""
    g2 = grad(x).square().sum(2)
    return ((g2 + eps * eps).sqrt() - eps).flatten(1).sum(1)
