"""Mixed precision, ``torch.compile`` and channels_last for the networks a solver calls, nothing else.

What runs in reduced precision: the prior's network (``prior.model``, reached through ``eps`` /
``denoise``) and the autoencoder's encode/decode (the latent prior's first stage and the EquiReg
MPE function). What stays in the run's dtype (float32): the solver's state and updates, Tweedie,
the schedules, the operators and their residuals, every norm, the regularizer's reduction, and the
metrics (they are computed after ``solve``, outside any ``autocast`` scope).

How: ``prepare(prior, compile=..., channels_last=...)`` wraps those networks once (in place,
idempotent) in ``Accelerated`` / ``AcceleratedFn``. A wrapper runs its network under
``torch.autocast(device, dtype)`` only inside ``with autocast("bf16"):`` (a context variable, so the
precision belongs to the call, not to the cached model), and returns its outputs cast back to the
input's dtype, contiguous. Outside a scope (``fp32``) a wrapper is a pass-through: the results are
the unwrapped network's, bit for bit (``tests/test_gpu_precision.py``).

- ``compile``: a ``torch.compile`` backend name (``COMPILE_BACKENDS``; ``inductor`` is the real
  one, ``aot_eager`` / ``eager`` exercise the same path cheaply on CPU) or ``None``. The autocast
  scope sits outside the compiled callable; dynamo guards on the autocast state, so one compiled
  model serves fp32 and bf16 calls (one graph each).
- ``channels_last``: the network's weights and 4-D inputs in ``torch.channels_last`` memory format
  (faster convolutions on tensor cores); outputs come back in the standard layout.

Priors without a network (``GaussianPrior``, the mixture worlds' closed forms) have nothing to
wrap: precision does not apply to them and ``prepare`` leaves them as they are.
``fp16`` differentiates through the network without loss scaling (solvers take gradients with
respect to inputs, not parameters): small gradients can underflow; ``bf16`` keeps float32's range.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["PRECISIONS", "COMPILE_BACKENDS", "autocast", "current", "check_precision", "check_compile",
           "Accelerated", "AcceleratedFn", "prepare", "is_prepared"]

#: precision name -> autocast dtype (None: no autocast, the run's own dtype)
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: ``torch.compile`` backends a spec may name (``inductor``: the default compiler; ``cudagraphs``: CUDA only)
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")

_CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("equibench_precision", default="fp32")


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r} is not allowed; allowed: {', '.join(PRECISIONS)}")
    return name


def check_compile(backend: str | None) -> str | None:
    if backend is not None and backend not in COMPILE_BACKENDS:
        raise ValueError(f"compile backend {backend!r} is not allowed; allowed: {', '.join(COMPILE_BACKENDS)} or null")
    return backend


def current() -> str:
    """The precision of the innermost ``autocast`` scope (``fp32`` outside any)."""
    return _CURRENT.get()


@contextlib.contextmanager
def autocast(precision: str):
    """Run the prepared networks called inside this block in ``precision`` (``fp32`` | ``bf16`` | ``fp16``)."""
    token = _CURRENT.set(check_precision(precision))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _restore(out: Any, dtype: torch.dtype) -> Any:
    """Network output back in the caller's dtype and the standard memory layout."""
    if torch.is_tensor(out):
        if out.is_floating_point() and out.dtype != dtype:
            out = out.to(dtype)
        return out.contiguous()
    sample = getattr(out, "sample", None)  # diffusers' UNet2DOutput: the tensor is all callers read
    if torch.is_tensor(sample):
        return _restore(sample, dtype)
    if isinstance(out, tuple) and not hasattr(out, "_fields"):
        return tuple(_restore(o, dtype) for o in out)
    return out


def _call(fn: Callable, channels_last: bool, args: tuple, kwargs: dict):
    x = args[0] if args else None
    if not torch.is_tensor(x):
        raise TypeError(f"an accelerated network takes a tensor first, got {type(x).__name__}")
    if channels_last and x.ndim == 4:
        args = (x.contiguous(memory_format=torch.channels_last),) + tuple(args[1:])
    dtype = PRECISIONS[_CURRENT.get()]
    if dtype is None:
        out = fn(*args, **kwargs)
    else:
        with torch.autocast(device_type=x.device.type, dtype=dtype):
            out = fn(*args, **kwargs)
    return _restore(out, x.dtype)


class Accelerated(nn.Module):
    """``inner`` under the current precision scope, optionally compiled and channels_last (module doc).

    Attribute reads the wrapper does not have go to ``inner`` (``prior.model.config`` keeps working).
    """

    def __init__(self, inner: nn.Module, *, compile: str | None = None, channels_last: bool = False):
        super().__init__()
        self.inner = inner
        self.compile_backend = check_compile(compile)
        self.channels_last = bool(channels_last)
        if self.channels_last:
            inner.to(memory_format=torch.channels_last)
        # not registered as a submodule: it holds the same parameters as ``inner``
        object.__setattr__(self, "_fn", torch.compile(inner, backend=compile) if compile else inner)

    def forward(self, *args, **kwargs):
        return _call(self._fn, self.channels_last, args, kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


class AcceleratedFn:
    """A plain callable (an autoencoder's encode or decode) wrapped like ``Accelerated``; ``module``
    holds its weights (converted to channels_last when asked)."""

    def __init__(self, fn: Callable, *, module: nn.Module | None = None, compile: str | None = None,
                 channels_last: bool = False):
        self.inner = fn
        self.compile_backend = check_compile(compile)
        self.channels_last = bool(channels_last)
        if self.channels_last and module is not None:
            module.to(memory_format=torch.channels_last)
        self._fn = torch.compile(fn, backend=compile) if compile else fn

    def __call__(self, *args, **kwargs):
        return _call(self._fn, self.channels_last, args, kwargs)


def _prepare_autoencoder(ae, compile: str | None, channels_last: bool) -> None:
    if ae is None or isinstance(getattr(ae, "_encode_fn", None), AcceleratedFn):
        return
    if not (hasattr(ae, "_encode_fn") and hasattr(ae, "_decode_fn")):
        raise TypeError(f"cannot accelerate autoencoder {type(ae).__name__}: not a solvers.priors.Autoencoder")
    module = getattr(ae, "net", None)
    ae._encode_fn = AcceleratedFn(ae._encode_fn, module=module, compile=compile, channels_last=channels_last)
    ae._decode_fn = AcceleratedFn(ae._decode_fn, module=None, compile=compile, channels_last=channels_last)


def is_prepared(prior) -> bool:
    """Whether ``prepare`` wrapped this prior's network (a prior without one counts as prepared)."""
    model = getattr(prior, "model", None)
    return not isinstance(model, nn.Module) or isinstance(model, Accelerated)


def prepare(prior, *, compile: str | None = None, channels_last: bool = False, autoencoder=None):
    """Wrap ``prior``'s network and autoencoder (and ``autoencoder``, e.g. a pixel prior's MPE
    function) in place so ``autocast`` scopes apply to them; returns ``prior``. Idempotent: an already
    wrapped network keeps its first settings."""
    check_compile(compile)
    if prior is not None:
        model = getattr(prior, "model", None)
        if isinstance(model, nn.Module) and not isinstance(model, Accelerated):
            prior.model = Accelerated(model, compile=compile, channels_last=channels_last)
        _prepare_autoencoder(getattr(prior, "autoencoder", None), compile, channels_last)
    _prepare_autoencoder(autoencoder, compile, channels_last)
    return prior
