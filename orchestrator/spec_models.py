"""Sweep-spec models (pydantic): the shape layer of ``orchestrator.spec`` (types, ranges, literal
values, unknown keys); the meaning layer is ``orchestrator.spec_check``."""
from __future__ import annotations

import json
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from orchestrator.spec_priors import PriorRef, PriorSpec  # noqa: F401  (re-exported)
from orchestrator.spec_compute import ComputeSpec  # noqa: F401  (re-exported)

from orchestrator.metrics import registry as _metric_registry

REG_KINDS = ("none", "equi", "equicon")
MPE_CHOICES = ("decoder", "encoder", "autoencoder")
REDUCTIONS = ("norm", "sqnorm", "mse")
SCHEDULES = ("constant", "cutoff", "noise_sqrt", "noise_sigma")
#: What a spec's ``metrics:`` may name, from the metric registry (``orchestrator.metrics``): per-image
#: metrics the worker computes (not the solver's own ``y_residual``) and per-config set metrics.
ROW_METRICS = _metric_registry.names("image", spec=True)
SET_METRICS = _metric_registry.names("set", spec=True)
METRICS = ROW_METRICS + SET_METRICS
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: Longest run name (it names store files; ``orchestrator.store_files.MAX_ID_LEN``).
MAX_NAME_LEN = 100
SPEC_SUFFIXES = (".yaml", ".yml")


class SpecError(ValueError):
    """An invalid spec; ``errors`` lists ``(field, message)`` pairs."""

    def __init__(self, errors: list[tuple[str, str]], source: str | None = None):
        self.errors = errors
        head = f"invalid spec{f' {source}' if source else ''} ({len(errors)} problem{'s' * (len(errors) != 1)}):"
        super().__init__("\n".join([head] + [f"  {f}: {m}" for f, m in errors]))


class _Model(BaseModel):
    # allow_inf_nan=False: a NaN/inf lambda, noise level, step size or resource can only diverge or
    # hang after models load, so it is refused here, naming the field
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def check_sample_ids(ids) -> None:
    """A list of sample ids must be non-empty, unique and non-negative (sweep and tune subsets)."""
    if not ids:
        raise ValueError("ids is empty")
    if len(set(ids)) != len(ids):
        raise ValueError("ids has duplicates")
    if min(ids) < 0:
        raise ValueError("ids must be >= 0")


def _allowed(values) -> str:
    return "allowed: " + ", ".join(repr(v) for v in values)


# --------------------------------------------------------------------------------- the models
class DatasetSpec(_Model):
    name: str = "embedded"
    split: str = "report"  # checked against the dataset's splits (orchestrator.data)
    count: Optional[int] = Field(None, ge=1)
    ids: Optional[list[int]] = None
    #: samples drawn per measurement (one y, many solver streams): > 1 only for datasets with
    #: replicas (the mixture worlds); count / ids then name the measurements (``data.sample_ids``)
    samples_per_measurement: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_of(self):
        if self.count is not None and self.ids is not None:
            raise ValueError("give count or ids, not both")
        if self.ids is not None:
            check_sample_ids(self.ids)
        return self


class TaskSpec(_Model):
    operator: str
    params: dict[str, Any] = Field(default_factory=dict)
    sigma_y: list[float] = Field(default_factory=lambda: [0.05], min_length=1)
    name: Optional[str] = None

    @field_validator("sigma_y", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, (int, float)) else v

    @field_validator("sigma_y")
    @classmethod
    def _nonneg(cls, v):
        if any(s < 0 for s in v):
            raise ValueError(f"noise levels must be >= 0, got {v}")
        return v

    @property
    def label(self) -> str:
        return self.name or self.operator


def _listify_values(v):
    """``{key: number}`` -> ``{key: [number]}`` (a mapping of lists may be written with scalars)."""
    return {k: ([x] if isinstance(x, (int, float)) else x) for k, x in v.items()} if isinstance(v, dict) else v


