"""Layouts: how one section (dataset, noise level) becomes a table.

* ``tasks-by-method`` (Table 1) and ``mean-std`` (Table 7): rows task x method, columns lambda,
  influence, the metrics, the delta to the best classical baseline, n and clusters.
* ``methods-by-tasks`` (Tables 2-3) and ``pde`` (Table 4): rows methods grouped by family/space,
  a column group per task.

Every Equi/EquiCon cell carries its paired delta to the base solver's selected row (same solver,
regularizer none, same task, sigma_y and steps) with its interval; every mean its interval; the
best value per column is bold (ties at display precision all bold).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Hashable, Mapping, Sequence

from orchestrator.reporting.evidence import finite
from orchestrator.reporting.labels import (GROUP_LABELS, METRICS, NAIVE_LABEL, format_number,
                                           format_setting, is_pde, lower_is_better, method_label, method_sort_key, num,
                                           pde_parts, solver_family, solver_group, task_kind, task_label, task_sort_key)
from orchestrator.reporting.model import DDAGGER, OBJ_MARK, Cell, Column, Row, Section, Table
from orchestrator.reporting.notes import section_notes
from orchestrator.reporting.selection import VARIANT_KEYS

__all__ = ["Layout", "LAYOUTS"]


def _interval_cell(value, std, iv, delta=None) -> Cell:
    lo, hi = (iv.lo, iv.hi) if iv is not None and iv.defined else (None, None)
    d_est, d_lo, d_hi = None, None, None
    if delta is not None:
        d_est = delta if isinstance(delta, float) else delta.estimate
        if not isinstance(delta, float) and delta.defined:
            d_lo, d_hi = delta.lo, delta.hi
    return Cell(value=value, std=std, lo=lo, hi=hi, delta=d_est, d_lo=d_lo, d_hi=d_hi)


def _method_cells(section: Section, rec: Mapping, base: Mapping | None, with_std: bool) -> list[Cell]:
    ev = section.evidence
    cells = []
    for m in section.metrics:
        value = finite(rec.get(f"mean:{m}"))
        std = finite(rec.get(f"std:{m}")) if with_std else None
        iv = ev.mean(rec["config_id"], m) if value is not None else None
        delta = None
        if base is not None and value is not None:
            if METRICS[m].source == "image":
                delta = ev.delta(rec["config_id"], base["config_id"], m)
            elif finite(base.get(f"mean:{m}")) is not None:  # a set metric: a difference, no interval
                delta = value - float(base[f"mean:{m}"])
        cells.append(_interval_cell(value, std, iv, delta))
    return cells


def _naive_cells(naive: tuple | None, metrics: Sequence[str], with_std: bool) -> list[Cell]:
    cells = []
    for m in metrics:
        if m == "psnr" and naive is not None and finite(naive[0]) is not None:
            cells.append(_interval_cell(float(naive[0]), finite(naive[1]) if with_std else None, naive[3]))
        else:
            cells.append(Cell())
    return cells


def _influence_cell(section: Section, rec: Mapping | None) -> Cell:
    if rec is None or rec["regularizer"] == "none":
        return Cell()
    value, kind = section.evidence.influence(rec["config_id"])
    return Cell(value=value, mark=OBJ_MARK if kind == "obj" else "") if value is not None else Cell()


def _classical_cell(section: Section, rec: Mapping) -> Cell:
    best = section.classical.get(rec["task"])
    if best is None or solver_family(rec["solver"]) == "classical":
        return Cell()
    return _interval_cell(None, None, None, section.evidence.delta(rec["config_id"], best["config_id"], section.primary, per_image=True))


def row_key(rec: Mapping, rule: str) -> tuple:
    variant = tuple(format_setting(rec.get(k)) for k in VARIANT_KEYS) if rule == "all" else ()
    return (rec["solver"], rec["regularizer"], num(rec["num_steps"]), variant)


def _method_order(section: Section) -> list[tuple]:
    keys = {row_key(r, section.rule): r for r in section.records}
    return sorted(keys, key=lambda k: (method_sort_key(k[0], k[1], k[2]), k[3]))


def row_labels(section: Section, steps_column: bool = False, lam_column: bool = False) -> dict[tuple, str]:
    """Row key -> label: ``Equi-DPS``, ``(N steps)`` when a method ran at several step counts,
    under rule ``all`` the hyperparameters that vary for the method, and ``‡`` for rows run with
    per-config solver noise."""
    steps: dict[tuple, set] = {}
    tuned: dict[tuple, set] = {}
    for r in section.records:
        steps.setdefault((r["solver"], r["regularizer"]), set()).add(num(r["num_steps"]))
        tuned.setdefault(row_key(r, "best"), set()).update(k for k in str(r.get("tuned") or "").split(",") if k)
    out = {}
    for r in section.records:
        label = method_label(r["solver"], r["regularizer"])
        if solver_family(r["solver"]) != "classical" and r.get("solver_noise") != "shared":
            label += DDAGGER
        if not steps_column and len(steps[(r["solver"], r["regularizer"])]) > 1:
            label += f" ({format_setting(r['num_steps'])} steps)"
        shown = [k for k in VARIANT_KEYS if k in tuned[row_key(r, "best")] and not (lam_column and k == "lam")]
        if section.rule == "all" and shown:
            label += " (" + ", ".join(f"{k}={format_setting(r.get(k))}" for k in shown) + ")"
        out[row_key(r, section.rule)] = label
    return out


def base_for(section: Section, rec: Mapping | None) -> Mapping | None:
    if rec is None or rec["regularizer"] == "none":
        return None
    return section.base.get((rec["task"], rec["solver"], num(rec["num_steps"])))


def _has_influence(section: Section) -> bool:
    return any(r["regularizer"] != "none" and section.evidence.influence(r["config_id"])[0] is not None for r in section.records)


def _mark_bold(table: Table) -> Table:
    """Bold the best displayed value per metric column within each row's ``bold_group``; values
    compare as shown (rounded); a group with one value, or only ties, has no best."""
    rows = list(table.rows)
    for j, col in enumerate(table.columns):
        if col.role != "metric":
            continue
        groups: dict[Hashable, list[tuple[int, float]]] = {}
        for i, row in enumerate(rows):
            if row.header is None and row.cells[j].value is not None:
                groups.setdefault(row.bold_group, []).append((i, float(format_number(row.cells[j].value, col.metric))))
        for members in groups.values():
            values = [v for _, v in members]
            if len(set(values)) < 2:
                continue
            best = min(values) if lower_is_better(col.metric) else max(values)
            for i, v in members:
                if v == best:
                    cells = list(rows[i].cells)
                    cells[j] = replace(cells[j], bold=True)
                    rows[i] = replace(rows[i], cells=tuple(cells))
    return replace(table, rows=tuple(rows))


def _finish(section: Section, columns, rows, labels, lam_column: bool, bold_scope: str, style: str) -> Table:
    notes, headline, bold, warnings = section_notes(section, labels, lam_column, bold_scope, style, row_key)
    selection = section.selected_on or ("same images" if section.chosen_here else "")
    table = Table(section.title, tuple(columns), tuple(rows), notes, headline, bold, style, selection, warnings)
    return _mark_bold(table)


def _per_task_table(section: Section, with_std: bool) -> Table:
    """Rows task x method (Table 1; with ``with_std`` Table 7's ``mean (sd; lo, hi)``)."""
    metrics = section.metrics
    infl = _has_influence(section)
    vs_classical = bool(section.classical) and any(solver_family(r["solver"]) != "classical" for r in section.records)
    columns = [Column("Task", merge=True), Column("Method"), Column("λ", key="lam")]
    columns += [Column("infl.", key="infl", kind="ratio")] if infl else []
    columns += [Column(METRICS[m].label, m) for m in metrics]
    columns += [Column("vs classical", section.primary, key="vs_classical", kind="delta")] if vs_classical else []
    columns += [Column("n"), Column("cl.", key="clusters")]
    labels = row_labels(section, lam_column=True)
    by_task: dict[str, dict[tuple, dict]] = {}
    for r in section.records:
        by_task.setdefault(r["task"], {})[row_key(r, section.rule)] = r
    rows: list[Row] = []
    kinds = {task_kind(t, next(iter(by_task[t].values())).get("operator")) for t in by_task}
    kind = None
    for task in sorted(by_task, key=task_sort_key):
        this_kind = task_kind(task, next(iter(by_task[task].values())).get("operator"))
        if len(kinds) > 1 and this_kind != kind:
            kind = this_kind
            rows.append(Row(header=kind))
        for key in _method_order(section):
            rec = by_task[task].get(key)
            if rec is None:
                continue
            lam = format_setting(rec["lam"]) if rec["regularizer"] != "none" else "-"
            cells = [Cell(task_label(task)), Cell(labels[key]), Cell(lam)] + ([_influence_cell(section, rec)] if infl else [])
            cells += _method_cells(section, rec, base_for(section, rec), with_std)
            cells += [_classical_cell(section, rec)] if vs_classical else []
            n_img, n_cl = section.evidence.counts(rec["config_id"])
            cells += [Cell(str(int(rec["n_ok"]))), Cell(str(n_cl) if n_img else "-")]
            rows.append(Row(tuple(cells), bold_group=task))
        if task in section.naive:
            naive = section.naive[task]
            cells = [Cell(task_label(task)), Cell(NAIVE_LABEL), Cell("-")] + ([Cell()] if infl else [])
            cells += _naive_cells(naive, metrics, with_std) + ([Cell()] if vs_classical else [])
            cells += [Cell(str(naive[2])), Cell(str(naive[3].n_clusters))]
            rows.append(Row(tuple(cells), bold_group=task))
    return _finish(section, columns, rows, labels, True, "per task and column", "range" if with_std else "pm")


def _grouped_by_task(section: Section, space_groups: bool, steps_column: bool, task_group: Callable[[str, str], tuple[str, str]]) -> Table:
    """Rows methods, column groups per task (Tables 2-4); ``task_group(task, metric)`` names a
    column's (group, label)."""
    metrics = section.metrics
    infl = _has_influence(section)
    tasks = sorted(set(section.rows["task"]), key=task_sort_key)
    columns = [Column("Method")] + ([Column("Steps")] if steps_column else [])
    for task in tasks:
        for m in metrics:
            group, label = task_group(task, m)
            columns.append(Column(label, m, group))
        if infl:
            columns.append(Column("infl.", group=task_group(task, metrics[0])[0], key=f"{task_label(task)} infl", kind="ratio"))
    labels = row_labels(section, steps_column=steps_column)
    cells_of: dict[tuple, dict[str, dict]] = {}
    for r in section.records:
        cells_of.setdefault(row_key(r, section.rule), {})[r["task"]] = r
    rows: list[Row] = []
    group = None
    for key in _method_order(section):
        this = solver_group(key[0])
        if space_groups and this != group:
            group = this
            rows.append(Row(header=GROUP_LABELS[group]))
        cells = [Cell(labels[key])] + ([Cell(format_setting(key[2]))] if steps_column else [])
        for task in tasks:
            rec = cells_of[key].get(task)
            cells += _method_cells(section, rec, base_for(section, rec), False) if rec else [Cell() for _ in metrics]
            cells += [_influence_cell(section, rec)] if infl else []
        rows.append(Row(tuple(cells)))
    if section.naive:
        if space_groups:
            rows.append(Row(header="Reference"))
        cells = [Cell(NAIVE_LABEL)] + ([Cell("-")] if steps_column else [])
        for task in tasks:
            cells += _naive_cells(section.naive.get(task), metrics, False) + ([Cell()] if infl else [])
        rows.append(Row(tuple(cells)))
    return _finish(section, columns, rows, labels, False, "per column", "pm")


def _image_task_group(task: str, metric: str) -> tuple[str, str]:
    return task_label(task), METRICS[metric].label


def _pde_task_group(task: str, metric: str) -> tuple[str, str]:
    problem, direction = pde_parts(task)
    return problem, (direction or METRICS[metric].label) if metric == "rel_l2" else f"{direction} {METRICS[metric].label}".strip()


@dataclass(frozen=True)
class Layout:
    """A table layout: how one section becomes a table, and its defaults."""

    build: Callable[[Section], Table]
    metrics: tuple[str, ...]
    primary: str
    sections: tuple[str, ...]  # columns that split the data into separate tables
    tasks: Callable[[str], bool]
    naive: bool  # whether the naive inverse's row is meaningful here
    description: str
    #: the store part the tables come from: ``results`` (a ``Section`` per dataset and noise level) or
    #: ``posterior`` (``reporting.calibration`` builds the tables from the posterior rows; ``build`` unused)
    source: str = "results"


def _from_posterior(section: Section) -> Table:
    raise ValueError("the calibration layout is built from the store's posterior rows (reporting.calibration), not a Section")


LAYOUTS: dict[str, Layout] = {
    "tasks-by-method": Layout(lambda s: _per_task_table(s, False), ("lpips", "fid", "psnr", "ssim"), "psnr", ("dataset", "sigma_y"),
                              lambda t: not is_pde(t), True, "Table 1: rows task x method, columns LPIPS, FID, PSNR, SSIM"),
    "methods-by-tasks": Layout(lambda s: _grouped_by_task(s, True, False, _image_task_group), ("lpips", "fid", "psnr", "ssim"), "psnr",
                               ("dataset", "sigma_y"), lambda t: not is_pde(t), True, "Tables 2-3: rows methods (latent / pixel / classical), column groups per task"),
    "mean-std": Layout(lambda s: _per_task_table(s, True), ("lpips", "psnr", "ssim"), "psnr", ("dataset", "sigma_y"),
                       lambda t: not is_pde(t), True, "Table 7: mean (sd; 95% interval) per task x method"),
    "pde": Layout(lambda s: _grouped_by_task(s, False, True, _pde_task_group), ("rel_l2",), "rel_l2", ("sigma_y",), is_pde, False,
                  "Table 4: relative L2 per PDE forward / inverse problem"),
    "calibration": Layout(_from_posterior, ("sw", "sw_floor", "sw_ratio", "mean_err", "std_ratio", "mode_tv", "cov50", "cov90",
                                            "mmse_gap"), "sw", ("dataset", "sigma_y"), lambda t: True, False,
                          "posterior calibration per solver x regularizer x step x task: SW vs its floor, coverage, "
                          "mean error, std ratio, mode TV, MMSE gap (exact-posterior datasets)", source="posterior"),
}
