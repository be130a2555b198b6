"""The `Operator` base class every forward operator derives from (see docs/CONTRACTS.md).

An operator instance is built from ``(image_shape, seeds, params)``: its random parts (masks,
kernels, latent codes) are drawn on the CPU from one ``torch.Generator`` per seed and then moved to
the requested device, so a row can rebuild its own operator anywhere and get bit-identical masks
and kernels. A list of ``B`` seeds gives ``B`` stacked instances (row ``i`` is applied with
instance ``i``); an int seed gives batch 1, which broadcasts over any batch size.

Parameters: every class states its paper defaults at 256x256 and how they scale with the image
(`paper_defaults`), and the 32x32 values of the embedded world (`EMBEDDED_DEFAULTS`). Any default
can be overridden through ``**params``; unknown names or bad values raise ``ValueError`` naming
what is allowed. ``op.params`` holds the resolved values (JSON-able).

Buffers (masks, kernels, matrices) are stored in float64 and cast to the input's dtype and device on
use (cached), so float64 tests (adjointness, gradcheck) run in full precision and float32 solver
calls pay one cast per dtype.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Sequence

import torch

TRANSPOSE_KINDS = ("adjoint", "official")


def normalize_seeds(seeds: int | Sequence[int]) -> tuple[list[int], int]:
    """``(list of int seeds, batch)``: an int gives batch 1, a sequence one instance per seed."""
    if isinstance(seeds, bool):
        raise ValueError("seeds must be an int or a sequence of ints, not a bool")
    if isinstance(seeds, int):
        return [int(seeds)], 1
    if isinstance(seeds, torch.Tensor):
        seeds = seeds.tolist()
    try:
        out = [int(s) for s in seeds]
    except TypeError as exc:  # not iterable
        raise ValueError(f"seeds must be an int or a sequence of ints, got {seeds!r}") from exc
    if not out:
        raise ValueError("seeds must not be empty")
    return out, len(out)


def cpu_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: construction-time draws are device independent."""
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seed) & 0xFFFF_FFFF_FFFF_FFFF)
    return g


def scale_length(value_at_256: float, size: int) -> int:
    """A pixel length given at 256 px, scaled to ``size`` px and rounded half up (at least 1)."""
    return max(1, int(math.floor(value_at_256 * size / 256.0 + 0.5)))


def scale_odd_kernel(size_at_256: int, size: int) -> int:
    """An odd kernel size given at 256 px scaled to ``size`` px: the radius scales, ``2r+1``."""
    return 2 * scale_length((size_at_256 - 1) / 2.0, size) + 1


# ---------------------------------------------------------------------------------------------
# parameter checks: each raises ValueError naming the allowed values
# ---------------------------------------------------------------------------------------------
def check_number(op: str, params: dict, key: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, hi_open: bool = False, integer: bool = False,
                 allow_none: bool = False) -> None:
    value = params[key]
    if value is None and allow_none:
        return
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (not integer and not math.isfinite(value)):
        raise ValueError(f"{op}: parameter {key!r} must be {kind}, got {value!r}")
    bounds = []
    if lo is not None:
        bounds.append(f"{'>' if lo_open else '>='} {lo}")
        if value < lo or (lo_open and value == lo):
            raise ValueError(f"{op}: parameter {key!r} must be {' and '.join(bounds)}, got {value!r}")
    if hi is not None:
        bounds.append(f"{'<' if hi_open else '<='} {hi}")
        if value > hi or (hi_open and value == hi):
            raise ValueError(f"{op}: parameter {key!r} must be {' and '.join(bounds)}, got {value!r}")


def check_choice(op: str, params: dict, key: str, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if params[key] not in choices:
        raise ValueError(f"{op}: parameter {key!r} must be one of {choices}, got {params[key]!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


# ---------------------------------------------------------------------------------------------
# the pseudo-inverse of any linear operator, by conjugate gradients
# ---------------------------------------------------------------------------------------------
def _rows_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.dim() - 1)))


