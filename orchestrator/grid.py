"""Grid expansion: a validated spec -> the list of Configs it stands for, each with a stable id.

A Config is everything that changes a result except the image: prior, dataset, solver (+options,
steps, step size), task (operator, params, noise level), regularizer (+lambda) and seed. Its
``config_id`` hashes its canonical JSON, so the same config gets the same id in every run, on every
machine, whatever the spec's order or batch size: that id is what resume keys on.

The baseline is not multiplied by the lambda grid: a ``none`` regularizer contributes lambda 0
only, with its irrelevant fields (mpe, group, schedule, ...) blanked, so two specs (or two
``none`` entries) describing the same baseline produce one config.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass, field, fields
from typing import Any

from solvers.rng import row_seed
from orchestrator.spec import SweepSpec, solver_space
from orchestrator import problem as _problem
from orchestrator.defaults import default_mpe, default_step_size


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_hash(obj: Any, n: int = 16) -> str:
    """Hex digest (``n`` chars) of ``obj``'s canonical JSON."""
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=16).hexdigest()[:n]


@dataclass(frozen=True)
class Config:
    """One point of the grid (see the module docstring); ``config_id`` is derived, not chosen."""

    prior_space: str
    prior: str  # the prior for that space: ``PriorRef.key`` ("embedded", "mixture:mog8", "kind:{fields}")
    mpe_prior: str | None  # the ``PriorRef.key`` of the autoencoder a pixel-space EquiReg uses (None when unused)
    dataset: str
    split: str
    solver: str
    solver_options: dict = field(hash=False)
    num_steps: int = 0
    step_size: float = 1.0
    task: str = ""
    operator: str = ""
    op_params: dict = field(default_factory=dict, hash=False)
    sigma_y: float = 0.0
    reg_kind: str = "none"
    mpe: str | None = None
    group: str | None = None
    schedule: str | None = None
    reduction: str | None = None
    freq: int | None = None
    cutoff_frac: float | None = None
    lam: float = 0.0
    seed: int = 0
    solver_noise: str = "per_config"  # or "shared": see ``solver_seed``
    precision: str = "fp32"  # compute.precision (orchestrator.spec_compute): the networks' autocast dtype

    def canonical(self) -> dict:
        """The fields that identify the config; ``solver_noise`` only when not the default, so the
        ids of every config stored before that field existed are unchanged."""
        d = {f: getattr(self, f) for f in _FIELD_NAMES}  # shallow: asdict's deep copy cost ~half of expand
        d["solver_options"], d["op_params"] = dict(self.solver_options), dict(self.op_params)
        if d["solver_noise"] == "per_config":
            del d["solver_noise"]
        if d["precision"] == "fp32":  # likewise: fp32 configs keep the ids they had before precision existed
            del d["precision"]
        return d

    @functools.cached_property
    def config_id(self) -> str:  # cached in the instance (frozen dataclasses allow it): hashed once
        return stable_hash(self.canonical())

    def to_json(self) -> str:
        return canonical_json({"config_id": self.config_id, **self.canonical()})

    def store_columns(self) -> dict:
        """The store's descriptive columns of this config (RESULTS_SCHEMA names)."""
        return {
            "config_id": self.config_id, "prior": f"{self.prior_space}:{self.prior}",
            "dataset": f"{self.dataset}/{self.split}", "solver": self.solver, "regularizer": self.reg_kind,
            "mpe": self.mpe, "group": self.group, "lam": self.lam, "lam_schedule": self.schedule,
            "step_size": self.step_size, "task": self.task, "sigma_y": self.sigma_y,
            "num_steps": self.num_steps, "seed": self.seed, "config_json": self.to_json(),
        }


_FIELD_NAMES = tuple(f.name for f in fields(Config))


def sample_ids(spec: SweepSpec) -> list[int]:
    """The dataset sample ids the spec covers (ids, else the first ``count``, else the whole split); with
    ``samples_per_measurement`` > 1 those name measurements, each replicated (``data.sample_ids``)."""
    if spec.dataset.samples_per_measurement > 1:
        from orchestrator import data

        return data.sample_ids(spec.dataset.name, spec.dataset.split, spec.dataset.ids, spec.dataset.count,
                               spec.dataset.samples_per_measurement)
    if spec.dataset.ids is not None:
        return list(spec.dataset.ids)
    if spec.dataset.count is not None:
        return list(range(spec.dataset.count))
    from orchestrator import data

    return list(range(data.info(spec.dataset.name).sizes[spec.dataset.split]))


@dataclass(frozen=True)
class Block:
    """The configs of one (solver, task, regularizer) entry triple: ``fields`` (every Config field
    but the five lists) times the product of the lists. ``expand`` and ``grid_count`` both walk
    these, so counting and expanding follow the same rules by construction."""

    fields: dict
    sigma_y: tuple
    num_steps: tuple
    step_sizes: tuple
    lambdas: tuple
    seeds: tuple

    @property
    def size(self) -> int:
        return len(self.sigma_y) * len(self.num_steps) * len(self.step_sizes) * len(self.lambdas) * len(self.seeds)


