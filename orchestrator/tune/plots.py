"""The lambda-sensitivity figure of a search (``lambda-sensitivity.png/.pdf`` in ``OUT``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from orchestrator.tune.cells import Cell

#: influence bounds drawn dotted on the right axis (inert below, dominant above)
INFLUENCE_BOUNDS = (1e-3, 10.0)


def _influence_axis(ax):
    ax2 = ax.twinx()
    ax2.set_yscale("log")
    ax2.set_ylabel("influence ||grad(λR)||/||grad(data)|| (dotted x)", fontsize=7)
    for bound in INFLUENCE_BOUNDS:
        ax2.axhline(bound, color="0.6", ls=":", lw=0.8)
    return ax2


def _draw_cell(ax, ax2, trans, entry: dict, label: str, color: str):
    """One task's curve in a panel; returns the influence axis (made on first use)."""
    trials = entry["trials"]
    done = sorted((t["params"]["lam"], t["mean"]) for t in trials if t["status"] == "complete" and "lam" in t["params"])
    if done:
        ax.plot([d[0] for d in done], [d[1] for d in done], "-o", color=color, ms=4, label=label)
    part = [(t["params"]["lam"], t["mean"]) for t in trials if t["status"] == "stopped" and t["mean"] is not None]
    if part:
        ax.plot([p[0] for p in part], [p[1] for p in part], "o", mfc="none", color=color, alpha=0.5, ms=4)
    div = [t["params"]["lam"] for t in trials if t["status"] in ("diverged", "failed") and "lam" in t["params"]]
    if div:
        ax.plot(div, [0.02] * len(div), "x", color=color, transform=trans, clip_on=False)
    best = entry["best"]
    if best is not None:
        ax.plot([best["params"]["lam"]], [best["mean"]], "*", color=color, ms=13, mec="k", mew=0.6)
    base = entry.get("baseline")
    if base is not None:
        ax.axhline(base["mean"], ls="--", color=color, lw=1)
    infl = sorted((t["params"]["lam"], t["influence"]) for t in trials
                  if t["status"] == "complete" and "lam" in t["params"] and (t.get("influence") or 0) > 0)
    if infl:  # the lambda's influence on a right-hand log axis, inert / dominant bounds dotted
        ax2 = ax2 or _influence_axis(ax)
        ax2.plot([i[0] for i in infl], [i[1] for i in infl], ":x", color=color, alpha=0.7, ms=4)
    return ax2


def plot_sensitivity(ts, cells: list[Cell], summary: dict, out_dir: Path) -> Optional[tuple[Path, Path]]:
    """Objective vs lambda, one curve per task, one panel per (solver, regularizer): complete
    trials joined by a line, ASHA-stopped trials as faint open markers (their partial means),
    diverged lambdas as crosses on the bottom axis, the baseline dashed, the best starred."""
    from matplotlib.figure import Figure
    from matplotlib.transforms import blended_transform_factory

    from orchestrator.figures import save_figure

    vs = summary["variants"][summary["primary"]]["cells"]
    panels: dict[tuple[int, int], list[Cell]] = {}
    for cell in cells:
        if "lam" in cell.params:
            panels.setdefault((cell.solver_index, cell.reg_index), []).append(cell)
    if not panels:
        return None
    fig = Figure(figsize=(max(6.0, 4.2 * len(panels)), 3.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    metric, mode = summary["objective"]["metric"], summary["objective"]["mode"]
    for ax, pcells in zip(axes, panels.values()):
        trans = blended_transform_factory(ax.transData, ax.transAxes)
        ax2 = None
        for t_i, cell in enumerate(pcells):
            ax2 = _draw_cell(ax, ax2, trans, vs[cell.slug], cell.task.label, f"C{t_i}")
        ax.set_xscale("log")
        ax.set_xlabel("lambda")
        ax.set_ylabel(f"{metric} ({'higher' if mode == 'max' else 'lower'} is better)")
        ax.set_title(f"{pcells[0].solver.name} + {pcells[0].reg.kind}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="task", title_fontsize=7)
    fig.suptitle(f"lambda sensitivity: mean {metric} over {len(ts.tuning_ids)} tuning images\n"
                 "(-- baseline, * best, open o: stopped early (partial mean), x: diverged;\n"
                 "right axis, dotted: the lambda's influence, inert < 1e-3, dominant > 10)", fontsize=8)
    fig.tight_layout()
    png, pdf = save_figure(fig, out_dir, "lambda-sensitivity")
    return png, pdf
