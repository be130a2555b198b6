"""Hyperparameter search: Ray Tune over lambda, step sizes and solver options, on resident workers.

``equibench tune SPEC.yaml`` reads an ordinary sweep spec plus a ``tune:`` section (validated
here, split off before ``orchestrator.spec.parse`` sees the rest, because ``SweepSpec`` forbids
unknown keys) and answers one question per *cell*: which hyperparameters give the best objective
for this (solver, regularizer, task)?

How a search runs
-----------------
1. **Cells.** The spec's solvers x regularizers x tasks (optionally filtered by ``tune.pairs``)
   are the cells. Each cell is its own Tune experiment, because objective values of different
   tasks are not comparable: one searcher or one ASHA over all cells would spend its trials on,
   and stop trials of, whichever task happens to score higher. A cell searches every key of
   ``tune.space`` except ``lam`` when its regularizer is ``none``; a cell left with nothing to
   search (the usual baseline) is evaluated once, without Tune (trial id ``fixed.<cell>``).
2. **Workers.** The driver starts the sweep's ``Worker`` actors (``orchestrator.worker``: models
   loaded once per actor) and one named :class:`Dispatcher` actor that hands each work unit to
   whichever worker is free. Trials look the dispatcher up by name; they never load a model, so a
   50-trial search costs one model load per worker, exactly like a sweep.
3. **Trials.** A trial is one configuration evaluated on the tuning images in chunks of
   ``chunk_size``; after each chunk it reports the running mean of the objective (``objective``)
   so ASHA can stop it early. A trial with a diverged or failed row reports a penalty
   (``PENALTY``, signed against the objective's direction) and stops: it cannot be the best.
4. **Store.** Every row goes to the Parquet store under the spec's name with ``run_kind="tune"``
   and ``trial_id="<variant>.<cell>.<tune trial id>"``, one file per unit named
   ``unit-<trial_id>.<unit>.parquet``: trials with identical configurations (the same lambda in two
   scheduler variants) never overwrite each other, and a search is queried like any sweep.
   Trials are pinned to the driver's node (they only wait on workers), so the store they write is
   the driver's.
5. **Resume.** Tune's own state lives in ``OUT/tune/<variant>-<cell>/``. ``--resume`` restores
   each unfinished experiment with ``Tuner.restore`` (finished ones are marked by
   ``equibench-done.json``), and a restarted trial reads back the rows it already stored instead
   of computing them again. ``OUT/tune/search.json`` holds the spec's fingerprint, so a changed
   spec is refused instead of being mixed into an old search.
6. **Results** (in ``OUT``), always computed from the store rows of the search's own trials:
   ``best-config.yaml`` (the best complete trial per cell, as sweep-spec fragments),
   ``lambda-sensitivity.png/.pdf``, ``trials.csv``, ``summary.json`` and ``summary.md``, including
   the number of image-evaluations per scheduler variant (``compare_schedulers`` runs the same
   search with and without ASHA, with the same searcher seed, to measure ASHA's saving).

Only trials that evaluated *every* tuning image can be the best: an ASHA-stopped trial's running
mean covers fewer images and is not comparable.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as _dt
import json
import math
import numbers
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import ray
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ray import tune

from orchestrator import driver as _driver
from orchestrator import grid as _grid
from orchestrator import plan as _plan
from orchestrator import spec as spec_mod
from orchestrator import store
from orchestrator.schema import LOWER_IS_BETTER
from orchestrator.spec import ROW_METRICS, RegSpec, SolverSpec, SpecError, SweepSpec, TaskSpec

#: Per-image columns a search may optimise (``y_residual`` needs no ground truth).
OBJECTIVE_METRICS = ROW_METRICS + ("y_residual",)
#: Ray namespace of the dispatcher actors that trials look up by name.
NAMESPACE = "equibench-tune"
#: Objective reported by a trial with a diverged/failed row (signed against the direction): finite,
#: so ASHA and Optuna rank it last instead of choking on NaN.
PENALTY = 1e6
#: CPU share of one trial: trials only wait on the workers, which hold the real CPU reservations.
TRIAL_CPUS = 0.01
#: Tune's experiment-state save period (s) unless TUNE_GLOBAL_CHECKPOINT_S is set: short, so a
#: driver killed early can still be resumed (the state is a small JSON file).
CHECKPOINT_PERIOD_S = "2"
DONE_FILE = "equibench-done.json"
#: ``step_scale`` multiplies each solver's own step size (``solvers[].step_sizes``), so one search
#: space serves solvers whose step sizes differ by orders of magnitude (DPS zeta ~1, DAPS lr ~1e-4).
SPACE_KEYS = ("lam", "step_size", "step_scale", "num_steps")
_OPTION_KEY = re.compile(r"^options\.([A-Za-z_][A-Za-z0-9_]*)$")


# ------------------------------------------------------------------------ the tune: section
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Model):
    """One searched parameter: ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}`` or a list of values.

    ``points`` turns a range into that many grid points (log- or linearly spaced) for the grid
    searcher; ``integer`` rounds (``num_steps`` is always integer).
    """

    loguniform: Optional[tuple[float, float]] = None
    uniform: Optional[tuple[float, float]] = None
    values: Optional[list[float]] = None
    points: Optional[int] = Field(None, ge=2, description="grid points for a range (grid searcher)")
    integer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, (list, tuple)):
            return {"values": list(v)}
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"values": [v]}
        return v

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("loguniform", "uniform", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform, values (got {given or 'none'})")
        if self.values is not None:
            if not self.values:
                raise ValueError("values is empty")
            if self.points is not None:
                raise ValueError("points applies to a range (loguniform/uniform), not to values")
        for kind in ("loguniform", "uniform"):
            rng = getattr(self, kind)
            if rng is not None:
                lo, hi = rng
                if not lo < hi:
                    raise ValueError(f"{kind}: need lo < hi, got [{lo}, {hi}]")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError(f"loguniform: lo must be > 0, got {lo}")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        if self.values is not None:
            return min(self.values), max(self.values)
        return tuple(self.loguniform or self.uniform)  # type: ignore[return-value]

    @property
    def gridable(self) -> bool:
        return self.values is not None or self.points is not None

    def grid_values(self) -> list:
        """The grid points: the values, or ``points`` spaced over the range (log for loguniform)."""
        if self.values is not None:
            vals = list(self.values)
        else:
            lo, hi = self.bounds
            n = int(self.points or 2)
            if self.loguniform is not None:
                vals = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
            else:
                vals = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        vals = [int(round(v)) if self.integer else float(v) for v in vals]
        return list(dict.fromkeys(vals))

    def domain(self, searcher: str):
        """The Tune search-space entry for ``searcher`` (grid: ``grid_search`` over the grid points)."""
        if searcher == "grid":
            return tune.grid_search(self.grid_values())
        if self.values is not None:
            return tune.choice([int(v) if self.integer else float(v) for v in self.values])
        lo, hi = self.bounds
        if self.loguniform is not None:
            return tune.lograndint(int(math.ceil(lo)), int(hi) + 1) if self.integer else tune.loguniform(lo, hi)
        return tune.randint(int(math.ceil(lo)), int(hi) + 1) if self.integer else tune.uniform(lo, hi)


class ObjectiveSpec(_Model):
    """The metric a search optimises (mean over the tuning images) and its direction."""

    metric: str
    mode: Optional[Literal["min", "max"]] = Field(None, description="default: min for lpips/rel_l2/y_residual, else max")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"metric": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known(self):
        if self.metric not in OBJECTIVE_METRICS:
            raise ValueError(f"unknown objective metric {self.metric!r}; allowed: {', '.join(map(repr, OBJECTIVE_METRICS))}")
        return self

    @property
    def direction(self) -> str:
        return self.mode or ("min" if self.metric in LOWER_IS_BETTER else "max")


class SchedulerSpec(_Model):
    """``none`` (every trial sees every tuning image) or ``asha`` (stops weak trials at chunk rungs)."""

    kind: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1, description="chunks every trial evaluates before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"kind": v} if isinstance(v, str) else v


class ImagesSpec(_Model):
    """The tuning subset: ``ids`` or ``count`` images from ``offset``, of ``split`` (default: the
    sweep dataset's split). It must not share images with the sweep's report images."""

    split: Optional[Literal["train", "val"]] = None
    ids: Optional[list[int]] = None
    count: Optional[int] = Field(None, ge=1)
    offset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.ids is None) == (self.count is None):
            raise ValueError("give ids or count (with an optional offset), not both and not neither")
        if self.ids is not None:
            spec_mod.check_sample_ids(self.ids)
            if self.offset:
                raise ValueError("offset applies to count, not to ids")
        return self

    def sample_ids(self) -> list[int]:
        return list(self.ids) if self.ids is not None else list(range(self.offset, self.offset + int(self.count)))


class PairSpec(_Model):
    solver: str
    regularizer: Literal["none", "equi", "equicon"]


class TuneSection(_Model):
    """The ``tune:`` section of a spec (see configs/tune-smoke.yaml for a commented example)."""

    objective: ObjectiveSpec
    images: ImagesSpec
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    searcher: Literal["grid", "random", "optuna"] = "random"
    num_samples: Optional[int] = Field(None, ge=1, description="trials per searched cell (random/optuna)")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    compare_schedulers: bool = Field(False, description="also run the search with the other scheduler")
    chunk_size: Optional[int] = Field(None, ge=1, description="images per reported chunk; default: a quarter")
    max_concurrent: Optional[int] = Field(None, ge=1, description="concurrent trials; default: one per worker")
    seed: int = 0
    startup_trials: Optional[int] = Field(None, ge=1, description="optuna: random trials before TPE")
    pairs: Optional[list[PairSpec]] = Field(None, min_length=1, description="(solver, regularizer) cells to search")


# ------------------------------------------------------------------------------ a tune spec
@dataclass(frozen=True)
class TuneSpec:
    """A validated sweep spec plus its ``tune:`` section."""

    sweep: SweepSpec
    tune: TuneSection
    backend: Optional[str] = None
    source: Optional[str] = None

    @property
    def run_id(self) -> str:
        return self.sweep.name

    @property
    def split(self) -> str:
        return self.tune.images.split or self.sweep.dataset.split

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
        return _grid.stable_hash(self.canonical(), 16)


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


def load(source: Union[dict, str, Path], backend: Optional[str] = None) -> TuneSpec:
    """A validated :class:`TuneSpec` from a dict, a YAML path or YAML text; ``SpecError`` (every
    problem of the sweep part and of the ``tune:`` section at once) otherwise."""
    data, name = _read_source(source)
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
        sweep = spec_mod.parse(data, backend=backend, source=name)
    except SpecError as exc:
        errors = list(exc.errors) + errors
    if sweep is not None and section is not None:
        errors += check(sweep, section, backend)
    if errors:
        raise SpecError(errors, name)
    return TuneSpec(sweep, section, backend, name)


def _dataset_size(sweep: SweepSpec, split: str, backend: Optional[str]) -> Optional[int]:
    from orchestrator import backend as _backend
    from orchestrator import data as _data

    datasets = getattr(_backend.resolve(backend), "DATASETS", None) if backend else None
    try:
        info = datasets[sweep.dataset.name] if datasets and sweep.dataset.name in datasets else _data.info(sweep.dataset.name)
    except ValueError:
        return None  # spec.check already reported the unknown dataset
    return info.sizes.get(split)


def _lpips_available(sweep: SweepSpec) -> bool:
    if sweep.metric_weights.get("lpips"):
        return Path(sweep.metric_weights["lpips"]).exists()
    try:
        from orchestrator.metrics import LPIPS_ALEXNET_FILE, find_weights
    except ImportError:
        return False
    return find_weights(LPIPS_ALEXNET_FILE) is not None


def check(sweep: SweepSpec, t: TuneSection, backend: Optional[str] = None) -> list[tuple[str, str]]:
    """Problems of a ``tune:`` section against its (valid) sweep spec; empty list: valid."""
    from orchestrator import backend as _backend

    errors: list[tuple[str, str]] = []
    solvers = _backend.resolve(backend).SOLVERS
    # images: in range, chunked, disjoint from the report images
    split = t.images.split or sweep.dataset.split
    ids = t.images.sample_ids()
    n = _dataset_size(sweep, split, backend)
    if n is None:
        errors.append(("tune.images.split", f"{split!r} is not a split of dataset {sweep.dataset.name!r}"))
    else:
        bad = [i for i in ids if i >= n]
        if bad:
            errors.append(("tune.images", f"ids {bad} out of range for {sweep.dataset.name}/{split}; allowed: 0..{n - 1}"))
        if split == sweep.dataset.split:
            report = set(_grid.sample_ids(sweep))
            shared = sorted(report & set(ids))
            if shared:
                errors.append(("tune.images", f"ids {shared} are also report images (dataset: {sweep.dataset.name}/{split} "
                               f"{'ids' if sweep.dataset.ids else 'the first ' + str(len(report))}); the tuning subset "
                               "must be disjoint from the images a sweep reports on"))
    if t.chunk_size is not None and t.chunk_size > len(ids):
        errors.append(("tune.chunk_size", f"{t.chunk_size} > the {len(ids)} tuning images"))
    n_chunks = math.ceil(len(ids) / (t.chunk_size or max(1, math.ceil(len(ids) / 4))))
    if "asha" in ([t.scheduler.kind] + (["asha"] if t.compare_schedulers else [])) and n_chunks < 2:
        errors.append(("tune.scheduler", f"asha needs at least 2 chunks to stop trials early; {len(ids)} image(s) in "
                       f"chunks of {t.chunk_size} give {n_chunks}"))
    # pairs select cells
    names = [s.name for s in sweep.solvers]
    kinds = [r.kind for r in sweep.regularizers]
    for p, pair in enumerate(t.pairs or []):
        if pair.solver not in names:
            errors.append((f"tune.pairs[{p}].solver", f"{pair.solver!r} is not among the spec's solvers; allowed: {names}"))
        if pair.regularizer not in kinds:
            errors.append((f"tune.pairs[{p}].regularizer", f"{pair.regularizer!r} is not among the spec's regularizers; allowed: {sorted(set(kinds))}"))
    chosen = [(j, k) for j, s in enumerate(sweep.solvers) for k, r in enumerate(sweep.regularizers)
              if t.pairs is None or any(p.solver == s.name and p.regularizer == r.kind for p in t.pairs)]
    # the space: known keys, sensible ranges, options every searched solver has
    for key, p in t.space.items():
        where = f"tune.space.{key}"
        lo, hi = p.bounds
        m = _OPTION_KEY.match(key)
        if key == "lam" and lo < 0:
            errors.append((where, f"lambda must be >= 0, got {lo}"))
        elif key in ("step_size", "step_scale") and lo <= 0:
            errors.append((where, f"step sizes must be > 0, got {lo}"))
        elif key == "step_scale" and "step_size" in t.space:
            errors.append((where, "search step_size or step_scale, not both"))
        elif key == "num_steps":
            if lo < 1:
                errors.append((where, f"step counts must be >= 1, got {lo}"))
            if not p.integer:
                errors.append((where, "num_steps is an integer: set integer: true"))
        elif m:
            for j in sorted({j for j, _ in chosen}):
                sname = sweep.solvers[j].name
                defaults = getattr(solvers.get(sname), "defaults", None)
                if defaults is not None and m.group(1) not in defaults:
                    errors.append((where, f"{sname!r} has no option {m.group(1)!r}; allowed: {sorted(defaults)}"))
        elif key not in SPACE_KEYS:
            errors.append((where, f"unknown parameter; allowed: {', '.join(SPACE_KEYS)}, options.<solver option>"))
        if t.searcher == "grid" and not p.gridable:
            errors.append((where, "the grid searcher needs values or a range with points"))
    # searcher settings
    if t.searcher == "grid" and t.num_samples is not None:
        errors.append(("tune.num_samples", "the grid searcher runs every grid point once; remove num_samples"))
    if t.searcher != "grid" and t.num_samples is None:
        errors.append(("tune.num_samples", f"the {t.searcher} searcher needs num_samples (trials per cell)"))
    if t.startup_trials is not None and t.searcher != "optuna":
        errors.append(("tune.startup_trials", "only the optuna searcher has startup trials"))
    # every cell must be a single configuration apart from what is searched
    if len(sweep.seeds) > 1:
        errors.append(("seeds", f"a search evaluates one seed; got {sweep.seeds}"))
    for j in sorted({j for j, _ in chosen}):
        sol = sweep.solvers[j]
        if "num_steps" not in t.space and len(sol.num_steps) > 1:
            errors.append((f"solvers[{j}].num_steps", f"{sol.num_steps}: give one value or search tune.space.num_steps"))
        if "step_size" not in t.space and any(len(sol.step_sizes_for(task.label)) > 1 for task in sweep.tasks):
            errors.append((f"solvers[{j}].step_sizes", f"{sol.step_sizes}: give one value or search tune.space.step_size"
                           + (" (step_scale multiplies that one value)" if "step_scale" in t.space else "")))
    for i, task in enumerate(sweep.tasks):
        if len(task.sigma_y) > 1:
            errors.append((f"tasks[{i}].sigma_y", f"{task.sigma_y}: a search tunes one noise level per task; "
                           "list the task once per noise level, each with its own name"))
    for k in sorted({k for _, k in chosen}):
        reg = sweep.regularizers[k]
        if reg.kind != "none" and "lam" not in t.space and len(reg.lambdas) > 1:
            errors.append((f"regularizers[{k}].lambdas", f"{reg.lambdas}: give one value or search tune.space.lam"))
    if chosen and not any(_cell_keys(t, sweep.regularizers[k]) for _, k in chosen):
        errors.append(("tune.space", "nothing to search: no selected cell has a parameter in tune.space"))
    if t.objective.metric == "lpips" and not _lpips_available(sweep):
        errors.append(("tune.objective", "lpips needs the AlexNet weights file (metric_weights.lpips or "
                       "$EQUIBENCH_WEIGHTS); without it every value is null"))
    return errors


# ------------------------------------------------------------------------------------ cells
def _cell_keys(t: TuneSection, reg: RegSpec) -> list[str]:
    """The space keys a cell searches: all of them, except lambda for the baseline."""
    return [k for k in t.space if not (k == "lam" and reg.kind == "none")]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._-") or "x"


@dataclass(frozen=True)
class Cell:
    """One (solver, regularizer, task) of a search: its fixed configuration and what it searches."""

    slug: str
    solver: SolverSpec
    reg: RegSpec
    task: TaskSpec
    template: _grid.Config  # the configuration with the spec's values (lam etc.) on the tuning split
    params: dict  # name -> ParamSpec, the searched keys
    solver_index: int
    reg_index: int

    @property
    def searched(self) -> bool:
        return bool(self.params)

    @property
    def label(self) -> str:
        return f"{self.solver.name}/{self.reg.kind}/{self.task.label}"

    def config(self, params: dict) -> _grid.Config:
        """The cell's configuration with ``params`` (``lam``, ``step_size``, ``step_scale``, ``num_steps``,
        ``options.<name>``) applied; numbers become plain Python numbers (config ids hash JSON)."""
        t = self.template
        opts = dict(t.solver_options)
        for key, value in params.items():
            m = _OPTION_KEY.match(key)
            if m:
                opts[m.group(1)] = _plain(value, self.params.get(key))
        return dataclasses.replace(
            t, lam=float(params.get("lam", t.lam)),
            step_size=float(params.get("step_size", t.step_size)) * float(params.get("step_scale", 1.0)),
            num_steps=int(round(float(params.get("num_steps", t.num_steps)))), solver_options=opts)

    def n_trials(self, t: TuneSection) -> int:
        if not self.searched:
            return 1
        if t.searcher == "grid":
            return math.prod(len(p.grid_values()) for p in self.params.values())
        return int(t.num_samples)


def _plain(value, p: Optional[ParamSpec] = None):
    """A plain Python int/float from a Tune/numpy number (anything else is returned as is)."""
    if p is not None and p.integer:
        return int(round(float(value)))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def make_cells(ts: TuneSpec) -> list[Cell]:
    """The cells of a search in spec order (solver, regularizer, task), each with its template."""
    sweep, t = ts.sweep, ts.tune
    name_counts = {n: [s.name for s in sweep.solvers].count(n) for n in {s.name for s in sweep.solvers}}
    kind_counts = {k: [r.kind for r in sweep.regularizers].count(k) for k in {r.kind for r in sweep.regularizers}}
    out = []
    for j, sol in enumerate(sweep.solvers):
        for k, reg in enumerate(sweep.regularizers):
            if t.pairs is not None and not any(p.solver == sol.name and p.regularizer == reg.kind for p in t.pairs):
                continue
            for task in sweep.tasks:
                sub = sweep.model_copy(update={"solvers": [sol], "tasks": [task], "regularizers": [reg],
                                               "seeds": [sweep.seeds[0]]})
                template = dataclasses.replace(_grid.expand(sub, ts.backend)[0], split=ts.split)
                sname = sol.name + (str(j) if name_counts[sol.name] > 1 else "")
                rname = reg.kind + (str(k) if kind_counts[reg.kind] > 1 else "")
                out.append(Cell(_slug(f"{sname}-{rname}-{task.label}"), sol, reg, task, template,
                                {key: t.space[key] for key in _cell_keys(t, reg)}, j, k))
    return out


def baseline_cell(cell: Cell, cells: list[Cell]) -> Optional[Cell]:
    """The ``none`` cell of the same solver and task (what lambda 0 scores), if the search has one."""
    if cell.reg.kind == "none":
        return None
    return next((c for c in cells if c.reg.kind == "none" and c.solver_index == cell.solver_index
                 and c.task.label == cell.task.label), None)


# ------------------------------------------------------------------------ workers for trials
@ray.remote(num_cpus=0)
class Dispatcher:
    """A named actor that runs each unit on whichever ``Worker`` is free (FIFO over callers).

    Trials call it instead of picking a worker themselves, so concurrent trials never queue on one
    worker while another idles; a caller that dies mid-call does not leak its worker (the slot is
    released when the unit returns, not when the caller collects it). It runs no user code and is
    not restarted (its constructor arguments are actor handles); the workers behind it are
    (``Worker``: ``max_restarts=-1``), so a worker that dies is restarted and its unit re-run.
    """

    def __init__(self, workers: list):
        self._workers = list(workers)
        self._free: asyncio.Queue = asyncio.Queue()
        for i in range(len(self._workers)):
            self._free.put_nowait(i)
        self._served = [0] * len(self._workers)

    async def run_unit(self, unit, context: dict) -> dict:
        i = await self._free.get()
        try:
            self._served[i] += 1
            return await self._workers[i].run_unit.remote(unit, context)
        finally:
            self._free.put_nowait(i)

    async def info(self) -> list[dict]:
        infos = await asyncio.gather(*(w.info.remote() for w in self._workers))
        return [{**inf, "units": n} for inf, n in zip(infos, self._served)]


@dataclass
class WorkerPool:
    """The workers of a search and the named dispatcher in front of them (started by the driver)."""

    name: str
    workers: list
    dispatcher: Any

    @classmethod
    def start(cls, sweep: SweepSpec, n: int, backend: Optional[str], name: str) -> "WorkerPool":
        workers = _driver.start_actors(sweep, n, backend, name=name)
        dispatcher = Dispatcher.options(name=name, namespace=NAMESPACE).remote(workers)
        ray.get(dispatcher.info.remote())  # every worker and the dispatcher up before a trial looks it up
        return cls(name, workers, dispatcher)

    def close(self) -> None:
        for actor in [self.dispatcher] + list(self.workers):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass


# ------------------------------------------------------------------------- evaluating rows
def trial_units(cfg: _grid.Config, samples: list[int], batch_size: int, trial_id: str) -> list[_plan.WorkUnit]:
    """Units for ``cfg`` on ``samples``, their ids prefixed with the trial id (one file per trial unit)."""
    units = _plan.plan([cfg], samples, batch_size)
    for u in units:
        u.unit_id = f"{trial_id}.{u.unit_id}"
    return units


def run_units(dispatcher, units: list[_plan.WorkUnit], context: dict, store_dir, run_id: str) -> list[dict]:
    """Run ``units`` through the dispatcher (all submitted at once), store each, return the rows."""
    refs = [dispatcher.run_unit.remote(u, context) for u in units]
    rows: list[dict] = []
    for u, ref in zip(units, refs):
        res = ray.get(ref)
        store.write_unit(store_dir, run_id, u.unit_id, res["rows"])
        rows += res["rows"]
    return rows


def stored_trial_rows(store_dir, run_id: str, trial_id: str) -> dict[int, dict]:
    """``{sample_id: row}`` a trial already stored (an ok row wins); unreadable files are skipped,
    so their rows are computed again."""
    import pyarrow.parquet as pq

    folder = store.results_dir(store_dir, run_id)
    out: dict[int, dict] = {}
    if not folder.is_dir():
        return out
    for f in sorted(folder.glob(f"unit-{trial_id}.*.parquet")):
        try:
            rows = pq.read_table(f).to_pylist()
        except Exception:  # noqa: BLE001 - a torn file: recompute its rows
            continue
        for row in rows:
            if row.get("trial_id") != trial_id:
                continue
            s = int(row["sample_id"])
            if s not in out or (out[s].get("status") != "ok" and row.get("status") == "ok"):
                out[s] = row
    return out


def rows_status(rows: list[dict], metric: str) -> str:
    """``ok`` when every row is ok with a value of ``metric``; else the first problem's status."""
    for r in rows:
        if r.get("status") != "ok":
            return str(r.get("status") or "failed")
        v = r.get(metric)
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "missing"
    return "ok"


