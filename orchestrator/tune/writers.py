"""The search's files in ``OUT``: ``best-config.yaml`` (the best complete trial per cell, as
sweep-spec fragments), ``summary.json``, ``summary.md``, ``trials.csv`` and the lambda-sensitivity
figure (``orchestrator.tune.plots``), all from the summary ``analyse`` computed."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from orchestrator import grid as _grid
from orchestrator.tune.analysis import cell_flags
from orchestrator.tune.cells import Cell
from orchestrator.tune.plots import plot_sensitivity
from orchestrator.tune.values import fmt


def sweep_fragment(cell: Cell, cfg: _grid.Config) -> dict:
    """The sweep-spec pieces (``solvers``, ``tasks``, ``regularizers``) that reproduce ``cfg``,
    with the baseline (``none``) alongside a regularized configuration."""
    solver = json.loads(cell.solver.model_dump_json())
    solver.update(num_steps=[cfg.num_steps], step_sizes=[cfg.step_size], options=dict(cfg.solver_options))
    solver.pop("task_step_sizes", None)  # the fragment's one task carries its own step size
    task = json.loads(cell.task.model_dump_json(exclude_none=True))
    reg = json.loads(cell.reg.model_dump_json())
    reg["lambdas"] = [cfg.lam] if cell.reg.kind != "none" else [0.0]
    regs = ([{"kind": "none"}] if cell.reg.kind != "none" else []) + [reg]
    return {"solvers": [solver], "tasks": [task], "regularizers": regs}


def best_config_document(ts, cells: list[Cell], summary: dict) -> dict:
    """The best-config.yaml content for the primary variant."""
    variant = summary["primary"]
    vs = summary["variants"][variant]["cells"]
    best = {}
    for cell in cells:
        entry = vs[cell.slug]
        b = entry["best"]
        if b is None:
            continue
        cfg = cell.config(b["params"])
        best[cell.slug] = {
            "solver": cell.solver.name, "regularizer": cell.reg.kind, "task": cell.task.label,
            "params": b["params"], "lam": cfg.lam, "step_size": cfg.step_size, "num_steps": cfg.num_steps,
            "objective": b["mean"], "baseline": (entry.get("baseline") or {}).get("mean"),
            "n_images": b["n_images"], "trial_id": b["trial_key"], "config_id": cfg.config_id,
            "influence": b.get("influence"), "warnings": cell_flags(entry),
            "sweep": sweep_fragment(cell, cfg),
        }
    return {
        "search": {"run_id": ts.run_id, "variant": variant, "searcher": ts.tune.searcher,
                   "objective": dict(summary["objective"]), "tuning_images": summary["tuning_images"]},
        "best": best,
    }


def _header(ts, summary: dict) -> str:
    obj = summary["objective"]
    return (f"# Best configurations found by `equibench tune` (search {ts.run_id!r}, scheduler "
            f"{summary['primary']}, searcher {ts.tune.searcher}).\n"
            f"# Objective: {obj['metric']} ({obj['mode']}), mean over {len(ts.tuning_ids)} tuning images of "
            f"{ts.sweep.dataset.name}/{ts.split}, disjoint from the spec's report images; only trials that saw\n"
            "# every tuning image compete. `baseline` is the same solver and task without regularizer.\n"
            "# Each `best.<cell>.sweep` is a sweep-spec fragment (solvers, tasks, regularizers with the\n"
            "# baseline): merge it into a sweep spec's top level to run that configuration on report images.\n")


def write_outputs(ts, cells: list[Cell], summary: dict, out_dir: Path) -> dict:
    """best-config.yaml, summary.json/.md, trials.csv and the lambda-sensitivity figure in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    doc = best_config_document(ts, cells, summary)
    path = out_dir / "best-config.yaml"
    path.write_text(_header(ts, summary) + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110))
    files["best_config"] = path
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, default=str))
    files["summary_json"] = path
    path = out_dir / "summary.md"
    path.write_text(summary_markdown(ts, summary))
    files["summary_md"] = path
    path = out_dir / "trials.csv"
    trials_frame(summary).to_csv(path, index=False)
    files["trials_csv"] = path
    figs = plot_sensitivity(ts, cells, summary, out_dir)
    if figs:
        files["sensitivity_png"], files["sensitivity_pdf"] = figs
    return files


