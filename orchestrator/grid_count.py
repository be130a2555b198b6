"""Counting a grid without expanding it: configs, work units and rows per (solver, steps).

``grid.expand`` builds one ``Config`` (and hashes its canonical JSON) per point: about 10^4 per
second on a loaded laptop. ``count`` walks the same ``grid.blocks`` (so every rule of ``expand``
holds by construction: solver ``tasks``, ``solver_lambdas``, classical solvers once without a
regularizer, ``task_step_sizes``, default step sizes) and counts their points arithmetically:

- Two configs are equal exactly when their block fields (``Block.fields``, compared as canonical
  JSON, as ``config_id`` does) and their five list values are equal. Blocks with different fields
  never share a config; blocks with the same fields (two ``none`` entries, repeated solver
  entries) overlap in the intersection of their lists, so their union is counted by
  inclusion-exclusion over boxes (products of value sets), or by enumerating the union's points
  when more than ``MAX_BOXES`` boxes share fields.
- ``plan.plan`` batches the configs of one (block fields, sigma_y, num_steps) group into units of
  ``batch_size`` rows: ``ceil(configs_in_group * samples / batch_size)`` units per group when no
  row is stored yet.

Values are compared as ``Config`` stores them: ints as ints, floats by their JSON text (so -0.0
and 0.0 differ, as their config ids do).
"""
from __future__ import annotations

import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field

from orchestrator import grid as _grid

#: Most boxes with the same fields counted by inclusion-exclusion (2^k terms); above, enumerated.
MAX_BOXES = 12


@dataclass
class GridCount:
    """``configs``; ``units`` (for ``samples`` images, ``batch_size`` rows a unit, nothing stored);
    ``todo_by``: rows per (solver, num_steps), what the time estimate multiplies."""

    configs: int = 0
    units: int = 0
    todo_by: dict = field(default_factory=dict)


def _key(v):
    return repr(v) if isinstance(v, float) else v


def _box(values) -> frozenset:
    return frozenset(_key(v) for v in values)


def union_size(boxes: list[tuple[frozenset, ...]]) -> int:
    """Points in the union of boxes (tuples of value sets of one dimension count)."""
    boxes = list(dict.fromkeys(boxes))  # identical boxes count once
    if len(boxes) == 1:
        return math.prod(len(d) for d in boxes[0])
    if len(boxes) > MAX_BOXES:
        return len({p for b in boxes for p in itertools.product(*b)})
    total = 0
    for r in range(1, len(boxes) + 1):
        for subset in itertools.combinations(boxes, r):
            dims = [frozenset.intersection(*ds) for ds in zip(*subset)]
            total += (-1) ** (r + 1) * math.prod(len(d) for d in dims)
    return total


def count(spec, samples: int = 1, batch_size: int | None = None) -> GridCount:
    """The ``GridCount`` of ``spec`` (see the module docstring) without building a Config."""
    batch_size = batch_size or spec.unit_rows
    by_fields: dict[str, list] = defaultdict(list)
    solver_of: dict[str, str] = {}
    for b in _grid.blocks(spec):
        k = _grid.canonical_json(b.fields)
        by_fields[k].append((_box(b.sigma_y), _box(b.num_steps), _box(b.step_sizes), _box(b.lambdas), _box(b.seeds)))
        solver_of[k] = b.fields["solver"]
    out = GridCount()
    for k, boxes in by_fields.items():
        pairs = dict.fromkeys(p for b in boxes for p in itertools.product(b[0], b[1]))  # (sigma_y, num_steps) groups
        for sigma, steps in pairs:
            n = union_size([b[2:] for b in boxes if sigma in b[0] and steps in b[1]])
            out.configs += n
            out.units += math.ceil(n * samples / batch_size)
            key = (solver_of[k], steps)
            out.todo_by[key] = out.todo_by.get(key, 0) + n * samples
    return out


def n_configs(spec) -> int:
    """The number of configs ``grid.expand(spec)`` returns, without expanding."""
    return count(spec).configs