class SolverSpec(_Model):
    name: str
    num_steps: list[int] = Field(min_length=1)
    #: None: ``orchestrator.defaults.default_step_size`` per task (the tuned embedded value, else the
    #: solver's own default), the same value ``equibench solve`` uses
    step_sizes: Optional[list[float]] = Field(None, min_length=1)
    #: per-task step sizes (task label -> values) replacing ``step_sizes`` for that task: the papers
    #: tune the guidance step per task (EquiReg Table 8), so one sweep can carry every task's value
    task_step_sizes: dict[str, list[float]] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    #: task labels this solver runs (None: every task of the spec); a classical baseline supports only
    #: some operators (``SolverInfo.tasks``) and must name its tasks when the spec has others
    tasks: Optional[list[str]] = Field(None, min_length=1)

    def runs_task(self, task_label: str) -> bool:
        return self.tasks is None or task_label in self.tasks

    @field_validator("num_steps", "step_sizes", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, (int, float)) else v

    @field_validator("task_step_sizes", mode="before")
    @classmethod
    def _listify_tasks(cls, v):
        return _listify_values(v)

    @field_validator("task_step_sizes")
    @classmethod
    def _task_sizes(cls, v):
        for task, sizes in v.items():
            if not sizes:
                raise ValueError(f"task_step_sizes[{task!r}] is empty")
            if any(x <= 0 for x in sizes):
                raise ValueError(f"step sizes must be > 0, got {sizes} for task {task!r}")
        return v

    def step_sizes_for(self, task_label: str) -> list[float]:
        """The step sizes given for task ``task_label`` ([] when none: the shared default applies)."""
        return self.task_step_sizes.get(task_label, self.step_sizes or [])

    @field_validator("num_steps")
    @classmethod
    def _steps(cls, v):
        if any(n < 1 for n in v):
            raise ValueError(f"step counts must be >= 1, got {v}")
        return v

    @field_validator("step_sizes")
    @classmethod
    def _sizes(cls, v):
        if v is not None and any(s <= 0 for s in v):
            raise ValueError(f"step sizes must be > 0, got {v}")
        return v


class RegSpec(_Model):
    kind: Literal["none", "equi", "equicon"] = "none"
    #: None: ``orchestrator.defaults.default_mpe`` per solver space (encoder for pixel solvers, decoder for
    #: latent ones, autoencoder for equicon), the same rule ``equibench solve`` uses
    mpe: Optional[Literal["decoder", "encoder", "autoencoder"]] = None
    group: str = "hflip"
    lambdas: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    #: per-solver lambdas (solver name -> values) replacing ``lambdas`` for that solver: the penalty's
    #: influence differs by orders of magnitude between solvers (calibrated ranges, README)
    solver_lambdas: dict[str, list[float]] = Field(default_factory=dict)
    schedule: Optional[Literal["constant", "cutoff", "noise_sqrt", "noise_sigma"]] = Field(
        None, description="None: the solver's paper default")
    reduction: Literal["norm", "sqnorm", "mse"] = "norm"
    freq: int = Field(1, ge=1)
    cutoff_frac: float = Field(0.1, ge=0, le=1)

    @field_validator("lambdas", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, (int, float)) else v

    @field_validator("lambdas")
    @classmethod
    def _nonneg(cls, v):
        bad = [x for x in v if x < 0]
        if bad:
            raise ValueError(f"lambdas must be >= 0, got {bad}")
        return v

    @field_validator("solver_lambdas", mode="before")
    @classmethod
    def _listify_solvers(cls, v):
        return _listify_values(v)

    @field_validator("solver_lambdas")
    @classmethod
    def _solver_lambdas(cls, v):
        for name, lams in v.items():
            if not lams or any(x < 0 for x in lams):
                raise ValueError(f"solver_lambdas[{name!r}] must be a non-empty list of values >= 0, got {lams}")
        return v

    def lambdas_for(self, solver: str) -> list[float]:
        """The lambdas this regularizer runs with ``solver``."""
        return self.solver_lambdas.get(solver, self.lambdas)


class Resources(_Model):
    num_actors: Optional[int] = Field(None, ge=1, description="default: as many as the cluster's CPUs/GPUs allow")
    num_gpus: float = Field(0.0, ge=0, description="GPUs per actor: a fraction in (0, 1] shares a GPU (0.25: 4 actors "
                                                  "per GPU), 1 = one process per GPU, above 1 a whole number")
    num_cpus: float = Field(0.5, gt=0)
    threads: int = Field(1, ge=1, description="torch.set_num_threads inside each actor")

    @field_validator("num_gpus")
    @classmethod
    def _whole_gpus(cls, v):
        from orchestrator.placement import check_num_gpus

        return check_num_gpus(v)


