"""The operator registry: name -> class, and `build_operator`.

Operator modules register their classes with `@register("name")`; `operators/__init__.py` imports
them all, so `OPERATORS` is complete once the package is imported. `EMBEDDED_DEFAULTS` collects each
class's 32x32 preset (see the classes for the reasons behind each value); use it as
``build_operator(name, (3, 32, 32), seeds, **{**EMBEDDED_DEFAULTS[name], **overrides})``.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .base import Operator

OPERATORS: dict[str, type[Operator]] = {}
EMBEDDED_DEFAULTS: dict[str, dict] = {}


def register(name: str) -> Callable[[type[Operator]], type[Operator]]:
    """Class decorator: add an operator class to `OPERATORS` under ``name``."""

    def wrap(cls: type[Operator]) -> type[Operator]:
        if name in OPERATORS:
            raise ValueError(f"operator {name!r} is already registered")
        cls.name = name
        OPERATORS[name] = cls
        EMBEDDED_DEFAULTS[name] = dict(cls.EMBEDDED_DEFAULTS)
        return cls

    return wrap


def build_operator(name: str, image_shape: Sequence[int] = (3, 256, 256), seeds: int | Sequence[int] = 0,
                   device: torch.device | str | None = None, **params: Any) -> Operator:
    """Build operator ``name`` for ``image_shape`` (C, H, W) from ``seeds`` (int: batch 1; list: one
    instance per row) on ``device``; ``params`` override the scaled paper defaults."""
    cls = OPERATORS.get(name)
    if cls is None:
        raise ValueError(f"unknown operator {name!r}; allowed: {sorted(OPERATORS)}")
    return cls(image_shape, seeds, device, **params)