def penalty(mode: str) -> float:
    """The objective a trial with a diverged/failed row reports: the worst finite value."""
    return -PENALTY if mode == "max" else PENALTY


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one experiment shares (passed with ``tune.with_parameters``)."""

    run_id: str
    store_dir: str
    variant: str
    cell: Cell
    chunks: list
    batch_size: int
    metric: str
    mode: str
    dispatcher: str
    context: dict


def trial_key(variant: str, cell_slug: str, tune_trial_id: str) -> str:
    return f"{variant}.{cell_slug}.{tune_trial_id}"


def run_trial(config: dict, job: TrialJob) -> None:
    """A Tune trial: evaluate one configuration chunk by chunk, reporting the running mean.

    Rows the trial stored before an interruption are read back, not recomputed (``failed`` rows
    are recomputed), so a restored trial re-reports its earlier chunks at once.
    """
    key = trial_key(job.variant, job.cell.slug, tune.get_context().get_trial_id())
    cfg = job.cell.config(config)
    dispatcher = ray.get_actor(job.dispatcher, namespace=NAMESPACE)
    context = {**job.context, "run_id": job.run_id, "run_kind": "tune", "trial_id": key, "save_images": False}
    have = stored_trial_rows(job.store_dir, job.run_id, key)
    values: list[float] = []
    evaluated = 0
    images = 0
    for k, chunk in enumerate(job.chunks):
        todo = [s for s in chunk if have.get(s, {}).get("status") not in ("ok", "diverged")]
        if todo:
            units = trial_units(cfg, todo, job.batch_size, key)
            for row in run_units(dispatcher, units, context, job.store_dir, job.run_id):
                have[int(row["sample_id"])] = row
            evaluated += len(todo)
        rows = [have[s] for s in chunk]
        images += len(chunk)
        status = rows_status(rows, job.metric)
        if status == "ok":
            values += [float(r[job.metric]) for r in rows]
        mean = sum(values) / len(values) if status == "ok" else float("nan")
        tune.report({"objective": mean if status == "ok" else penalty(job.mode), "mean": mean, "images": images,
                     "evaluated": evaluated, "chunk": k + 1, "status": status, "trial_key": key})
        if status != "ok":
            return


# ------------------------------------------------------------------------- the experiments
class _ProgressCallback(tune.Callback):
    """One line per reported chunk and per trial error (Tune's own tables are silenced)."""

    def __init__(self, label: str, n_chunks: int, metric: str, quiet: bool):
        self.label, self.n_chunks, self.metric, self.quiet = label, n_chunks, metric, quiet

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.quiet:
            return
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(trial.config.items()))
        print(f"[{self.label}] {trial.trial_id} {params}: chunk {result.get('chunk')}/{self.n_chunks}, "
              f"{self.metric} {_fmt(result.get('mean'))} ({result.get('status')})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self.quiet:
            print(f"[{self.label}] {trial.trial_id} raised; see {trial.path}", flush=True)


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


@contextlib.contextmanager
def _env(**values):
    """Set environment variables that are not already set, for the block only."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _searcher(t: TuneSection, n_trials: int, max_concurrent: int):
    """Grid/random: Tune's variant generator (seeded: with one seed, both scheduler variants draw the
    same configurations); optuna: TPE, seeded, ``startup_trials`` random trials first (Optuna's
    default of 10 would leave a 16-trial search mostly random; default here: a quarter, >= 2),
    behind a concurrency limiter."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if t.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = t.startup_trials or max(2, n_trials // 4)
        search = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=t.seed, n_startup_trials=startup))
        return ConcurrencyLimiter(search, max_concurrent=max_concurrent)
    return BasicVariantGenerator(random_state=t.seed, max_concurrent=max_concurrent)