class SweepSpec(_Model):
    name: str
    prior: PriorSpec
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    tasks: list[TaskSpec] = Field(min_length=1)
    solvers: list[SolverSpec] = Field(min_length=1)
    regularizers: list[RegSpec] = Field(default_factory=lambda: [RegSpec()], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(ROW_METRICS))
    batch_size: int = Field(16, ge=1)
    resources: Resources = Field(default_factory=Resources)
    compute: ComputeSpec = Field(default_factory=ComputeSpec, description="precision, torch.compile, channels_last and "
                                                                          "rows per solver call (orchestrator.spec_compute)")
    store: Optional[str] = None
    save_images: Literal["none", "first_k", "all"] = Field(
        "all", description="reconstructions kept for figures: every row, the rows of the first save_images_k sample ids, "
                           "or none (true / false of older specs: all / none); FID/KID keep every image")
    save_images_k: int = Field(8, ge=1, description="sample ids that save_images: first_k keeps (the smallest)")
    image_format: Literal["float16", "png8"] = Field("float16", description="stored reconstructions: float16 arrays or 8-bit PNG")
    compact: bool = Field(True, description="merge the run's unit files into one sorted Parquet file when the run finishes "
                                            "(from 64 unit files; `equibench run --no-compact` turns it off)")

    @field_validator("save_images", mode="before")
    @classmethod
    def _save_images_bool(cls, v):
        return ("all" if v else "none") if isinstance(v, bool) else v

    metric_weights: dict[str, str] = Field(default_factory=dict, description="lpips / inception weight files")
    #: ``shared`` (default): configs that differ only in lambda / regularizer share the sampler noise, so
    #: their comparison is paired (common random numbers); ``per_config``: each config draws its own (the
    #: first landing's default; its rows stay readable and reports label them unpaired)
    solver_noise: Literal["per_config", "shared"] = "shared"
    #: importable modules that register solvers, operators, priors or datasets into the registries
    #: (``orchestrator.plugins``; with ``$EQUIBENCH_PLUGINS``); imported before validation, by every
    #: actor too; not part of any config id or grid hash
    plugins: list[str] = Field(default_factory=list, description="modules imported before validation and by every actor, "
                               "registering solvers, operators, priors or datasets; not part of config ids")
    #: the command-line overrides (``orchestrator.overrides``) this spec was parsed with: not a field
    #: (a spec file cannot set it), recorded with the run by ``canonical``
    _overrides: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("name", mode="before")
    @classmethod
    def _name_is_text(cls, v):
        if isinstance(v, bool):
            raise ValueError(f"YAML read the name as the boolean {str(v).lower()} (yes/no/on/off/true/false are "
                             f"booleans in YAML); quote it, e.g. name: \"{'yes' if v else 'no'}\"")
        if isinstance(v, (int, float)):
            raise ValueError(f"YAML read the name as the number {v!r}; quote it, e.g. name: \"{v}\"")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if len(v) > MAX_NAME_LEN:
            raise ValueError(f"the name is {len(v)} characters long; allowed: at most {MAX_NAME_LEN} "
                             "(it names files in the store)")
        if not _NAME_RE.match(v):
            raise ValueError(f"{v!r} is not a valid run name: letters, digits, '_', '-', '.'")
        return v

    @field_validator("seeds", mode="before")
    @classmethod
    def _listify(cls, v):
        return [v] if isinstance(v, int) else v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v):
        if not v:
            raise ValueError(f"metrics is empty: a run would store no measurement; {_allowed(METRICS)}")
        bad = [m for m in v if m not in METRICS]
        if bad:
            raise ValueError(f"unknown metrics {bad}; {_allowed(METRICS)}")
        return v

    @property
    def unit_rows(self) -> int:
        """Rows per work unit: ``batch_size``, or more with ``compute.max_batch`` (``orchestrator.spec_compute``)."""
        return self.compute.unit_rows(self.batch_size)

    @property
    def overrides(self) -> tuple[str, ...]:
        """The command-line overrides applied to this spec's YAML (empty: none)."""
        return self._overrides

    def with_overrides(self, overrides) -> "SweepSpec":
        """This spec, noting the overrides its data was parsed with (returns self)."""
        self._overrides = tuple(overrides)
        return self

    def canonical(self) -> dict:
        """JSON-able dict of the spec (what the store records for the run); with overrides, their
        text under ``overrides`` (the values above already carry them)."""
        out = json.loads(self.model_dump_json())
        if self.compute.is_default:  # left out while default: run records and tune ids stay as they were
            del out["compute"]
        if self._overrides:
            out["overrides"] = list(self._overrides)
        return out


