"""Defaults that ``equibench run`` (sweep specs) and ``equibench solve`` share: one place, one rule.

- MPE function: the EquiReg authors' recipes (SPEC "EquiReg"): the encoder ``E`` for pixel-space
  solvers (their DPS example), the decoder ``D`` for latent-space solvers (their PSLD recipe), and
  ``D o E`` / ``E o D`` (``autoencoder``) for EquiCon, which must map back into x's own space.
- Step size and solver options: for an embedded prior, the values searched on the embedded world's
  tune split and recorded in ``TUNED_SPEC`` (``configs/tuned.yaml``, from configs/tune-steps.yaml);
  else the solver's own registry default (``SolverInfo.defaults[step_param]``); else 1.0.
"""
from __future__ import annotations

import functools
from pathlib import Path

TUNED_SPEC = Path(__file__).resolve().parents[1] / "configs" / "tuned.yaml"


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


def tuned_num_steps(solver: str, path: Path = TUNED_SPEC) -> int | None:
    """The step count the tuned step sizes of ``solver`` were searched at (None: not searched)."""
    entry = _tuned_entries(str(path)).get(solver)
    steps = (entry or {}).get("num_steps")
    return int(steps[0] if isinstance(steps, list) else steps) if steps else None


def default_step_size(name: str, solver_info, task: str, embedded: bool) -> float:
    """The step size solver ``name`` (registry entry ``solver_info``) runs on ``task`` when none is given."""
    if embedded:
        tuned, _ = tuned_settings(name, task)
        if tuned is not None:
            return tuned
    value = (getattr(solver_info, "defaults", {}) or {}).get(getattr(solver_info, "step_param", "step_size"))
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0


def tuned_document(best_config: dict, note: str = "") -> dict:
    """``configs/tuned.yaml`` from a step search's ``best-config.yaml``: per solver, the best step size
    per task (``task_step_sizes``), its step count and options, and where they were searched."""
    solvers: dict = {}
    for entry in best_config.get("best", {}).values():
        if entry.get("regularizer", "none") != "none":
            continue
        frag = entry["sweep"]["solvers"][0]
        sol = solvers.setdefault(entry["solver"], {"name": entry["solver"], "num_steps": frag["num_steps"],
                                                   "options": frag.get("options", {}), "task_step_sizes": {}})
        sol["task_step_sizes"][entry["task"]] = [float(f"{entry['step_size']:.4g}")]
    search = best_config.get("search", {})
    return {"source": {"search": search.get("run_id"), "tuning_images": search.get("tuning_images"), "note": note},
            "solvers": [solvers[k] for k in sorted(solvers)]}


if __name__ == "__main__":  # python -m orchestrator.defaults OUT.yaml BEST_CONFIG.yaml [BEST_CONFIG.yaml ...]
    import sys

    import yaml

    dst, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
    docs = [tuned_document(yaml.safe_load(p.read_text()), note=f"written from {p}") for p in sources]
    merged = {"sources": [d["source"] for d in docs], "solvers": [s for d in docs for s in d["solvers"]]}
    names = [s["name"] for s in merged["solvers"]]
    if len(names) != len(set(names)):
        raise SystemExit(f"a solver appears in more than one search: {sorted(names)}")
    dst.write_text("# Step sizes and weights searched on the tune split (python -m orchestrator.defaults); read by\n"
                   "# orchestrator.defaults for specs and `equibench solve` that give none.\n"
                   + yaml.safe_dump(merged, sort_keys=False))
    print(f"wrote {dst}")
