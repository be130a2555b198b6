"""Cells: the (solver, regularizer, task) questions of a search, each its own Tune experiment.

Objective values of different tasks are not comparable, so one searcher or one ASHA over all
cells would spend its trials on, and stop trials of, whichever task happens to score higher. A
cell searches every key of ``tune.space`` except ``lam`` when its regularizer is ``none``; a cell
left with nothing to search (the usual baseline) is evaluated once, without Tune.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from orchestrator import grid as _grid
from orchestrator.spec import RegSpec, SolverSpec, TaskSpec
from orchestrator.tune.section import OPTION_KEY, TuneSection, cell_keys
from orchestrator.tune.values import plain

if TYPE_CHECKING:
    from orchestrator.tune.tunespec import TuneSpec


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("._-") or "x"


@dataclass(frozen=True)
class Cell:
    """One (solver, regularizer, task) of a search: its fixed configuration and what it searches."""

    slug: str
    solver: SolverSpec
    reg: RegSpec
    task: TaskSpec
    template: _grid.Config  # the configuration with the spec's values (lam etc.) on the tuning split
    params: dict  # name -> ParamSpec, the searched keys
    solver_index: int
    reg_index: int

    @property
    def searched(self) -> bool:
        return bool(self.params)

    @property
    def label(self) -> str:
        return f"{self.solver.name}/{self.reg.kind}/{self.task.label}"

    def config(self, params: dict) -> _grid.Config:
        """The cell's configuration with ``params`` (``lam``, ``step_size``, ``step_scale``, ``num_steps``,
        ``options.<name>``) applied; numbers become plain Python numbers (config ids hash JSON)."""
        t = self.template
        opts = dict(t.solver_options)
        for key, value in params.items():
            m = OPTION_KEY.match(key)
            if m:
                opts[m.group(1)] = plain(value, self.params.get(key))
        return dataclasses.replace(
            t, lam=float(params.get("lam", t.lam)),
            step_size=float(params.get("step_size", t.step_size)) * float(params.get("step_scale", 1.0)),
            num_steps=int(round(float(params.get("num_steps", t.num_steps)))), solver_options=opts)

    def n_trials(self, t: TuneSection) -> int:
        if not self.searched:
            return 1
        if t.searcher == "grid":
            return math.prod(len(p.grid_values()) for p in self.params.values())
        return int(t.num_samples)

    def params_of(self, config: dict) -> dict:
        """The searched keys of a Tune trial's ``config`` as plain numbers."""
        return {k: plain(config[k], self.params.get(k)) for k in self.params if k in config}


def make_cells(ts: "TuneSpec") -> list[Cell]:
    """The cells of a search in spec order (solver, regularizer, task), each with its template."""
    sweep, t = ts.sweep, ts.tune
    name_counts = {n: [s.name for s in sweep.solvers].count(n) for n in {s.name for s in sweep.solvers}}
    kind_counts = {k: [r.kind for r in sweep.regularizers].count(k) for k in {r.kind for r in sweep.regularizers}}
    out = []
    for j, sol in enumerate(sweep.solvers):
        for k, reg in enumerate(sweep.regularizers):
            if t.pairs is not None and not any(p.solver == sol.name and p.regularizer == reg.kind for p in t.pairs):
                continue
            for task in sweep.tasks:
                if not sol.runs_task(task.label):
                    continue  # the solver's spec names other tasks (e.g. a classical baseline's)
                sub = sweep.model_copy(update={"solvers": [sol], "tasks": [task], "regularizers": [reg],
                                               "seeds": [sweep.seeds[0]]})
                expanded = _grid.expand(sub)
                if not expanded:
                    continue  # nothing to run: a classical baseline under a regularizer
                template = dataclasses.replace(expanded[0], split=ts.split)
                sname = sol.name + (str(j) if name_counts[sol.name] > 1 else "")
                rname = reg.kind + (str(k) if kind_counts[reg.kind] > 1 else "")
                out.append(Cell(_slug(f"{sname}-{rname}-{task.label}"), sol, reg, task, template,
                                {key: t.space[key] for key in cell_keys(t, reg)}, j, k))
    return out


def baseline_cell(cell: Cell, cells: list[Cell]) -> Optional[Cell]:
    """The ``none`` cell of the same solver and task (what lambda 0 scores), if the search has one."""
    if cell.reg.kind == "none":
        return None
    return next((c for c in cells if c.reg.kind == "none" and c.solver_index == cell.solver_index
                 and c.task.label == cell.task.label), None)


def experiment_name(variant: str, cell: Cell) -> str:
    """The folder of a (scheduler variant, cell) experiment under ``OUT/tune``."""
    return f"{variant}-{cell.slug}"


def trial_key(variant: str, cell_slug: str, tune_trial_id: str) -> str:
    """The ``trial_id`` a trial's rows carry in the store: ``<variant>.<cell>.<tune trial id>``."""
    return f"{variant}.{cell_slug}.{tune_trial_id}"


def fixed_key(cell: Cell) -> str:
    """The ``trial_id`` of a cell with nothing to search (evaluated once, without Tune)."""
    return f"fixed.{cell.slug}"