def trials_frame(summary: dict):
    """One row per trial of every variant and cell (trials.csv)."""
    import pandas as pd

    rows = []
    for variant, v in summary["variants"].items():
        for slug, entry in v["cells"].items():
            for t in entry["trials"]:
                rows.append({"variant": variant, "cell": slug, **entry["cell"], "trial_id": t["trial_key"],
                             **{f"param:{k}": val for k, val in t["params"].items()}, "mean": t["mean"],
                             "n_images": t["n_images"], "n_rows": t["n_rows"], "status": t["status"], "influence": t.get("influence"),
                             "is_best": entry["best"] is not None and entry["best"]["trial_key"] == t["trial_key"]})
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.drop(columns=["searched", "label", "ranges"], errors="ignore")
    return frame


def _cell_line(e: dict) -> str:
    """One table row of summary.md: the best configuration against the baseline, and trial counts."""
    c, b = e["cell"], e["best"]
    best = ", ".join(f"{k}={fmt(float(val))}" for k, val in b["params"].items()) if b and b["params"] else ("(fixed)" if b else "none complete")
    objective = fmt(b["mean"]) if b else "-"
    base = e.get("baseline")
    delta = fmt(b["mean"] - base["mean"]) if b and base else "-"
    counts = e.get("counts")
    tr = (f"{counts['complete']}/{counts['stopped']}/{counts['diverged'] + counts['failed'] + counts['errored'] + counts['empty']}"
          if counts else "fixed")
    infl = b.get("influence") if b and c["regularizer"] != "none" else None
    return (f"| {c['solver']} | {c['regularizer']} | {c['task']} | {best} | {objective} | "
            f"{fmt(base['mean']) if base else '-'} | {delta} | {format(infl, '.2g') if infl is not None else '-'} | {tr} |")


def summary_markdown(ts, summary: dict) -> str:
    """A short human summary: best configuration against the baseline per cell, and evaluations."""
    obj = summary["objective"]
    lines = [f"# Tune search `{ts.run_id}`", "",
             f"Objective: **{obj['metric']}** ({obj['mode']}), mean over {len(ts.tuning_ids)} tuning images "
             f"({summary['tuning_images']['dataset']}/{summary['tuning_images']['split']} ids "
             f"{_ids_text(ts.tuning_ids)}), reported every {ts.chunk_size} image(s); searcher {ts.tune.searcher}.", ""]
    for variant in summary["variants_run"]:
        v = summary["variants"][variant]
        lines += [f"## Scheduler `{variant}`" + (" (primary: best-config.yaml)" if variant == summary["primary"] else ""), "",
                  "| solver | regularizer | task | best | objective | baseline | delta | infl. | trials (complete/stopped/invalid) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [_cell_line(e) for e in v["cells"].values()]
        flagged = [f"- **{e['cell']['label']}**: {f}" for e in v["cells"].values() for f in cell_flags(e)]
        lines += ["", f"Image-evaluations: **{v['evaluations']}** for {v['trials']} trials "
                      f"(every trial on every image: {v['full_budget']}).", ""]
        lines += (["Warnings (infl. = mean ||grad(λR)|| / ||grad(data term)|| of the best trial):", ""] + flagged + [""]) if flagged else []
    if len(summary["variants_run"]) == 2:
        a, b = (summary["variants"][k]["evaluations"] for k in ("asha", "none"))
        if b:
            lines += [f"ASHA used {a} image-evaluations against {b} without early stopping "
                      f"({100 * (1 - a / b):.0f}% fewer).", ""]
    lines += [f"Fixed cells (baselines): {summary['fixed_evaluations']} image-evaluations.",
              f"Model loads per worker: {summary['model_loads']}.", ""]
    return "\n".join(lines)


def _ids_text(ids: list[int]) -> str:
    return ", ".join(map(str, ids)) if len(ids) <= 12 else f"{ids[0]}..{ids[-1]} ({len(ids)})"
