"""The meaning layer of sweep-spec validation (``check``): names against the registries (plugins
included: ``orchestrator.plugins``), prior kinds, files and image sizes (each kind's
``PriorLoader.info``, no model loaded), solver spaces, transposes, per-task capabilities,
regularizer settings. Shape checks: ``spec_models``."""
from __future__ import annotations

from pathlib import Path

from orchestrator.metrics import registry as _metric_registry
from orchestrator.spec_models import PriorSpec, SweepSpec, _allowed


# ------------------------------------------------------------------------------ priors
def _prior_errors(prior: PriorSpec, image_shape, dataset: str) -> list[tuple[str, str]]:
    """Each slot's kind against its space, its files and its image size against the dataset's."""
    from solvers.loaders import PRIOR_LOADERS

    errors = []
    for slot in ("pixel", "latent", "mpe"):
        ref = getattr(prior, slot)
        if ref is None:
            continue
        space = prior.slot_space(slot)
        if space not in ref.loader.spaces:
            fits = sorted(k for k, e in PRIOR_LOADERS.items() if space in e.spaces)
            errors.append((f"prior.{slot}", f"kind {ref.kind!r} gives a {'/'.join(ref.loader.spaces)} prior, but "
                           f"prior.{slot} needs a {space} one; allowed kinds: {', '.join(map(repr, fits))}"))
            continue
        try:
            info = ref.info(space)
        except Exception as exc:  # noqa: BLE001 - a broken checkpoint folder is a spec problem
            errors.append((f"prior.{slot}", f"cannot read {ref.key!r}: {exc}"))
            continue
        missing = [str(f) for f in info.get("files", ()) if not Path(f).exists()]
        if missing:
            errors.append((f"prior.{slot}", f"missing weights file(s): {', '.join(missing)}"))
        size, channels = info.get("image_size"), info.get("channels")
        if size is None:
            errors.append((f"prior.{slot}", f"cannot tell the image size of {ref.key!r} from its config files"))
        elif image_shape and int(size) != image_shape[-1]:
            errors.append((f"prior.{slot}", f"{ref.key!r} takes {size}x{size} images but dataset {dataset!r} has "
                           f"{image_shape[-1]}x{image_shape[-2]}; allowed image size: {size}"))
        elif image_shape and channels is not None and int(channels) != image_shape[0]:
            errors.append((f"prior.{slot}", f"{ref.key!r} takes {channels}-channel images but dataset {dataset!r} "
                           f"has {image_shape[0]}; allowed channels: {channels}"))
    return errors


# ------------------------------------------------------------------------------ meaning checks
def solver_space(entry, prior: PriorSpec) -> str | None:
    """The prior space a solver runs in under this spec ("any" solvers prefer pixel); None: none fits."""
    space = getattr(entry, "space", "pixel")
    if space == "any":
        return "pixel" if prior.pixel is not None else "latent"
    return space if getattr(prior, space) is not None else None


def check(spec: SweepSpec) -> list[tuple[str, str]]:
    """Problems with ``spec`` that need the registries or the filesystem (empty list: valid)."""
    errors, ds_info = _dataset_errors(spec)
    image_shape = tuple(ds_info.image_shape) if ds_info else None
    errors += _prior_errors(spec.prior, image_shape, spec.dataset.name)
    task_errors, has_transpose = _task_errors(spec, image_shape)
    errors += task_errors
    for j, sol in enumerate(spec.solvers):
        errors += _solver_errors(spec, j, sol, has_transpose)
    errors += _regularizer_errors(spec)
    errors += _weights_errors(spec)
    return errors


def _dataset_errors(spec: SweepSpec):
    """The dataset's name, split, count/ids and posterior-set fields; returns (errors, info or None)."""
    from orchestrator import data as _data

    errors: list[tuple[str, str]] = []
    try:
        ds_info = _data.info(spec.dataset.name)
    except ValueError as exc:
        return [("dataset.name", str(exc))], None
    n = ds_info.sizes.get(spec.dataset.split)
    if n is None:
        errors.append(("dataset.split", f"{spec.dataset.split!r} not in {ds_info.name}; {_allowed(ds_info.splits)}"))
    elif spec.dataset.count is not None and spec.dataset.count > n:
        errors.append(("dataset.count", f"{spec.dataset.count} > the {n} images of {ds_info.name}/{spec.dataset.split}; allowed: 1..{n}"))
    elif spec.dataset.ids is not None and max(spec.dataset.ids) >= n:
        errors.append(("dataset.ids", f"{[i for i in spec.dataset.ids if i >= n]} out of range; allowed: 0..{n - 1}"))
    from orchestrator.posterior_sets import spec_problems

    return errors + spec_problems(spec, ds_info), ds_info


def _task_errors(spec: SweepSpec, image_shape):
    """Task names, operators and params (each operator built once, seed 0, no model); returns
    (errors, {task index: whether its operator has a transpose})."""
    from operators import OPERATORS as operators, build_operator

    errors: list[tuple[str, str]] = []
    has_transpose: dict[int, bool] = {}
    labels: dict[str, int] = {}
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
            op = build_operator(task.operator, image_shape=image_shape, seeds=0, **task.params)
            has_transpose[i] = bool(getattr(op, "has_transpose", False))
        except (ValueError, TypeError) as exc:
            errors.append((f"tasks[{i}].params", str(exc)))
    return errors, has_transpose