def _normal_cg(op, r: torch.Tensor, iters: int) -> torch.Tensor:
    """``u ~= (A A^T)^{-1} r`` per row by ``iters`` steps of conjugate gradients from ``u = 0``.

    Textbook CG (Hestenes-Stiefel) on the symmetric positive semi-definite ``A A^T``; every scalar
    is per row, a row whose residual reached zero stops moving (no division by zero, no host sync).
    """
    u = torch.zeros_like(r)
    res, p = r.clone(), r.clone()
    rs = _rows_dot(res, res)
    for _ in range(iters):
        ap = op.forward(op.transpose(p))
        pap = _rows_dot(p, ap)
        alpha = torch.where(pap > 0, rs / pap.clamp_min(torch.finfo(r.dtype).tiny), torch.zeros_like(rs))
        u = u + alpha * p
        res = res - alpha * ap
        rs_new = _rows_dot(res, res)
        beta = torch.where(rs > 0, rs_new / rs.clamp_min(torch.finfo(r.dtype).tiny), torch.zeros_like(rs))
        p, rs = res + beta * p, rs_new
    return u


class _NormalSolve(torch.autograd.Function):
    """``(A A^T)^{-1} r`` with the exact backward: the map is symmetric, so its vector-Jacobian
    product is another solve (no graph through the CG iterations)."""

    @staticmethod
    def forward(ctx, r, op, iters):
        ctx.op, ctx.iters = op, iters
        with torch.no_grad():
            return _normal_cg(op, r, iters)

    @staticmethod
    def backward(ctx, grad):
        return _NormalSolve.apply(grad, ctx.op, ctx.iters), None, None


def cg_pseudo_inverse(op, y: torch.Tensor, iters: int = 100) -> torch.Tensor:
    """``A^+ y = A^T (A A^T)^{-1} y`` for a linear ``op`` of full row rank, by CG on the normal
    equations of the second kind (CGNE / Craig's method, Saad, *Iterative Methods for Sparse Linear
    Systems*, 2nd ed., Sec. 8.3): the minimum-norm ``x`` with ``A x = y``. Needs only ``forward``
    and ``transpose`` (the true adjoint), so it serves operators without a closed form (blur),
    differentiable in ``y``. Accuracy follows the conditioning of ``A A^T`` and ``iters``; a
    closed form, where an operator has one, is ``op.pseudo_inverse``."""
    if not getattr(op, "linear", False):
        raise NotImplementedError(f"{getattr(op, 'name', op)!r} is non-linear: it has no pseudo-inverse")
    return op.transpose(_NormalSolve.apply(y, op, int(iters)))


