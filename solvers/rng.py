"""Per-row random streams: a row's randomness depends only on its own seed.

This is what makes results independent of batch composition, sharding and resume.
"""
from __future__ import annotations

import hashlib
import json
from typing import Iterable, Sequence

import torch


def row_seed(*parts) -> int:
    """A stable 63-bit seed from JSON-able parts, e.g. ``row_seed(config_id, sample_id, seed)``."""
    blob = json.dumps(list(parts), sort_keys=True, separators=(",", ":"), default=str)
    return int.from_bytes(hashlib.blake2b(blob.encode(), digest_size=8).digest(), "big") >> 1


def make_generators(seeds: Iterable[int], device: torch.device | str | None = None) -> list[torch.Generator]:
    """One ``torch.Generator`` per row on ``device``, seeded with that row's seed."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        gens.append(g)
    return gens


def randn_rows(shape: Sequence[int], generators: Sequence[torch.Generator], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Standard normal noise of ``(len(generators), *shape)``; row ``i`` drawn from ``generators[i]``."""
    rows = [torch.randn(tuple(shape), generator=g, device=device if device is not None else g.device, dtype=dtype) for g in generators]
    return torch.stack(rows, 0)


def randn_like_rows(x: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Noise shaped like ``x`` (B, ...), row ``i`` from ``generators[i]``."""
    if x.shape[0] != len(generators):
        raise ValueError(f"batch {x.shape[0]} but {len(generators)} generators")
    return randn_rows(x.shape[1:], generators, device=x.device, dtype=x.dtype)


def rand_rows(shape: Sequence[int], generators: Sequence[torch.Generator], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Uniform [0, 1) noise of ``(len(generators), *shape)``, row ``i`` from ``generators[i]``."""
    rows = [torch.rand(tuple(shape), generator=g, device=device if device is not None else g.device, dtype=dtype) for g in generators]
    return torch.stack(rows, 0)