def _solver_errors(spec: SweepSpec, j: int, sol, has_transpose: dict[int, bool]) -> list[tuple[str, str]]:
    """``solvers[j]``: its name, tasks, prior space, options and transpose needs."""
    from solvers.api import SOLVERS as solvers, check_options

    errors: list[tuple[str, str]] = []
    labels = [t.label for t in spec.tasks]
    unknown_tasks = sorted(set(sol.task_step_sizes) - set(labels))
    if unknown_tasks:
        errors.append((f"solvers[{j}].task_step_sizes", f"unknown task(s) {unknown_tasks}; {_allowed(labels)}"))
    unknown_run = sorted(set(sol.tasks or []) - set(labels))
    if unknown_run:
        errors.append((f"solvers[{j}].tasks", f"unknown task(s) {unknown_run}; {_allowed(labels)}"))
    if sol.name not in solvers:
        return errors + [(f"solvers[{j}].name", f"unknown solver {sol.name!r}; {_allowed(sorted(solvers))}")]
    entry = solvers[sol.name]
    ops = {t.label: t.operator for t in spec.tasks}
    bad = [lab for lab in labels if sol.runs_task(lab) and not entry.supports(ops[lab])]
    if bad:
        ok = [lab for lab in labels if entry.supports(ops[lab])]
        errors.append((f"solvers[{j}].tasks", f"{sol.name!r} does not support task(s) {bad}; give "
                       f"solvers[{j}].tasks: the spec's tasks it supports are {ok or 'none'}"))
    if solver_space(entry, spec.prior) is None:
        have = [k for k in ("pixel", "latent") if getattr(spec.prior, k) is not None]
        need = entry.space
        errors.append((f"solvers[{j}].name", f"{sol.name!r} is a {need}-space solver but the spec gives only a {'/'.join(have)} prior; set prior.{need} or use a solver for {'/'.join(have)} priors"))
    unknown = sorted(set(sol.options) - set(entry.defaults) - {"restarts", "select"})
    if unknown:
        errors.append((f"solvers[{j}].options", f"unknown option(s) {unknown} for {sol.name!r}; {_allowed(sorted(entry.defaults) + ['restarts', 'select'])}"))
    else:
        try:
            check_options(sol.name, dict(sol.options))
        except ValueError as exc:
            errors.append((f"solvers[{j}].options", str(exc)))
    if entry.needs_transpose:
        for i, ht in has_transpose.items():
            if not ht and sol.runs_task(spec.tasks[i].label):
                errors.append((f"solvers[{j}].name", f"{sol.name!r} needs operator.transpose but tasks[{i}].operator {spec.tasks[i].operator!r} has none; allowed solvers for this task: {sorted(n for n, e in solvers.items() if not e.needs_transpose)}"))
    return errors


def _regularizer_errors(spec: SweepSpec) -> list[tuple[str, str]]:
    """Regularizers: a ``none`` entry for classical solvers, solver_lambdas keys, groups, MPE per space."""
    from operators import GROUPS as groups
    from solvers.api import SOLVERS as solvers

    errors: list[tuple[str, str]] = []
    spec_solvers = [s.name for s in spec.solvers]
    baselines = [s.name for s in spec.solvers if s.name in solvers and solvers[s.name].family != "diffusion"]
    if baselines and all(r.kind != "none" for r in spec.regularizers):
        errors.append(("regularizers", f"classical solvers {baselines} run without a regularizer, but the spec lists "
                       "none of kind 'none'; add {kind: none}"))
    spaces = {s.name: solver_space(solvers[s.name], spec.prior) for s in spec.solvers if s.name in solvers}
    pixel_solvers = [n for n in spec_solvers if spaces.get(n) == "pixel"]
    latent_solvers = [n for n in spec_solvers if spaces.get(n) == "latent"]
    for k, reg in enumerate(spec.regularizers):
        unknown = sorted(set(reg.solver_lambdas) - set(spec_solvers))
        if unknown:
            errors.append((f"regularizers[{k}].solver_lambdas", f"unknown solver(s) {unknown}; {_allowed(spec_solvers)}"))
        if reg.kind == "none":
            continue
        if reg.group not in groups:
            errors.append((f"regularizers[{k}].group", f"unknown group {reg.group!r}; {_allowed(sorted(groups))}"))
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
    return errors


def _weights_errors(spec: SweepSpec) -> list[tuple[str, str]]:
    """Metric weights files by the registry's keys (``MetricInfo.weights``): a named file a metric
    uses must exist; an unknown key is refused."""
    errors: list[tuple[str, str]] = []
    needed, known = _metric_registry.weights_files(spec.metrics), _metric_registry.weights_files()
    for key, path in spec.metric_weights.items():
        if key in needed and path and not Path(path).exists():
            errors.append((f"metric_weights.{key}", f"missing weights file: {path}"))
    unknown_w = set(spec.metric_weights) - set(known)
    if unknown_w:
        errors.append(("metric_weights", f"unknown keys {sorted(unknown_w)}; {_allowed(sorted(known))}"))
    return errors