class Operator:
    """Base class: batched, differentiable, device-agnostic ``y = A(x)`` on ``(B, C, H, W)`` images.

    Subclasses set ``linear``, ``EMBEDDED_DEFAULTS``, implement ``paper_defaults``, ``_validate``,
    ``_build`` (buffers listed in ``_TENSORS``), ``_forward``, ``naive_inverse`` and, when linear,
    ``_adjoint`` and ``_official_transpose``. The registry sets ``name``.
    """

    name: str = "operator"
    linear: bool = False
    EMBEDDED_DEFAULTS: dict = {}
    _TENSORS: tuple[str, ...] = ()

    # ---------------------------------------------------------------- construction
    def __init__(self, image_shape: Sequence[int] = (3, 256, 256), seeds: int | Sequence[int] = 0,
                 device: torch.device | str | None = None, **params: Any) -> None:
        self.image_shape = self._check_image_shape(image_shape)
        self.seeds, self.batch = normalize_seeds(seeds)
        self.params = self.resolve_params(self.image_shape, params)
        self.device = torch.device("cpu")
        self._cast_cache: dict = {}
        self._build()
        if device is not None:
            self.to(device)

    @classmethod
    def _check_image_shape(cls, image_shape: Sequence[int]) -> tuple[int, int, int]:
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"{cls.name}: image_shape must be (C, H, W) with positive sizes, got {image_shape!r}")
        return shape  # type: ignore[return-value]

    @classmethod
    def paper_defaults(cls, image_shape: tuple[int, int, int]) -> dict:
        """The official defaults (stated at 256x256), scaled to ``image_shape``."""
        raise NotImplementedError

    @classmethod
    def resolve_params(cls, image_shape: Sequence[int], given: dict) -> dict:
        """Defaults overridden by ``given``; unknown names or bad values raise ``ValueError``."""
        shape = cls._check_image_shape(image_shape)
        defaults = cls.paper_defaults(shape)
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise ValueError(f"{cls.name}: unknown parameter(s) {unknown}; allowed: {sorted(defaults)}")
        params = _jsonable({**defaults, **given})
        cls._validate(params, shape)
        try:
            json.dumps(params)
        except TypeError as exc:
            raise ValueError(f"{cls.name}: parameters must be JSON-able: {exc}") from exc
        return params

    @classmethod
    def _validate(cls, params: dict, image_shape: tuple[int, int, int]) -> None:
        """Raise ``ValueError`` for bad values (may also fill derived values into ``params``)."""

    def _build(self) -> None:
        """Create the buffers (on the CPU, from the seeds)."""

    def generators(self) -> list[torch.Generator]:
        """Fresh CPU generators, one per seed (construction draws only)."""
        return [cpu_generator(s) for s in self.seeds]

    # ---------------------------------------------------------------- device handling
    def to(self, device: torch.device | str) -> "Operator":
        """Move every buffer to ``device``; returns ``self``."""
        self.device = torch.device(device)
        for key in self._TENSORS:
            setattr(self, key, getattr(self, key).to(self.device))
        self._cast_cache = {}
        self._moved()
        return self

    def _moved(self) -> None:
        """Hook for subclasses holding more than tensors (networks)."""

    def _buf(self, key: str, like: torch.Tensor) -> torch.Tensor:
        """Buffer ``key`` in ``like``'s dtype and device (cached; real dtypes only)."""
        tensor = getattr(self, key)
        dtype = like.real.dtype if like.is_complex() else like.dtype
        if tensor.dtype == dtype and tensor.device == like.device:
            return tensor
        ck = (key, dtype, like.device)
        cached = self._cast_cache.get(ck)
        if cached is None:
            cached = tensor.to(device=like.device, dtype=dtype)
            self._cast_cache[ck] = cached
        return cached

    # ---------------------------------------------------------------- the interface
    @property
    def measurement_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of ``y``; the image shape unless a subclass changes it."""
        return self.image_shape

    @property
    def has_transpose(self) -> bool:
        return self.linear

    def _check_input(self, x: torch.Tensor, shape: tuple[int, int, int], what: str) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != tuple(shape):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: {what} must have shape (B, {', '.join(map(str, shape))}), got {got}")
        if self.batch != 1 and x.shape[0] != self.batch:
            raise ValueError(f"{self.name}: built for {self.batch} rows (one per seed) but got batch {x.shape[0]}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``A(x)``, differentiable in ``x``."""
        self._check_input(x, self.image_shape, "x")
        return self._forward(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def transpose(self, y: torch.Tensor, kind: str = "adjoint") -> torch.Tensor:
        """``A^T y`` (``kind="adjoint"``, the true adjoint) or the official repos' stand-in."""
        if kind not in TRANSPOSE_KINDS:
            raise ValueError(f"{self.name}: transpose kind must be one of {list(TRANSPOSE_KINDS)}, got {kind!r}")
        if not self.linear:
            raise NotImplementedError(f"{self.name} is non-linear: it has no transpose")
        self._check_input(y, self.measurement_shape, "y")
        return {"adjoint": self._adjoint, "official": self._official_transpose}[kind](y)

    def _adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _official_transpose(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y`` where it is cheap; ``NotImplementedError`` otherwise."""
        raise NotImplementedError(f"{self.name} has no cheap pseudo-inverse")

    def naive_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The trivial reconstruction each solver is held against."""
        raise NotImplementedError

    def residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row ``||y - A(x)||_2`` (unsquared, over all of a row's entries): shape ``(B,)``."""
        self._check_input(y, self.measurement_shape, "y")
        return (y - self.forward(x)).flatten(1).norm(dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, image_shape={self.image_shape}, batch={self.batch}, params={self.params})"
