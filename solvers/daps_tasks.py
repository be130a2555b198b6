"""DAPS / LatentDAPS per-task MCMC settings: one frozen object per task, chosen by task.

Each entry of ``TASK_DEFAULTS[config_set][task]`` is an ``MCMCSettings`` copied from the DAPS repo's
``configs/task/*.yaml`` (``mcmc_sampler_config``; zhangbingliang2019/DAPS, commit 098df6b; tau is
0.01 everywhere). Config sets: ``pixel`` (the paper's pixel DAPS, Langevin), ``pixel_hmc`` (the
repo's HMC variant for pixel models), ``ldm`` (LatentDAPS on LDM-VQ-4) and ``sd`` (LatentDAPS on
Stable Diffusion; the repo uses sigma_y 0.01 there).

The settings of a task belong together: the repo tuned each task's lr *with* its decay and
momentum (blur's ``ldm`` lr 2.7e-6 goes with ``lr_min_ratio`` 0.95, SR's 1.35e-4 with 0.023), so
``task_settings`` picks the task's own object and an explicit option replaces only that field of
it (``dataclasses.replace``), never mixing two tasks. An operator or ``task`` name that is not a
DAPS task raises ``ValueError`` naming the allowed ones; there is no fallback task (the earlier
fallback to the SR settings ran other tasks with SR's schedule).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["MCMCSettings", "TASK_DEFAULTS", "TASK_ALIASES", "SETTING_FIELDS", "task_name", "task_settings"]


@dataclass(frozen=True)
class MCMCSettings:
    """One task's MCMC settings: K steps per level, lr, linear decay to ``lr * lr_min_ratio``,
    HMC damping ``momentum`` (unused by Langevin) and the algorithm (``langevin`` | ``hmc``)."""

    task: str
    mcmc_steps: int
    step_size: float
    lr_min_ratio: float
    momentum: float
    mc_algo: str


#: the fields an option of the same name may override (``task`` is what selects the object)
SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(MCMCSettings) if f.name != "task")


def _table(algo: str, rows: dict[str, tuple]) -> dict[str, MCMCSettings]:
    return {task: MCMCSettings(task, k, lr, ratio, m, algo) for task, (k, lr, ratio, m) in rows.items()}


#: (mcmc_steps, lr, lr_min_ratio, momentum) per task, as in the repo's task configs
TASK_DEFAULTS: dict[str, dict[str, MCMCSettings]] = {
    "pixel": _table("langevin", {
        "down_sampling": (100, 1e-4, 0.01, 0.9), "gaussian_blur": (100, 1e-4, 0.01, 0.9),
        "inpainting_rand": (100, 1e-4, 0.01, 0.9), "inpainting": (100, 5e-5, 0.01, 0.9),
        "motion_blur": (100, 5e-5, 0.01, 0.9), "phase_retrieval": (100, 5e-5, 0.01, 0.9),
        "hdr": (100, 2e-5, 0.01, 0.9), "nonlinear_blur": (200, 1e-5, 0.01, 0.9)}),
    "pixel_hmc": _table("hmc", {
        "down_sampling": (12, 1.04e-4, 0.012, 0.90), "gaussian_blur": (82, 4.04e-5, 0.011, 0.10),
        "inpainting_rand": (11, 3.56e-5, 0.015, 0.80), "inpainting": (84, 1.15e-5, 0.014, 0.003),
        "motion_blur": (96, 3.69e-5, 0.01, 0.11), "phase_retrieval": (62, 9.75e-6, 0.019, 0.73),
        "hdr": (100, 2.18e-5, 0.013, 0.23), "nonlinear_blur": (85, 1.20e-5, 0.012, 0.46)}),
    "ldm": _table("hmc", {
        "down_sampling": (24, 1.35e-4, 0.023, 0.86), "gaussian_blur": (35, 2.70e-6, 0.95, 0.95),
        "inpainting_rand": (38, 8.40e-6, 0.013, 0.92), "inpainting": (15, 9.02e-6, 0.13, 0.74),
        "motion_blur": (49, 2.4e-5, 0.041, 0.45), "phase_retrieval": (65, 2.1e-5, 0.12, 0.41),
        "hdr": (38, 4.52e-6, 0.015, 0.58), "nonlinear_blur": (80, 3.71e-6, 0.024, 0.91)}),
    "sd": _table("hmc", {
        "down_sampling": (30, 1e-4, 1.0, 0.45), "gaussian_blur": (40, 1e-5, 1.0, 0.9),
        "inpainting_rand": (15, 3e-5, 1.0, 0.60), "inpainting": (58, 1.11e-6, 0.43, 0.92),
        "motion_blur": (30, 2e-5, 1.0, 0.85), "phase_retrieval": (95, 1.10e-4, 0.027, 0.47),
        "hdr": (45, 1.0e-5, 1.0, 0.7), "nonlinear_blur": (60, 1e-5, 1.0, 0.80)}),
}

#: Operator/task names (EquiBench's and the DAPS repo's) -> DAPS task names.
TASK_ALIASES: dict[str, str] = {
    "down_sampling": "down_sampling", "super_resolution": "down_sampling", "sr": "down_sampling",
    "sr4": "down_sampling", "bicubic_sr": "down_sampling",
    "gaussian_blur": "gaussian_blur", "gaussian_deblur": "gaussian_blur",
    "inpainting_rand": "inpainting_rand", "random_inpainting": "inpainting_rand",
    "inpainting": "inpainting", "box_inpainting": "inpainting",
    "motion_blur": "motion_blur", "motion_deblur": "motion_blur",
    "phase_retrieval": "phase_retrieval",
    "hdr": "hdr", "high_dynamic_range": "hdr",
    "nonlinear_blur": "nonlinear_blur", "nonlinear_deblur": "nonlinear_blur",
}


def task_name(options: dict, operator) -> str:
    """The DAPS task: option ``task`` if given, else ``operator.name``; unknown names raise."""
    name = options.get("task")
    source = "option 'task'"
    if name is None:
        name, source = getattr(operator, "name", None), "operator.name"
    key = str(name).lower() if name is not None else None
    if key not in TASK_ALIASES:
        raise ValueError(f"unknown DAPS task {name!r} (from {source}); allowed: {sorted(TASK_ALIASES)}. "
                         f"For another operator pass option 'task' naming the DAPS task whose settings apply")
    return TASK_ALIASES[key]


def task_settings(options: dict, operator) -> MCMCSettings:
    """The task's own ``MCMCSettings`` with each non-None option of the same name replacing only
    that field (``options['config_set']`` picks the table)."""
    sets = TASK_DEFAULTS.get(options["config_set"])
    if sets is None:
        raise ValueError(f"unknown config_set {options['config_set']!r}; allowed: {sorted(TASK_DEFAULTS)}")
    own = sets[task_name(options, operator)]
    return dataclasses.replace(own, **{k: options[k] for k in SETTING_FIELDS if options.get(k) is not None})
