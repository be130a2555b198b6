"""A tune spec: a validated sweep spec plus its ``tune:`` section (``load``), and what follows from
them (tuning split and ids, chunks, objective direction, scheduler variants, fingerprint).

The ``tune:`` section is split off before ``orchestrator.spec.parse`` sees the rest, because
``SweepSpec`` forbids unknown keys; every problem of both parts is reported in one ``SpecError``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import yaml
from pydantic import ValidationError

from orchestrator import grid as _grid
from orchestrator import spec as spec_mod
from orchestrator.spec import ROW_METRICS, SpecError, SweepSpec
from orchestrator.tune.check import check, tune_split
from orchestrator.tune.section import TuneSection


@dataclass(frozen=True)
class TuneSpec:
    """A validated sweep spec plus its ``tune:`` section."""

    sweep: SweepSpec
    tune: TuneSection
    source: Optional[str] = None

    @property
    def run_id(self) -> str:
        return self.sweep.name

    @property
    def split(self) -> str:
        return tune_split(self.sweep, self.tune)

    @property
    def tuning_ids(self) -> list[int]:
        return self.tune.images.sample_ids()

    @property
    def chunk_size(self) -> int:
        return int(self.tune.chunk_size or max(1, math.ceil(len(self.tuning_ids) / 4)))

    @property
    def chunks(self) -> list[list[int]]:
        ids, c = self.tuning_ids, self.chunk_size
        return [ids[i:i + c] for i in range(0, len(ids), c)]

    @property
    def metric(self) -> str:
        return self.tune.objective.metric

    @property
    def mode(self) -> str:
        return self.tune.objective.direction

    @property
    def variants(self) -> list[str]:
        """Scheduler variants to run: the configured one first, then the other if comparing."""
        primary = self.tune.scheduler.kind
        return [primary] + ([{"none": "asha", "asha": "none"}[primary]] if self.tune.compare_schedulers else [])

    @property
    def row_metrics(self) -> list[str]:
        """What workers compute per row: the sweep's per-image metrics plus the objective."""
        wanted = [m for m in self.sweep.metrics if m in ROW_METRICS]
        if self.metric in ROW_METRICS and self.metric not in wanted:
            wanted.append(self.metric)
        return wanted

    def canonical(self) -> dict:
        return {**self.sweep.canonical(), "tune": json.loads(self.tune.model_dump_json())}

    @property
    def fingerprint(self) -> str:
        """The search's identity: the resolved spec (how overrides were written does not count)."""
        return _grid.stable_hash({k: v for k, v in self.canonical().items() if k != "overrides"}, 16)


def _read_source(source) -> tuple[dict, Optional[str]]:
    if isinstance(source, dict):
        return dict(source), None
    path = Path(source) if isinstance(source, (str, Path)) and "\n" not in str(source) else None
    if path is not None:
        if not path.exists():
            raise FileNotFoundError(f"spec file not found: {path}")
        text, name = path.read_text(), str(path)
    else:
        text, name = str(source), None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError([("<yaml>", str(exc).replace("\n", " "))], name) from None
    if not isinstance(data, dict):
        raise SpecError([("<spec>", f"expected a mapping at the top level, got {type(data).__name__}")], name)
    return data, name


def load(source: Union[dict, str, Path], overrides: Sequence[str] = ()) -> TuneSpec:
    """A validated :class:`TuneSpec` from a dict, a YAML path or YAML text; ``SpecError`` (every
    problem of the sweep part and of the ``tune:`` section at once) otherwise. ``overrides``:
    command-line ``KEY=VALUE`` strings (``orchestrator.overrides``; ``tune.*`` keys included)."""
    data, name = _read_source(source)
    if overrides:
        from orchestrator.overrides import apply

        data = apply(data, overrides, SweepSpec, extra={"tune": TuneSection})
    where = f"{name or '<spec>'} + overrides" if overrides else name  # errors may come from an override
    errors: list[tuple[str, str]] = []
    raw = data.pop("tune", None)
    section = None
    if raw is None:
        errors.append(("tune", "missing: a tune spec needs a tune: section (see configs/tune-smoke.yaml)"))
    else:
        try:
            section = TuneSection.model_validate(raw)
        except ValidationError as exc:
            errors += [(f"tune.{f}" if f != "<spec>" else "tune", m) for f, m in spec_mod._format_pydantic(exc)]
    sweep = None
    try:
        sweep = spec_mod.parse(data, source=where)
    except SpecError as exc:
        errors = list(exc.errors) + errors
    if sweep is not None and section is not None:
        errors += check(sweep, section)
    if errors:
        raise SpecError(errors, where)
    return TuneSpec(sweep.with_overrides(overrides), section, name)