def blocks(spec: SweepSpec) -> list[Block]:
    """The spec's blocks in spec order (solver, task, regularizer); see ``Block``."""
    from solvers.api import SOLVERS as solvers
    out = []
    for sol, task, reg in itertools.product(spec.solvers, spec.tasks, spec.regularizers):
        if not sol.runs_task(task.label):
            continue
        if reg.kind != "none" and getattr(solvers[sol.name], "family", "diffusion") != "diffusion":
            continue  # EquiReg regularizes diffusion solvers; a classical baseline runs once, unregularized
        space = solver_space(solvers[sol.name], spec.prior)
        prior_ref = getattr(spec.prior, space)
        active = reg.kind != "none"
        mpe_prior = None
        if active and space == "pixel":
            mpe_prior = (spec.prior.mpe or spec.prior.latent).key
        reg_fields = dict(
            reg_kind=reg.kind,
            mpe=(reg.mpe or default_mpe(space, reg.kind)) if active else None, group=reg.group if active else None,
            schedule=reg.schedule if active else None, reduction=reg.reduction if active else None,
            freq=reg.freq if active else None, cutoff_frac=reg.cutoff_frac if active else None,
        )
        lambdas = reg.lambdas_for(sol.name) if active else [0.0]
        # the dataset's size-appropriate operator defaults, overridden by the task's own params;
        # resolved here so the stored config (and its id) says exactly what ran
        op_params = _problem.task_params(spec.dataset.name, task.operator, task.params)
        sizes = sol.step_sizes_for(task.label) or [
            default_step_size(sol.name, solvers[sol.name], task.label, prior_ref.kind == "embedded")]
        fields_ = dict(prior_space=space, prior=prior_ref.key, mpe_prior=mpe_prior, dataset=spec.dataset.name,
                       split=spec.dataset.split, solver=sol.name, solver_options=dict(sol.options), task=task.label,
                       operator=task.operator, op_params=op_params, solver_noise=spec.solver_noise,
                       precision=spec.compute.precision, **reg_fields)
        out.append(Block(fields_, tuple(float(v) for v in task.sigma_y), tuple(int(v) for v in sol.num_steps),
                         tuple(float(v) for v in sizes), tuple(float(v) for v in lambdas),
                         tuple(int(v) for v in spec.seeds)))
    return out


def expand(spec: SweepSpec) -> list[Config]:
    """All configs of ``spec``, deduplicated, in spec order (solver, task, sigma, steps, reg, ...)."""
    out: dict[str, Config] = {}
    for b in blocks(spec):
        f = b.fields
        for sigma, steps, size, lam, seed in itertools.product(b.sigma_y, b.num_steps, b.step_sizes, b.lambdas, b.seeds):
            cfg = Config(**{**f, "solver_options": dict(f["solver_options"])}, num_steps=steps, step_size=size,
                         sigma_y=sigma, lam=lam, seed=seed)
            out.setdefault(cfg.config_id, cfg)
    return list(out.values())


def operator_seed(cfg: Config, sample_id: int) -> int:
    """Seed of a row's operator instance (mask, kernel): shared by every config of the same task,
    sample and seed, so solvers and lambdas are compared on identical measurements."""
    return _problem.operator_seed(cfg.operator, cfg.op_params, sample_id, cfg.seed, *_measured(cfg))


def noise_seed(cfg: Config, sample_id: int) -> int:
    """Seed of a row's measurement noise: shared like ``operator_seed`` (paired comparisons)."""
    return _problem.noise_seed(cfg.operator, cfg.op_params, cfg.sigma_y, sample_id, cfg.seed, *_measured(cfg))


def _measured(cfg: Config) -> tuple:
    """``(dataset, split)`` when the dataset maps sample ids to measurements (replicas of one measurement
    share operator and noise); ``()`` otherwise: the id is the measurement (a test backend's datasets)."""
    from orchestrator import data

    return (cfg.dataset, cfg.split) if cfg.dataset in data.DATASETS else ()


#: the fields a ``shared`` solver stream ignores: lambda and everything about the regularizer
_REG_FIELDS = ("lam", "reg_kind", "mpe", "mpe_prior", "group", "schedule", "reduction", "freq", "cutoff_frac")


def solver_seed(cfg: Config, sample_id: int) -> int:
    """The row seed of the solver's own noise.

    ``per_config`` (the first landing's default): ``row_seed(config_id, sample_id, seed)``: every config,
    every lambda included, draws its own sampler noise. ``shared`` (common random numbers): configs
    that differ only in lambda or regularizer share the stream, so EquiReg at lambda 0 reproduces the
    baseline row for row and a lambda comparison is paired; per-config noise made 8-image lambda
    searches pick noise (measured, issue 5 note).
    """
    if cfg.solver_noise == "shared":
        # precision left out too: a bf16 config and its fp32 twin share the stream (a paired comparison)
        key = {k: v for k, v in cfg.canonical().items() if k not in _REG_FIELDS and k != "precision"}
        return row_seed("shared-solver-noise", stable_hash(key), sample_id, cfg.seed)
    return row_seed(cfg.config_id, sample_id, cfg.seed)