def _scheduler(kind: str, t: TuneSection, n_chunks: int):
    if kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=n_chunks, grace_period=t.scheduler.grace_period,
                         reduction_factor=t.scheduler.reduction_factor)


def _trial_resources():
    """A tiny CPU share, pinned to the driver's node when Ray exposes it (trials write the store)."""
    bundle: dict[str, float] = {"CPU": TRIAL_CPUS}
    node = f"node:{ray.util.get_node_ip_address()}"
    if node in ray.cluster_resources():
        bundle[node] = 0.001
    return tune.PlacementGroupFactory([bundle])


def experiment_name(variant: str, cell: Cell) -> str:
    return f"{variant}-{cell.slug}"


def _trial_records(results) -> list[dict]:
    """One record per trial of a finished experiment: ids, sampled config, last report, error."""
    out = []
    for r in results:
        m = dict(r.metrics or {})
        tid = m.get("trial_id")
        if tid is None and r.path:
            found = re.search(r"([0-9a-f]{5}_\d{5})", Path(r.path).name)
            tid = found.group(1) if found else None
        out.append({
            "tune_trial_id": tid, "trial_key": m.get("trial_key"), "config": {k: _plain(v) for k, v in (r.config or {}).items()},
            "objective": m.get("objective"), "mean": m.get("mean"), "images": m.get("images"),
            "status": m.get("status"), "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}"[:500],
        })
    return out


