"""``check``: the problems of a ``tune:`` section against its (valid) sweep spec, all at once.

Also the split a search tunes on (``tune_split``: the section's, else the tune split the dataset
pairs with the sweep's report split) and the content-overlap rule: tuning images that share
content with the sweep's report images (same seed, overlapping crop, same id) are refused.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from orchestrator import grid as _grid
from orchestrator.spec import SweepSpec
from orchestrator.tune.section import OPTION_KEY, SPACE_KEYS, TuneSection, cell_keys


def _dataset_info(sweep: SweepSpec):
    from orchestrator import data as _data

    try:
        return _data.info(sweep.dataset.name)
    except ValueError:
        return None  # spec.check already reported the unknown dataset


def _dataset_size(sweep: SweepSpec, split: str) -> Optional[int]:
    info = _dataset_info(sweep)
    return None if info is None else info.sizes.get(split)


def _missing_weights(sweep: SweepSpec, metric: str) -> list[str]:
    """The weights files ``metric`` needs (``MetricInfo.weights``) that are neither named in the spec's
    ``metric_weights`` (existing) nor found where ``orchestrator.metrics.weights`` looks."""
    from orchestrator.metrics import find_weights, registry

    missing = []
    for key, wf in registry.weights_files([metric]).items():
        given = sweep.metric_weights.get(key)
        if not (Path(given).exists() if given else find_weights(wf.filename) is not None):
            missing.append(f"{wf.filename} (metric_weights.{key} or $EQUIBENCH_WEIGHTS)")
    return missing


def tune_split(sweep: SweepSpec, t: TuneSection) -> str:
    """The split a search tunes on: the section's, else the dataset's tune split for the report split."""
    if t.images.split:
        return t.images.split
    info = _dataset_info(sweep)
    pairs = getattr(info, "tune_split_of", None) or {}
    return pairs.get(sweep.dataset.split, sweep.dataset.split)


def _content_overlap(sweep: SweepSpec, split: str, ids: list) -> list:
    """Pairs (tune id, report id) whose images share content (same seed / overlapping crop / same id)."""
    info = _dataset_info(sweep)
    report = _grid.sample_ids(sweep)
    if info is not None and hasattr(info, "overlap"):
        return info.overlap(split, ids, sweep.dataset.split, report)
    if split != sweep.dataset.split:
        return []
    common = sorted(set(report) & set(ids))
    return [(i, i) for i in common]


def _check_images(sweep: SweepSpec, t: TuneSection) -> list[tuple[str, str]]:
    """In range, chunked, disjoint in content from the report images; ASHA has >= 2 chunks."""
    errors: list[tuple[str, str]] = []
    split = tune_split(sweep, t)
    ids = t.images.sample_ids()
    n = _dataset_size(sweep, split)
    if n is None:
        errors.append(("tune.images.split", f"{split!r} is not a split of dataset {sweep.dataset.name!r}"))
    else:
        bad = [i for i in ids if i >= n]
        if bad:
            errors.append(("tune.images", f"ids {bad} out of range for {sweep.dataset.name}/{split}; allowed: 0..{n - 1}"))
        shared = _content_overlap(sweep, split, [i for i in ids if i < n])
        if shared:
            errors.append(("tune.images", f"tuning images {sorted({i for i, _ in shared})[:10]} of {sweep.dataset.name}/{split} "
                           f"share content with report images {sorted({j for _, j in shared})[:10]} of "
                           f"{sweep.dataset.name}/{sweep.dataset.split}; the tuning subset must be disjoint from the "
                           "images a sweep reports on"))
    if t.chunk_size is not None and t.chunk_size > len(ids):
        errors.append(("tune.chunk_size", f"{t.chunk_size} > the {len(ids)} tuning images"))
    n_chunks = math.ceil(len(ids) / (t.chunk_size or max(1, math.ceil(len(ids) / 4))))
    if "asha" in ([t.scheduler.kind] + (["asha"] if t.compare_schedulers else [])) and n_chunks < 2:
        errors.append(("tune.scheduler", f"asha needs at least 2 chunks to stop trials early; {len(ids)} image(s) in "
                       f"chunks of {t.chunk_size} give {n_chunks}"))
    return errors


def _chosen(sweep: SweepSpec, t: TuneSection) -> list[tuple[int, int]]:
    """(solver index, regularizer index) of the cells ``tune.pairs`` selects (all without pairs)."""
    return [(j, k) for j, s in enumerate(sweep.solvers) for k, r in enumerate(sweep.regularizers)
            if t.pairs is None or any(p.solver == s.name and p.regularizer == r.kind for p in t.pairs)]


def _check_pairs(sweep: SweepSpec, t: TuneSection) -> list[tuple[str, str]]:
    errors = []
    names = [s.name for s in sweep.solvers]
    kinds = [r.kind for r in sweep.regularizers]
    for p, pair in enumerate(t.pairs or []):
        if pair.solver not in names:
            errors.append((f"tune.pairs[{p}].solver", f"{pair.solver!r} is not among the spec's solvers; allowed: {names}"))
        if pair.regularizer not in kinds:
            errors.append((f"tune.pairs[{p}].regularizer", f"{pair.regularizer!r} is not among the spec's regularizers; allowed: {sorted(set(kinds))}"))
    return errors


def _check_space(sweep: SweepSpec, t: TuneSection, chosen: list, solvers) -> list[tuple[str, str]]:
    """Known keys, sensible ranges, options every searched solver has, gridable for the grid."""
    errors = []
    for key, p in t.space.items():
        where = f"tune.space.{key}"
        lo, hi = p.bounds
        m = OPTION_KEY.match(key)
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
    return errors


def _check_searcher(t: TuneSection) -> list[tuple[str, str]]:
    errors = []
    if t.searcher == "grid" and t.num_samples is not None:
        errors.append(("tune.num_samples", "the grid searcher runs every grid point once; remove num_samples"))
    if t.searcher != "grid" and t.num_samples is None:
        errors.append(("tune.num_samples", f"the {t.searcher} searcher needs num_samples (trials per cell)"))
    if t.startup_trials is not None and t.searcher != "optuna":
        errors.append(("tune.startup_trials", "only the optuna searcher has startup trials"))
    return errors


def _check_single_config(sweep: SweepSpec, t: TuneSection, chosen: list) -> list[tuple[str, str]]:
    """Every cell is a single configuration apart from what is searched."""
    errors = []
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
    return errors


def check(sweep: SweepSpec, t: TuneSection) -> list[tuple[str, str]]:
    """Problems of a ``tune:`` section against its (valid) sweep spec; empty list: valid."""
    from solvers.api import SOLVERS

    chosen = _chosen(sweep, t)
    errors = _check_images(sweep, t) + _check_pairs(sweep, t)
    errors += _check_space(sweep, t, chosen, SOLVERS)
    errors += _check_searcher(t) + _check_single_config(sweep, t, chosen)
    if chosen and not any(cell_keys(t, sweep.regularizers[k]) for _, k in chosen):
        errors.append(("tune.space", "nothing to search: no selected cell has a parameter in tune.space"))
    missing = _missing_weights(sweep, t.objective.metric)
    if missing:
        errors.append(("tune.objective", f"{t.objective.metric} needs the weights file {', '.join(missing)}; "
                       "without it every value is null"))
    return errors
