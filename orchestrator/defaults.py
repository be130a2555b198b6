"""Defaults that ``equibench run`` (sweep specs) and ``equibench solve`` share: one place, one rule.

- MPE function: the EquiReg authors' recipes (SPEC "EquiReg"): the encoder ``E`` for pixel-space
  solvers (their DPS example), the decoder ``D`` for latent-space solvers (their PSLD recipe), and
  ``D o E`` / ``E o D`` (``autoencoder``) for EquiCon, which must map back into x's own space.
- Step size and solver options: the values searched on the embedded world's tune split and
  recorded in ``TUNED_SPEC`` (the solver table's spec) for an embedded prior; else the solver's own
  registry default (``SolverInfo.defaults[step_param]``); else 1.0.
"""
from __future__ import annotations

import functools
from pathlib import Path

TUNED_SPEC = Path(__file__).resolve().parents[1] / "configs" / "solvers-table.yaml"


def default_mpe(space: str, kind: str) -> str:
    """The MPE function name for a regularizer ``kind`` on a ``space``-space solver."""
    if kind == "equicon":
        return "autoencoder"
    return "decoder" if space == "latent" else "encoder"


@functools.lru_cache(maxsize=4)
def _tuned_entries(path: str) -> dict:
    p = Path(path)
    if not p.exists():
        return {}
    import yaml

    return {e["name"]: e for e in (yaml.safe_load(p.read_text()) or {}).get("solvers", []) if "name" in e}


def tuned_settings(solver: str, task: str, path: Path = TUNED_SPEC) -> tuple[float | None, dict]:
    """(step size, options) of ``solver`` on ``task`` in the tuned embedded table, or (None, {})."""
    entry = _tuned_entries(str(path)).get(solver)
    if entry is None:
        return None, {}
    from orchestrator.spec import SolverSpec

    sol = SolverSpec.model_validate(entry)
    sizes = sol.step_sizes_for(task)
    return (float(sizes[0]) if sizes else None), dict(sol.options)


def default_step_size(name: str, solver_info, task: str, embedded: bool) -> float:
    """The step size solver ``name`` (registry entry ``solver_info``) runs on ``task`` when none is given."""
    if embedded:
        tuned, _ = tuned_settings(name, task)
        if tuned is not None:
            return tuned
    value = (getattr(solver_info, "defaults", {}) or {}).get(getattr(solver_info, "step_param", "step_size"))
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0