def run_experiment(ts: TuneSpec, cell: Cell, variant: str, job: TrialJob, tune_dir: Path, resume: bool,
                   max_concurrent: int, quiet: bool) -> list[dict]:
    """Run (or restore and finish) one cell's Tune experiment; returns its trial records."""
    exp_dir = tune_dir / experiment_name(variant, cell)
    done = exp_dir / DONE_FILE
    if done.exists():
        return json.loads(done.read_text())["trials"]
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), _trial_resources())
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        if not quiet:
            print(f"[{exp_dir.name}] resuming the search stored in {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if exp_dir.exists():  # started but never saved a restorable state: start it over
            shutil.rmtree(exp_dir)
        n_trials = cell.n_trials(ts.tune)
        tuner = tune.Tuner(
            trainable,
            param_space={k: p.domain(ts.tune.searcher) for k, p in cell.params.items()},
            tune_config=tune.TuneConfig(
                metric="objective", mode=ts.mode, search_alg=_searcher(ts.tune, n_trials, max_concurrent),
                scheduler=_scheduler(variant, ts.tune, len(ts.chunks)),
                num_samples=1 if ts.tune.searcher == "grid" else n_trials,
                reuse_actors=True),  # trial processes are light but slow to start: keep them
            run_config=tune.RunConfig(
                name=exp_dir.name, storage_path=str(tune_dir), verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                callbacks=[_ProgressCallback(exp_dir.name, len(ts.chunks), ts.metric, quiet)]),
        )
    results = tuner.fit()
    trials = _trial_records(results)
    for rec in trials:
        if rec["trial_key"] is None and rec["tune_trial_id"]:
            rec["trial_key"] = trial_key(variant, cell.slug, rec["tune_trial_id"])
    payload = json.dumps({"experiment": exp_dir.name, "cell": cell.label, "variant": variant,
                          "finished_at": _now(), "trials": trials}, indent=2, default=str)
    tmp = done.with_name(f".tmp-{done.name}")
    tmp.write_text(payload)
    os.replace(tmp, done)
    return trials


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ the search
@dataclass
class TuneResult:
    """What ``run_search`` produced: the summary (also in summary.json) and the files written."""

    run_id: str
    out_dir: Path
    summary: dict
    files: dict = field(default_factory=dict)
    wall_s: float = 0.0


def _start_state(ts: TuneSpec, tune_dir: Path, resume: bool) -> None:
    state = tune_dir / "search.json"
    if state.exists():
        prev = json.loads(state.read_text())
        if not resume:
            raise ValueError(f"{tune_dir.parent} already holds search {prev.get('run_id')!r} (started "
                             f"{prev.get('started_at')}); pass --resume to continue it, or choose another --out")
        if prev.get("fingerprint") != ts.fingerprint:
            raise ValueError(f"the spec changed since the search in {tune_dir.parent} started; resume it with the "
                             "same spec, or start the new search with another --out")
        return
    tune_dir.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"run_id": ts.run_id, "fingerprint": ts.fingerprint, "started_at": _now(),
                                 "source": ts.source, "spec": ts.canonical()}, indent=2, default=str))


