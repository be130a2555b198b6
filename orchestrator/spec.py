"""Sweep specs: the YAML a researcher writes, parsed into validated models before any compute.

Two layers of checks, both before a model is loaded or a Ray worker started:

1. **Shape** (pydantic): types, ranges (batch size >= 1, lambdas >= 0, fractional resources),
   allowed literal values, unknown keys.
2. **Meaning** (``check``): names against the registries (``solvers.SOLVERS``,
   ``operators.OPERATORS``, ``operators.GROUPS``, datasets), a latent solver with no latent prior,
   a solver needing ``operator.transpose`` on an operator without one, operator parameters (each
   task's operator is built once at the prior's image size: cheap, no model), an image size the
   prior cannot take, missing weight files.

Every problem is reported at once, each as ``field.path: message (allowed: ...)``, in one
``SpecError`` (a ``ValueError``, so the CLI prints it without a traceback).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator import backend as _backend

REG_KINDS = ("none", "equi", "equicon")
MPE_CHOICES = ("decoder", "encoder", "autoencoder")
REDUCTIONS = ("norm", "sqnorm", "mse")
SCHEDULES = ("constant", "cutoff", "noise_sqrt", "noise_sigma")
ROW_METRICS = ("psnr", "ssim", "lpips", "rel_l2")
SET_METRICS = ("fid", "kid")
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
class PriorRef(_Model):
    """A prior: ``embedded`` (the bundled world) or a local checkpoint (diffusers dir or .pt)."""

    path: str
    image_size: Optional[int] = Field(None, ge=1, description="required for a bare .pt checkpoint")


class PriorSpec(_Model):
    """The priors a sweep may use, by space; a pixel solver uses ``pixel``, a latent one ``latent``.

    ``prior: embedded`` is shorthand for ``{pixel: embedded, latent: embedded}``. ``mpe`` is the
    autoencoder that pixel-space solvers use as the EquiReg MPE function (default: the latent
    prior's autoencoder).
    """

    pixel: Optional[PriorRef] = None
    latent: Optional[PriorRef] = None
    mpe: Optional[PriorRef] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, str):
            return {"pixel": {"path": v}, "latent": {"path": v}}
        if isinstance(v, dict):
            return {k: ({"path": x} if isinstance(x, str) else x) for k, x in v.items()}
        return v

    @model_validator(mode="after")
    def _some(self):
        if self.pixel is None and self.latent is None:
            raise ValueError("give at least one of pixel, latent (e.g. prior: embedded)")
        return self


class DatasetSpec(_Model):
    name: str = "embedded"
    split: str = "report"  # checked against the dataset's splits (orchestrator.data)
    count: Optional[int] = Field(None, ge=1)
    ids: Optional[list[int]] = None

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
    num_gpus: float = Field(0.0, ge=0)
    num_cpus: float = Field(0.5, gt=0)
    threads: int = Field(1, ge=1, description="torch.set_num_threads inside each actor")


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
    store: Optional[str] = None
    save_images: bool = True
    metric_weights: dict[str, str] = Field(default_factory=dict, description="lpips / inception weight files")
    #: ``shared`` (default): configs that differ only in lambda / regularizer share the sampler noise, so
    #: their comparison is paired (common random numbers); ``per_config``: each config draws its own (the
    #: first landing's default; its rows stay readable and reports label them unpaired)
    solver_noise: Literal["per_config", "shared"] = "shared"

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

    def canonical(self) -> dict:
        """JSON-able dict of the spec (what the store records for the run)."""
        return json.loads(self.model_dump_json())


# ------------------------------------------------------------------------------ prior metadata
def _embedded_info(kind: str) -> dict:
    """Image size and weight files of the embedded world (``solvers/embedded/weights/<space>/``,
    the layout ``solvers.loaders`` reads), without loading any model."""
    import solvers.embedded as emb
    from solvers.embedded import data as emb_data

    space = "pixel" if kind == "pixel" else "latent"  # the MPE autoencoder is the latent world's
    root = Path(emb.__file__).parent / "weights" / space
    files = [root / "unet" / "config.json", root / "scheduler"]
    if space == "latent":
        files += [root / "vae" / "config.json", root / "latent_scale.json"]
    return {"image_size": int(emb_data.IMAGE_SIZE), "files": files}


def prior_info(ref: PriorRef, kind: str) -> dict:
    """``{"image_size": int|None, "files": [paths that must exist]}`` for a prior reference."""
    if ref.path == "embedded":
        return _embedded_info(kind)
    path = Path(ref.path).expanduser()
    if path.suffix in (".pt", ".pth", ".ckpt", ".safetensors"):
        return {"image_size": ref.image_size, "files": [path]}
    unet_cfg = path / "unet" / "config.json"
    files = [unet_cfg]
    size = ref.image_size
    if unet_cfg.exists():
        cfg = json.loads(unet_cfg.read_text())
        weights = [path / "unet" / n for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")]
        files.append(next((w for w in weights if w.exists()), weights[0]))
        size = size or cfg.get("sample_size")
        if kind == "latent":
            vae_cfg = path / "vae" / "config.json"
            files.append(vae_cfg)
            if vae_cfg.exists() and size:
                down = 2 ** (len(json.loads(vae_cfg.read_text()).get("block_out_channels", [0])) - 1)
                size = int(size) * down
    return {"image_size": size, "files": files}


# ------------------------------------------------------------------------------ meaning checks
def solver_space(entry, prior: PriorSpec) -> str | None:
    """The prior space a solver runs in under this spec ("any" solvers prefer pixel); None: none fits."""
    space = getattr(entry, "space", "pixel")
    if space == "any":
        return "pixel" if prior.pixel is not None else "latent"
    return space if getattr(prior, space) is not None else None


def _registry(be, name):
    try:
        return getattr(be, name)
    except ImportError as exc:
        raise SpecError([("<registry>", f"cannot check names: {exc}")]) from None


def _solver_check_options(entry):
    """The real solvers' option-value check for a registry entry, or None when the entry is a
    test backend's stand-in (its options are the fake's own)."""
    try:
        from solvers.api import SOLVERS, check_options
    except ImportError:
        return None
    return check_options if SOLVERS.get(getattr(entry, "name", None)) is entry else None


def check(spec: SweepSpec, backend: str | None = None) -> list[tuple[str, str]]:
    """Problems with ``spec`` that need the registries or the filesystem (empty list: valid)."""
    be = _backend.resolve(backend)
    errors: list[tuple[str, str]] = []
    solvers = _registry(be, "SOLVERS")
    operators = _registry(be, "OPERATORS")
    groups = _registry(be, "GROUPS")
    prior_fn = getattr(be, "prior_info", None) if backend else None
    prior_fn = prior_fn or prior_info
    from orchestrator import data as _data

    datasets = getattr(be, "DATASETS", None) if backend else None
    # dataset
    ds_info = None
    try:
        ds_info = datasets[spec.dataset.name] if datasets and spec.dataset.name in datasets else _data.info(spec.dataset.name)
    except ValueError as exc:
        errors.append(("dataset.name", str(exc)))
    if ds_info is not None:
        n = ds_info.sizes.get(spec.dataset.split)
        if n is None:
            errors.append(("dataset.split", f"{spec.dataset.split!r} not in {ds_info.name}; {_allowed(ds_info.splits)}"))
        elif spec.dataset.count is not None and spec.dataset.count > n:
            errors.append(("dataset.count", f"{spec.dataset.count} > the {n} images of {ds_info.name}/{spec.dataset.split}; allowed: 1..{n}"))
        elif spec.dataset.ids is not None and max(spec.dataset.ids) >= n:
            errors.append(("dataset.ids", f"{[i for i in spec.dataset.ids if i >= n]} out of range; allowed: 0..{n - 1}"))
    image_shape = tuple(ds_info.image_shape) if ds_info else None
    # priors: files and image size
    priors_ok = {}
    for kind in ("pixel", "latent", "mpe"):
        ref = getattr(spec.prior, kind)
        if ref is None:
            continue
        try:
            info = prior_fn(ref, kind)
        except Exception as exc:  # noqa: BLE001 - a broken checkpoint folder is a spec problem
            errors.append((f"prior.{kind}", f"cannot read {ref.path!r}: {exc}"))
            continue
        missing = [str(f) for f in info["files"] if not Path(f).exists()]
        if missing:
            errors.append((f"prior.{kind}", f"missing weights file(s): {', '.join(missing)}"))
        size = info.get("image_size")
        if size is None:
            errors.append((f"prior.{kind}.image_size", f"cannot tell the image size of {ref.path!r}; set image_size"))
        elif image_shape and int(size) != image_shape[-1]:
            errors.append((f"prior.{kind}", f"{ref.path!r} takes {size}x{size} images but dataset {spec.dataset.name!r} has {image_shape[-1]}x{image_shape[-2]}; allowed image size: {size}"))
        priors_ok[kind] = True
    # tasks: names, params, transposes (operator built once, seed 0, no model)
    has_transpose: dict[int, bool] = {}
    labels = {}
    for i, task in enumerate(spec.tasks):
        if task.label in labels:
            errors.append((f"tasks[{i}].name", f"task name {task.label!r} repeats tasks[{labels[task.label]}]; give each task a distinct name"))
        labels.setdefault(task.label, i)
        if task.operator not in operators:
            errors.append((f"tasks[{i}].operator", f"unknown operator {task.operator!r}; {_allowed(sorted(operators))}"))
            continue
        if image_shape is None:
            continue
        try:
            op = be.build_operator(task.operator, image_shape=image_shape, seeds=0, **task.params)
            has_transpose[i] = bool(getattr(op, "has_transpose", False))
        except (ValueError, TypeError) as exc:
            errors.append((f"tasks[{i}].params", str(exc)))
    # solvers: names, space, transpose
    labels = [t.label for t in spec.tasks]
    for j, sol in enumerate(spec.solvers):
        unknown_tasks = sorted(set(sol.task_step_sizes) - set(labels))
        if unknown_tasks:
            errors.append((f"solvers[{j}].task_step_sizes", f"unknown task(s) {unknown_tasks}; {_allowed(labels)}"))
        unknown_run = sorted(set(sol.tasks or []) - set(labels))
        if unknown_run:
            errors.append((f"solvers[{j}].tasks", f"unknown task(s) {unknown_run}; {_allowed(labels)}"))
        if sol.name not in solvers:
            errors.append((f"solvers[{j}].name", f"unknown solver {sol.name!r}; {_allowed(sorted(solvers))}"))
            continue
        entry = solvers[sol.name]
        supports = getattr(entry, "supports", None)
        if supports is not None:
            ops = {t.label: t.operator for t in spec.tasks}
            bad = [lab for lab in labels if sol.runs_task(lab) and not supports(ops[lab])]
            if bad:
                ok = [lab for lab in labels if supports(ops[lab])]
                errors.append((f"solvers[{j}].tasks", f"{sol.name!r} does not support task(s) {bad}; give "
                               f"solvers[{j}].tasks: the spec's tasks it supports are {ok or 'none'}"))
        space = solver_space(entry, spec.prior)
        if space is None:
            have = [k for k in ("pixel", "latent") if getattr(spec.prior, k) is not None]
            need = getattr(entry, "space", "pixel")
            errors.append((f"solvers[{j}].name", f"{sol.name!r} is a {need}-space solver but the spec gives only a {'/'.join(have)} prior; set prior.{need} or use a solver for {'/'.join(have)} priors"))
        defaults = getattr(entry, "defaults", None)
        if defaults is not None:
            unknown = sorted(set(sol.options) - set(defaults) - {"restarts", "select"})
            if unknown:
                errors.append((f"solvers[{j}].options", f"unknown option(s) {unknown} for {sol.name!r}; {_allowed(sorted(defaults) + ['restarts', 'select'])}"))
            else:
                check_options = _solver_check_options(entry)
                if check_options is not None:
                    try:
                        check_options(sol.name, dict(sol.options))
                    except ValueError as exc:
                        errors.append((f"solvers[{j}].options", str(exc)))
        if getattr(entry, "needs_transpose", False):
            for i, ht in has_transpose.items():
                if not ht and sol.runs_task(spec.tasks[i].label):
                    errors.append((f"solvers[{j}].name", f"{sol.name!r} needs operator.transpose but tasks[{i}].operator {spec.tasks[i].operator!r} has none; allowed solvers for this task: {sorted(n for n, e in solvers.items() if not getattr(e, 'needs_transpose', False))}"))
    # regularizers: groups, mpe per space
    spec_solvers = [s.name for s in spec.solvers]
    baselines = [s.name for s in spec.solvers if getattr(solvers.get(s.name), "family", "diffusion") != "diffusion"]
    if baselines and all(r.kind != "none" for r in spec.regularizers):
        errors.append(("regularizers", f"classical solvers {baselines} run without a regularizer, but the spec lists "
                       "none of kind 'none'; add {kind: none}"))
    for k, reg in enumerate(spec.regularizers):
        unknown = sorted(set(reg.solver_lambdas) - set(spec_solvers))
        if unknown:
            errors.append((f"regularizers[{k}].solver_lambdas", f"unknown solver(s) {unknown}; {_allowed(spec_solvers)}"))
        if reg.kind == "none":
            continue
        if reg.group not in groups:
            errors.append((f"regularizers[{k}].group", f"unknown group {reg.group!r}; {_allowed(sorted(groups))}"))
        pixel_solvers = [s.name for s in spec.solvers if s.name in solvers and solver_space(solvers[s.name], spec.prior) == "pixel"]
        latent_solvers = [s.name for s in spec.solvers if s.name in solvers and solver_space(solvers[s.name], spec.prior) == "latent"]
        if reg.mpe is None:
            pass  # resolved per solver space by defaults.default_mpe, valid by construction
        elif reg.kind == "equicon" and reg.mpe != "autoencoder":
            errors.append((f"regularizers[{k}].mpe", f"{reg.mpe!r}: equicon needs f mapping back into x's own space; allowed for equicon: 'autoencoder'"))
        elif latent_solvers and reg.mpe == "encoder":
            errors.append((f"regularizers[{k}].mpe", f"'encoder' takes images but latent solvers {latent_solvers} use it; allowed for latent solvers: 'autoencoder', 'decoder'"))
        if pixel_solvers:
            if reg.mpe == "decoder" and reg.kind != "equicon":
                errors.append((f"regularizers[{k}].mpe", f"'decoder' takes latents but pixel solvers {pixel_solvers} use it; allowed for pixel solvers: 'autoencoder', 'encoder'"))
            elif spec.prior.mpe is None and spec.prior.latent is None:
                errors.append((f"regularizers[{k}].mpe", f"pixel solvers {pixel_solvers} need an MPE autoencoder: set prior.mpe or prior.latent"))
    if "lpips" in spec.metrics and spec.metric_weights.get("lpips") and not Path(spec.metric_weights["lpips"]).exists():
        errors.append(("metric_weights.lpips", f"missing weights file: {spec.metric_weights['lpips']}"))
    if any(m in spec.metrics for m in SET_METRICS) and spec.metric_weights.get("inception") and not Path(spec.metric_weights["inception"]).exists():
        errors.append(("metric_weights.inception", f"missing weights file: {spec.metric_weights['inception']}"))
    unknown_w = set(spec.metric_weights) - {"lpips", "inception"}
    if unknown_w:
        errors.append(("metric_weights", f"unknown keys {sorted(unknown_w)}; allowed: 'inception', 'lpips'"))
    return errors


def _format_pydantic(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = f"got {err.get('input')!r}; {msg.lower()}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((loc or "<spec>", msg))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if key in seen:
                raise SpecError([("<yaml>", f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                  f"{seen[key] + 1}); YAML would keep only the last one: remove one")])
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str | None = None):
    """YAML text as Python data; ``SpecError`` for a syntax error or a duplicate key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecError as exc:
        raise SpecError(exc.errors, source) from None
    except yaml.YAMLError as exc:
        raise SpecError([("<yaml>", str(exc).replace("\n", " "))], source) from None


