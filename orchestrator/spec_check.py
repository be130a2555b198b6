"""The meaning layer of sweep-spec validation (``check``): names against the registries, prior files
and image sizes, solver spaces, transposes, per-task capabilities, regularizer settings; also the
prior metadata it needs (``prior_info``) without loading any model. Shape checks: ``spec_models``."""
from __future__ import annotations

import json
from pathlib import Path

from orchestrator import backend as _backend
from orchestrator.spec_models import SET_METRICS, PriorRef, PriorSpec, SpecError, SweepSpec, _allowed


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