def run_search(ts: TuneSpec, store_dir, out_dir, *, resume: bool = False, address: Optional[str] = None,
               num_actors: Optional[int] = None, quiet: bool = False) -> TuneResult:
    """Run (or, with ``resume``, continue) the search of ``ts``; see the module docstring."""
    t0 = time.perf_counter()
    store_dir, out_dir = Path(store_dir).resolve(), Path(out_dir).resolve()
    tune_dir = out_dir / "tune"
    _start_state(ts, tune_dir, resume)
    cells = make_cells(ts)
    planned = sum(c.n_trials(ts.tune) * len(ts.tuning_ids) * (len(ts.variants) if c.searched else 1) for c in cells)
    store.register_run(store_dir, ts.run_id, ts.canonical(), planned, run_kind="tune",
                       n_configs=sum(c.n_trials(ts.tune) for c in cells), n_samples=len(ts.tuning_ids))
    # baselines and other cells with nothing to search: one configuration each, evaluated without Tune
    fixed = {c.slug: f"fixed.{c.slug}" for c in cells if not c.searched}
    fixed_units = []
    for cell in cells:
        if cell.slug in fixed:
            have = stored_trial_rows(store_dir, ts.run_id, fixed[cell.slug])
            todo = [s for s in ts.tuning_ids if have.get(s, {}).get("status") not in ("ok", "diverged")]
            fixed_units += trial_units(cell.template, todo, ts.sweep.batch_size, fixed[cell.slug]) if todo else []
    searches = [(v, c) for v in ts.variants for c in cells if c.searched]
    pending = [(v, c) for v, c in searches if not (tune_dir / experiment_name(v, c) / DONE_FILE).exists()]
    experiments: dict[str, dict[str, list[dict]]] = {v: {} for v in ts.variants}
    workers: list = []
    if fixed_units or pending:
        workers = _compute(ts, cells, fixed_units, searches, experiments, store_dir, tune_dir, resume, address,
                           num_actors, quiet)
    else:  # a finished search resumed: nothing to compute, no Ray; the summary is rebuilt from the store
        for v, c in searches:
            experiments[v][c.slug] = json.loads((tune_dir / experiment_name(v, c) / DONE_FILE).read_text())["trials"]
        previous = out_dir / "summary.json"
        workers = json.loads(previous.read_text()).get("workers", []) if previous.exists() else []
        if not quiet:
            print(f"[{ts.run_id}] nothing to compute: the search in {tune_dir} is finished", flush=True)
    summary = analyse(ts, cells, store_dir, experiments, fixed, workers)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    files = write_outputs(ts, cells, summary, out_dir)
    return TuneResult(ts.run_id, out_dir, summary, files, summary["wall_s"])


