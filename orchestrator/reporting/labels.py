"""What a report calls things, and in which order: metrics, solvers, tasks, numbers.

Facts come from the registries, never restated here: a solver's space (latent / pixel) and family
(diffusion / classical) from ``solvers.SOLVERS``, a task's kind (linear / nonlinear) from
``operators.OPERATORS``, a metric's label, decimals, source (image / set) and direction from the
metric registry (``orchestrator.metrics.registry``). What is kept here is spelling and the paper's
order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from operators import OPERATORS
from orchestrator.metrics import registry as _metric_registry
from orchestrator.schema import LOWER_IS_BETTER
from solvers import SOLVERS


# ------------------------------------------------------------------------------------ metrics
@dataclass(frozen=True)
class Metric:
    """How a metric is shown: header label, fixed decimals, where it comes from."""

    label: str
    decimals: int
    source: str = "image"  # "image": averaged over per-image rows; "set": from the sets table
    percent: bool = False  # shown as a percentage (relative L2, as in the paper's Table 4)
    std_column: str | None = None  # for set metrics: the sets column holding a std, if any


#: Metrics a table may show (keys are result/set column names): every registered metric under the
#: column reports show (``MetricInfo.column``: ``kid_mean`` for KID), and seconds per image.
METRICS: dict[str, Metric] = {
    **{m.column: Metric(m.label, m.decimals, source=m.kind, percent=m.percent, std_column=m.std_column)
       for m in _metric_registry.METRICS.values()},
    "wall_s": Metric("s/img", 2),
    # posterior set metrics (``orchestrator.posterior_sets``), shown by the calibration layout
    **{k: Metric(label, dec, source="posterior", percent=pct) for k, label, dec, pct in (
        ("sw", "SW", 3, False), ("sw_floor", "SW floor", 3, False), ("sw_ratio", "SW/floor", 2, False),
        ("mean_err", "mean err.", 3, False), ("std_ratio", "std ratio", 2, False), ("mode_tv", "mode TV", 3, False),
        ("cov50", "cov. 50%", 1, True), ("cov90", "cov. 90%", 1, True), ("mmse_gap", "MMSE gap", 2, False))},
}

#: Lambda influence columns (per image): gradient-norm ratio, and the objective ratio (ReSample).
INFLUENCE_COLUMNS = ("influence_grad", "influence_obj")
#: Influence below / above these is an inert / a dominant lambda.
INERT_BELOW, DOMINANT_ABOVE = 1e-3, 10.0

#: Per-image columns averaged into the summary.
IMAGE_COLUMNS = tuple(m for m, spec in METRICS.items() if spec.source == "image") + ("naive_psnr",) + INFLUENCE_COLUMNS


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


# ------------------------------------------------------------------------------------ solvers
#: Paper spelling where a registry name is not it (others: ``tv_pd`` -> "TV PD", ``wiener`` -> "Wiener").
SOLVER_SPELLING = {"psld": "PSLD", "resample": "ReSample", "latent_daps": "LatentDAPS", "dps": "DPS", "daps": "DAPS",
                   "fundps": "FunDPS", "diffusionpde": "DiffusionPDE"}
#: Row groups of a table, in order; a solver's group comes from the registry (``solver_group``).
GROUP_LABELS = {"latent": "Latent", "pixel": "Pixel-based", "other": "Other", "classical": "Classical"}
GROUP_ORDER = tuple(GROUP_LABELS)
REGULARIZER_PREFIX = {"none": "", "equi": "Equi-", "equicon": "EquiCon-"}
REGULARIZER_ORDER = ("none", "equi", "equicon")
NAIVE_LABEL = "Naive inverse"


def present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and not pd.isna(value)


def num(value) -> float:
    """A sortable number (None/NaN last)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.inf
    return math.inf if math.isnan(f) else f


def solver_family(solver: str) -> str:
    """``diffusion`` or ``classical`` (the registry's ``family``; unregistered: diffusion)."""
    info = SOLVERS.get(str(solver))
    return getattr(info, "family", "diffusion") if info is not None else "diffusion"


def solver_group(solver: str) -> str:
    """The row group: ``classical`` for classical baselines, else the registry space (latent /
    pixel), ``other`` for solvers the registry does not know or that take any space."""
    if solver_family(solver) == "classical":
        return "classical"
    info = SOLVERS.get(str(solver))
    space = getattr(info, "space", None)
    return space if space in ("latent", "pixel") else "other"


def solver_label(solver: str) -> str:
    if not present(solver):
        return "-"
    name = str(solver)
    info = SOLVERS.get(name)
    if getattr(info, "label", None):
        return str(info.label)
    if name in SOLVER_SPELLING:
        return SOLVER_SPELLING[name]
    return " ".join(p.upper() if len(p) <= 3 else p.capitalize() for p in name.split("_") if p)