def _looks_like_path(data: str) -> bool:
    return "\n" not in data and (data.endswith(SPEC_SUFFIXES) or Path(data).exists() or ":" not in data)


def read_spec_file(path: Path) -> str:
    """The text of a spec file, or an error naming what is wrong with the path."""
    if path.is_dir():
        raise SpecError([("<path>", f"{path} is a directory; give a spec file ({', '.join(SPEC_SUFFIXES)})")], str(path))
    if not path.exists():
        raise FileNotFoundError(f"spec file not found: {path}")
    if path.suffix not in SPEC_SUFFIXES:
        raise SpecError([("<path>", f"{path.name} does not end in {' or '.join(SPEC_SUFFIXES)}; allowed: a YAML spec file "
                         f"(rename it to {path.stem if path.suffix == '.txt' else path.name}.yaml?)")], str(path))
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise SpecError([("<path>", f"{path} is not a text file")], str(path)) from None


def parse(data: Union[dict, str, Path], backend: str | None = None, source: str | None = None) -> SweepSpec:
    """A validated ``SweepSpec`` from a dict, a YAML file path or YAML text; ``SpecError`` otherwise."""
    if isinstance(data, Path) or (isinstance(data, str) and _looks_like_path(data)):
        path = Path(data)
        source = source or str(path)
        data = read_spec_file(path)
    if isinstance(data, str):
        data = load_yaml(data, source)
    if not isinstance(data, dict):
        raise SpecError([("<spec>", f"expected a mapping at the top level, got {type(data).__name__}")], source)
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_pydantic(exc), source) from None
    errors = check(spec, backend)
    if errors:
        raise SpecError(errors, source)
    return spec


def check_sweep(spec: SweepSpec) -> list[tuple[str, str]]:
    """Problems of a spec meant for ``run`` / ``plan`` (not for ``tune``, whose lambdas are searched)."""
    errors = []
    for k, reg in enumerate(spec.regularizers):
        given = "lambdas" in reg.model_fields_set
        if reg.kind == "none" and given and any(x != 0 for x in reg.lambdas):
            errors.append((f"regularizers[{k}].lambdas", f"{reg.lambdas} with kind none would be ignored (the baseline "
                           "runs lambda 0 only); move them to a kind: equi or equicon entry"))
        elif reg.kind != "none" and not given:
            errors.append((f"regularizers[{k}].lambdas", f"kind {reg.kind} needs lambdas (e.g. lambdas: [0.1, 1.0]); "
                           "without them it would run lambda 0, the baseline, under the EquiReg label"))
    return errors


def parse_sweep(data: Union[dict, str, Path], backend: str | None = None, source: str | None = None) -> SweepSpec:
    """``parse`` plus ``check_sweep``: the spec of a run."""
    spec = parse(data, backend, source)
    errors = check_sweep(spec)
    if errors:
        raise SpecError(errors, source or (str(data) if isinstance(data, (str, Path)) else None))
    return spec


load = parse