def _compute(ts: TuneSpec, cells: list[Cell], fixed_units: list, searches: list, experiments: dict, store_dir: Path,
             tune_dir: Path, resume: bool, address: Optional[str], num_actors: Optional[int], quiet: bool) -> list[dict]:
    """Start Ray and the worker pool, evaluate the fixed cells, run every (variant, cell) experiment
    (finished ones are read from their done file); returns the workers' info (model loads)."""
    started_ray = _driver.ensure_ray(address)
    pool = None
    try:
        n = num_actors or ts.sweep.resources.num_actors or _driver.auto_actors(ts.sweep, 1 << 20)
        pool = WorkerPool.start(ts.sweep, n, ts.backend, name=f"tune-{ts.run_id}-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        context = {"code_version": _driver.code_version(), "metrics": ts.row_metrics}
        refs = [(u, pool.dispatcher.run_unit.remote(u, {**context, "run_id": ts.run_id, "run_kind": "tune",
                                                         "trial_id": u.unit_id.rsplit(".", 1)[0], "save_images": False}))
                for u in fixed_units]
        for u, ref in refs:
            store.write_unit(store_dir, ts.run_id, u.unit_id, ray.get(ref)["rows"])
        if refs and not quiet:
            print(f"[{ts.run_id}] evaluated the fixed cells on {len(ts.tuning_ids)} tuning images", flush=True)
        max_concurrent = ts.tune.max_concurrent or len(pool.workers)
        with _env(TUNE_GLOBAL_CHECKPOINT_S=CHECKPOINT_PERIOD_S, RAY_AIR_NEW_OUTPUT="0"):
            for variant, cell in searches:
                job = TrialJob(ts.run_id, str(store_dir), variant, cell, ts.chunks, ts.sweep.batch_size,
                               ts.metric, ts.mode, pool.name, context)
                experiments[variant][cell.slug] = run_experiment(ts, cell, variant, job, tune_dir, resume,
                                                                 max_concurrent, quiet)
        return ray.get(pool.dispatcher.info.remote())
    finally:
        if pool is not None:
            pool.close()
        if started_ray:
            ray.shutdown()


# -------------------------------------------------------------------------------- analysis
def _trial_stats(rows, metric: str, n_images: int) -> dict:
    """Rows of one trial (a DataFrame) -> mean objective, counts and status."""
    n_rows = int(len(rows))
    if n_rows == 0:
        return {"mean": None, "n_images": 0, "n_rows": 0, "status": "empty"}
    ok = rows[(rows["status"] == "ok") & rows[metric].notna()]
    bad = n_rows - int(len(ok))
    mean = float(ok[metric].mean()) if len(ok) else None
    if bad:
        status = "diverged" if (rows["status"] == "diverged").any() else "failed"
    else:
        status = "complete" if len(ok) == n_images else "stopped"
    return {"mean": mean, "n_images": int(len(ok)), "n_rows": n_rows, "status": status}


def _params_of(cell: Cell, config: dict) -> dict:
    return {k: _plain(config[k], cell.params.get(k)) for k in cell.params if k in config}


def _best(trials: list[dict], mode: str) -> Optional[dict]:
    complete = [t for t in trials if t["status"] == "complete" and t["mean"] is not None]
    if not complete:
        return None
    sign = 1 if mode == "max" else -1
    return max(sorted(complete, key=lambda t: t["trial_key"]), key=lambda t: sign * t["mean"])


def analyse(ts: TuneSpec, cells: list[Cell], store_dir, experiments: dict, fixed: dict, workers: list) -> dict:
    """The search's summary, computed from the store rows of its own trials (not Tune's reports)."""
    metric, mode, n_img = ts.metric, ts.mode, len(ts.tuning_ids)
    df = store.load(store_dir, run=ts.run_id, filters={"run_kind": "tune"},
                    columns=["trial_id", "sample_id", "status", metric, "config_id"])
    df = df[df["sample_id"].isin(ts.tuning_ids)]
    groups = {k: g for k, g in df.groupby("trial_id")}
    empty = df.iloc[0:0]

    def fixed_entry(cell: Cell) -> dict:
        key = fixed[cell.slug]
        st = _trial_stats(groups.get(key, empty), metric, n_img)
        return {"trial_key": key, "params": {}, "config_id": cell.template.config_id, **st}

    variants = {}
    for variant in ts.variants:
        vcells, evaluations, n_trials = {}, 0, 0
        for cell in cells:
            if not cell.searched:
                entry = fixed_entry(cell)
                vcells[cell.slug] = {"cell": _cell_info(cell), "fixed": True, "trials": [entry],
                                     "best": entry if entry["status"] == "complete" else None}
                continue
            trials = []
            for rec in experiments.get(variant, {}).get(cell.slug, []):
                key = rec.get("trial_key")
                st = _trial_stats(groups.get(key, empty), metric, n_img) if key else {
                    "mean": None, "n_images": 0, "n_rows": 0, "status": "empty"}
                if rec.get("error") and st["status"] in ("stopped", "empty"):
                    st["status"] = "errored"
                params = _params_of(cell, rec.get("config") or {})
                trials.append({"trial_key": key, "params": params, "config_id": cell.config(params).config_id,
                               "tune_objective": rec.get("objective"), "error": rec.get("error"), **st})
            evaluations += sum(t["n_rows"] for t in trials)
            n_trials += len(trials)
            vcells[cell.slug] = {"cell": _cell_info(cell), "fixed": False, "trials": trials, "best": _best(trials, mode),
                                 "counts": {s: sum(t["status"] == s for t in trials)
                                            for s in ("complete", "stopped", "diverged", "failed", "errored", "empty")}}
        for cell in cells:
            base = baseline_cell(cell, cells)
            entry = vcells[cell.slug]
            entry["baseline"] = None
            if base is not None and vcells[base.slug]["best"] is not None:
                b = vcells[base.slug]["best"]
                entry["baseline"] = {"cell": base.slug, "mean": b["mean"], "params": b["params"]}
        variants[variant] = {"cells": vcells, "trials": n_trials, "evaluations": evaluations,
                             "full_budget": n_trials * n_img}
    fixed_evals = sum(int(len(groups.get(k, empty))) for k in fixed.values())
    return {
        "run_id": ts.run_id, "objective": {"metric": metric, "mode": mode}, "searcher": ts.tune.searcher,
        "primary": ts.variants[0], "variants_run": ts.variants,
        "tuning_images": {"dataset": ts.sweep.dataset.name, "split": ts.split, "ids": ts.tuning_ids},
        "chunk_size": ts.chunk_size, "n_chunks": len(ts.chunks), "variants": variants,
        "fixed_evaluations": fixed_evals, "workers": workers,
        "model_loads": {w.get("name"): w.get("loads") for w in workers},
    }


def _cell_info(cell: Cell) -> dict:
    return {"solver": cell.solver.name, "regularizer": cell.reg.kind, "task": cell.task.label,
            "searched": sorted(cell.params), "label": cell.label}


# --------------------------------------------------------------------------------- outputs
def sweep_fragment(cell: Cell, cfg: _grid.Config) -> dict:
    """The sweep-spec pieces (``solvers``, ``tasks``, ``regularizers``) that reproduce ``cfg``,
    with the baseline (``none``) alongside a regularized configuration."""
    solver = json.loads(cell.solver.model_dump_json())
    solver.update(num_steps=[cfg.num_steps], step_sizes=[cfg.step_size], options=dict(cfg.solver_options))
    solver.pop("task_step_sizes", None)  # the fragment's one task carries its own step size
    task = json.loads(cell.task.model_dump_json(exclude_none=True))
    reg = json.loads(cell.reg.model_dump_json())
    reg["lambdas"] = [cfg.lam] if cell.reg.kind != "none" else [0.0]
    regs = ([{"kind": "none"}] if cell.reg.kind != "none" else []) + [reg]
    return {"solvers": [solver], "tasks": [task], "regularizers": regs}


def best_config_document(ts: TuneSpec, cells: list[Cell], summary: dict) -> dict:
    """The best-config.yaml content for the primary variant."""
    variant = summary["primary"]
    vs = summary["variants"][variant]["cells"]
    best = {}
    for cell in cells:
        entry = vs[cell.slug]
        b = entry["best"]
        if b is None:
            continue
        cfg = cell.config(b["params"])
        best[cell.slug] = {
            "solver": cell.solver.name, "regularizer": cell.reg.kind, "task": cell.task.label,
            "params": b["params"], "lam": cfg.lam, "step_size": cfg.step_size, "num_steps": cfg.num_steps,
            "objective": b["mean"], "baseline": (entry.get("baseline") or {}).get("mean"),
            "n_images": b["n_images"], "trial_id": b["trial_key"], "config_id": cfg.config_id,
            "sweep": sweep_fragment(cell, cfg),
        }
    return {
        "search": {"run_id": ts.run_id, "variant": variant, "searcher": ts.tune.searcher,
                   "objective": dict(summary["objective"]), "tuning_images": summary["tuning_images"]},
        "best": best,
    }


def _header(ts: TuneSpec, summary: dict) -> str:
    obj = summary["objective"]
    return (f"# Best configurations found by `equibench tune` (search {ts.run_id!r}, scheduler "
            f"{summary['primary']}, searcher {ts.tune.searcher}).\n"
            f"# Objective: {obj['metric']} ({obj['mode']}), mean over {len(ts.tuning_ids)} tuning images of "
            f"{ts.sweep.dataset.name}/{ts.split}, disjoint from the spec's report images; only trials that saw\n"
            "# every tuning image compete. `baseline` is the same solver and task without regularizer.\n"
            "# Each `best.<cell>.sweep` is a sweep-spec fragment (solvers, tasks, regularizers with the\n"
            "# baseline): merge it into a sweep spec's top level to run that configuration on report images.\n")


def write_outputs(ts: TuneSpec, cells: list[Cell], summary: dict, out_dir: Path) -> dict:
    """best-config.yaml, summary.json/.md, trials.csv and the lambda-sensitivity figure in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    doc = best_config_document(ts, cells, summary)
    path = out_dir / "best-config.yaml"
    path.write_text(_header(ts, summary) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    files["best_config"] = path
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    files["summary_json"] = path
    path = out_dir / "summary.md"
    path.write_text(summary_markdown(ts, summary))
    files["summary_md"] = path
    path = out_dir / "trials.csv"
    _trials_frame(summary).to_csv(path, index=False)
    files["trials_csv"] = path
    figs = plot_sensitivity(ts, cells, summary, out_dir)
    if figs:
        files["sensitivity_png"], files["sensitivity_pdf"] = figs
    return files


def _trials_frame(summary: dict):
    import pandas as pd

    rows = []
    for variant, v in summary["variants"].items():
        for slug, entry in v["cells"].items():
            for t in entry["trials"]:
                rows.append({"variant": variant, "cell": slug, **entry["cell"], "trial_id": t["trial_key"],
                             **{f"param:{k}": val for k, val in t["params"].items()}, "mean": t["mean"],
                             "n_images": t["n_images"], "n_rows": t["n_rows"], "status": t["status"],
                             "is_best": entry["best"] is not None and entry["best"]["trial_key"] == t["trial_key"]})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.drop(columns=["searched", "label"], errors="ignore")
    return frame


def summary_markdown(ts: TuneSpec, summary: dict) -> str:
    """A short human summary: best configuration against the baseline per cell, and evaluations."""
    obj = summary["objective"]
    lines = [f"# Tune search `{ts.run_id}`", "",
             f"Objective: **{obj['metric']}** ({obj['mode']}), mean over {len(ts.tuning_ids)} tuning images "
             f"({summary['tuning_images']['dataset']}/{summary['tuning_images']['split']} ids "
             f"{_ids_text(ts.tuning_ids)}), reported every {ts.chunk_size} image(s); searcher {ts.tune.searcher}.", ""]
    for variant in summary["variants_run"]:
        v = summary["variants"][variant]
        lines += [f"## Scheduler `{variant}`" + (" (primary: best-config.yaml)" if variant == summary["primary"] else ""), "",
                  "| solver | regularizer | task | best | objective | baseline | delta | trials (complete/stopped/invalid) |",
                  "|---|---|---|---|---|---|---|---|"]
        for slug, e in v["cells"].items():
            c, b = e["cell"], e["best"]
            best = ", ".join(f"{k}={_fmt(float(val))}" for k, val in b["params"].items()) if b and b["params"] else ("(fixed)" if b else "none complete")
            objective = _fmt(b["mean"]) if b else "-"
            base = e.get("baseline")
            delta = _fmt(b["mean"] - base["mean"]) if b and base else "-"
            counts = e.get("counts")
            tr = (f"{counts['complete']}/{counts['stopped']}/{counts['diverged'] + counts['failed'] + counts['errored'] + counts['empty']}"
                  if counts else "fixed")
            lines.append(f"| {c['solver']} | {c['regularizer']} | {c['task']} | {best} | {objective} | "
                         f"{_fmt(base['mean']) if base else '-'} | {delta} | {tr} |")
        lines += ["", f"Image-evaluations: **{v['evaluations']}** for {v['trials']} trials "
                      f"(every trial on every image: {v['full_budget']}).", ""]
    if len(summary["variants_run"]) == 2:
        a, b = (summary["variants"][k]["evaluations"] for k in ("asha", "none"))
        if b:
            lines += [f"ASHA used {a} image-evaluations against {b} without early stopping "
                      f"({100 * (1 - a / b):.0f}% fewer).", ""]
    lines += [f"Fixed cells (baselines): {summary['fixed_evaluations']} image-evaluations.",
              f"Model loads per worker: {summary['model_loads']}.", ""]
    return "\n".join(lines)


def _ids_text(ids: list[int]) -> str:
    return ", ".join(map(str, ids)) if len(ids) <= 12 else f"{ids[0]}..{ids[-1]} ({len(ids)})"


def plot_sensitivity(ts: TuneSpec, cells: list[Cell], summary: dict, out_dir: Path) -> Optional[tuple[Path, Path]]:
    """Objective vs lambda, one curve per task, one panel per (solver, regularizer): complete
    trials joined by a line, ASHA-stopped trials as faint open markers (their partial means),
    diverged lambdas as crosses on the bottom axis, the baseline dashed, the best starred."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    from orchestrator.figures import save_figure

    vs = summary["variants"][summary["primary"]]["cells"]
    panels: dict[tuple[int, int], list[Cell]] = {}
    for cell in cells:
        if "lam" in cell.params:
            panels.setdefault((cell.solver_index, cell.reg_index), []).append(cell)
    if not panels:
        return None
    fig = Figure(figsize=(max(6.0, 4.2 * len(panels)), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    metric, mode = summary["objective"]["metric"], summary["objective"]["mode"]
    for ax, (key, pcells) in zip(axes, panels.items()):
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        for t_i, cell in enumerate(pcells):
            color = f"C{t_i}"
            trials = vs[cell.slug]["trials"]
            done = sorted((t["params"]["lam"], t["mean"]) for t in trials if t["status"] == "complete" and "lam" in t["params"])
            if done:
                ax.plot([d[0] for d in done], [d[1] for d in done], "-o", color=color, ms=4, label=cell.task.label)
            part = [(t["params"]["lam"], t["mean"]) for t in trials if t["status"] == "stopped" and t["mean"] is not None]
            if part:
                ax.plot([p[0] for p in part], [p[1] for p in part], "o", mfc="none", color=color, alpha=0.5, ms=4)
            div = [t["params"]["lam"] for t in trials if t["status"] in ("diverged", "failed") and "lam" in t["params"]]
            if div:
                ax.plot(div, [0.02] * len(div), "x", color=color, transform=trans, clip_on=False)
            best = vs[cell.slug]["best"]
            if best is not None:
                ax.plot([best["params"]["lam"]], [best["mean"]], "*", color=color, ms=13, mec="k", mew=0.6)
            base = vs[cell.slug].get("baseline")
            if base is not None:
                ax.axhline(base["mean"], ls="--", color=color, lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("lambda")
        ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
        ax.set_title(f"{pcells[0].solver.name} + {pcells[0].reg.kind}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="task", title_fontsize=7)
    fig.suptitle(f"lambda sensitivity: mean {metric} over {len(ts.tuning_ids)} tuning images\n"
                 "(-- baseline, * best, open o: stopped early (partial mean), x: diverged)", fontsize=8)
    fig.tight_layout()
    png, pdf = save_figure(fig, out_dir, "lambda-sensitivity")
    return png, pdf


__all__ = [
    "TuneSection", "TuneSpec", "ParamSpec", "Cell", "Dispatcher", "WorkerPool", "TuneResult", "load", "check",
    "make_cells", "run_search", "run_trial", "analyse", "best_config_document", "sweep_fragment",
    "plot_sensitivity", "stored_trial_rows", "OBJECTIVE_METRICS", "PENALTY",
]