def method_label(solver: str, regularizer: str) -> str:
    """Paper spelling: ``DPS``, ``Equi-DPS``, ``EquiCon-PSLD``."""
    return REGULARIZER_PREFIX.get(regularizer, f"{regularizer}-") + solver_label(solver)


def method_sort_key(solver: str, regularizer: str, num_steps) -> tuple:
    """Paper order: group (latent, pixel, other, classical), spelled solvers first, then the
    registry's order; regularizer none, equi, equicon; steps."""
    known = list(SOLVER_SPELLING) + [s for s in SOLVERS if s not in SOLVER_SPELLING]
    return (_index(GROUP_ORDER, solver_group(solver)), _index(known, solver), str(solver),
            _index(REGULARIZER_ORDER, regularizer), str(regularizer), num(num_steps))


def _index(seq: Sequence, value, default: int = 99) -> int:
    return seq.index(value) if value in seq else default


# -------------------------------------------------------------------------------------- tasks
#: Spelling of operator-registry task names, in the paper's order.
TASK_SPELLING = {"gaussian_blur": "Gaussian deblur", "motion_blur": "Motion deblur", "super_resolution": "Super-resolution",
                 "box_inpainting": "Box inpainting", "random_inpainting": "Random inpainting", "hdr": "HDR",
                 "phase_retrieval": "Phase retrieval", "nonlinear_blur": "Nonlinear deblur", "identity": "Denoising"}
KIND_ORDER = ("Linear", "Nonlinear", "Other")
PDE_PREFIX = "pde_"
PDE_LABELS = {"helmholtz": "Helmholtz", "navier_stokes": "Navier-Stokes", "darcy": "Darcy", "poisson": "Poisson"}
PDE_DIRECTIONS = {"forward": "Forward", "inverse": "Inverse"}


def task_kind(task: str, operator: str | None = None) -> str:
    """``Linear`` / ``Nonlinear`` from the operator registry (``operator`` defaults to the task
    name); ``Other`` for tasks that are not a registered operator."""
    cls = OPERATORS.get(str(operator if present(operator) else task))
    if cls is None:
        return "Other"
    return "Linear" if getattr(cls, "linear", False) else "Nonlinear"


def is_pde(task) -> bool:
    return str(task).startswith(PDE_PREFIX)


def pde_parts(task: str) -> tuple[str, str]:
    """``pde_navier_stokes_inverse`` -> ("Navier-Stokes", "Inverse")."""
    name = str(task)[len(PDE_PREFIX):]
    head, _, tail = name.rpartition("_")
    if head and tail in PDE_DIRECTIONS:
        name, direction = head, PDE_DIRECTIONS[tail]
    else:
        direction = ""
    return PDE_LABELS.get(name, name.replace("_", " ").title()), direction


def task_label(task: str) -> str:
    if not present(task):
        return "-"
    if task in TASK_SPELLING:
        return TASK_SPELLING[task]
    if is_pde(task):
        problem, direction = pde_parts(task)
        return f"{problem} {direction}".strip()
    return str(task).replace("_", " ").capitalize()


def task_sort_key(task: str) -> tuple:
    if task in TASK_SPELLING:
        return (0, list(TASK_SPELLING).index(task), "")
    if task in OPERATORS:
        return (0, len(TASK_SPELLING) + list(OPERATORS).index(task), "")
    if is_pde(task):
        problem, direction = pde_parts(task)
        directions = list(PDE_DIRECTIONS.values())
        return (1, 0, f"{problem}\0{directions.index(direction) if direction in directions else 9}")
    return (2, 0, str(task))


# ------------------------------------------------------------------------------------ numbers
def format_number(value: float, metric: str, signed: bool = False) -> str:
    spec = METRICS[metric]
    v = float(value) * (100.0 if spec.percent else 1.0)
    text = f"{v:+.{spec.decimals}f}" if signed else f"{v:.{spec.decimals}f}"
    if float(text) == 0.0:  # no "-0.00"
        text = ("+" if signed else "") + text.lstrip("+-")
    return text


def format_setting(value) -> str:
    """A hyperparameter as shown: ``0.001``, ``1e-05``, ``500``; missing (or the ``num`` stand-in
    for missing, inf) as ``-``."""
    if isinstance(value, (float, int, np.floating, np.integer)) and present(value):
        return "-" if math.isinf(float(value)) else format(float(value), "g")
    return "-" if not present(value) else str(value)


def format_ratio(value) -> str:
    """An influence ratio: two significant digits (``0.031``, ``2.4e-05``, ``12``)."""
    return format(float(value), ".2g") if present(value) else "-"
