"""Paper-style tables from the results store: aggregate, select, measure, lay out, format.

The pipeline lives in ``orchestrator/reporting/`` (one job per module); this module is its public
face, so ``from orchestrator import report`` keeps working:

1. ``summarize(results, sets)`` (``reporting.summary``): one row per setting (a config up to its
   seed; seeds pool). Means and standard deviations over the images with status ok; diverged and
   failed images are counted, never averaged; FID/KID from the sets table.
2. ``select(summary, rule, primary)`` (``reporting.selection``): one row per method (solver,
   regularizer, steps) and task, the config with the best mean primary metric (rule ``best``) or
   every config (``all``). ``ReportOptions(select_on="embedded/tune", report_on=("embedded/report",))``
   picks on one split and reports on another; a table that selects on the images it reports says
   so in bold.
3. Evidence (``reporting.evidence`` over ``orchestrator.stats``): every mean carries a 95% cluster
   bootstrap interval; every delta (Equi/EquiCon against the same solver's selected baseline,
   diffusion against the best classical baseline) is a paired per-image difference with its
   interval, marked ``†`` when the interval excludes 0; tables state images and clusters, label
   rows run with unpaired solver noise (``‡``), and show the lambda influence (``infl.``) with
   inert / dominant warnings (also printed once on stderr).
4. A layout (``LAYOUTS``) turns one section (dataset, noise level) into a ``Table``; a format
   (``FORMATS``) renders tables as Markdown, LaTeX (booktabs), HTML or CSV.

Output is deterministic: rows and columns are sorted, floats have fixed decimals, the bootstrap
has a fixed seed, and nothing depends on the clock, so the same store renders byte-identical text.
"""
from __future__ import annotations

from orchestrator.reporting.build import build_tables
from orchestrator.reporting.entry import (COMPARISON_METRICS, emit_warnings, load_store, make_report, print_comparison,
                                          write_demo_report, write_report)
from orchestrator.reporting.formats import FORMATS, latex_escape, render, render_csv, render_html, render_latex, render_markdown
from orchestrator.reporting.labels import (INFLUENCE_COLUMNS, METRICS, NAIVE_LABEL, PDE_PREFIX, Metric, format_number, format_setting,
                                           lower_is_better, method_label, method_sort_key, pde_parts, solver_family, solver_group,
                                           solver_label, task_kind, task_label, task_sort_key)
from orchestrator.reporting.layouts import LAYOUTS, Layout
from orchestrator.reporting.model import Cell, Column, ReportOptions, Row, Section, Table
from orchestrator.reporting.selection import METHOD_KEYS, SELECTIONS, VARIANT_KEYS, section_mask, select, select_across
from orchestrator.reporting.summary import CONFIG_ATTRS, prepare_results, summarize

__all__ = [
    # the pipeline
    "prepare_results", "summarize", "select", "select_across", "section_mask", "build_tables", "render", "make_report",
    "write_report", "print_comparison", "write_demo_report", "load_store", "emit_warnings",
    # registries and table objects
    "METRICS", "Metric", "LAYOUTS", "Layout", "FORMATS", "SELECTIONS", "Column", "Cell", "Row", "Table", "ReportOptions",
    "Section", "METHOD_KEYS", "VARIANT_KEYS", "CONFIG_ATTRS", "INFLUENCE_COLUMNS", "COMPARISON_METRICS", "NAIVE_LABEL",
    "PDE_PREFIX",
    # labels (derived from the solver / operator registries) and numbers
    "method_label", "task_label", "solver_label", "solver_family", "solver_group", "task_kind", "method_sort_key",
    "task_sort_key", "pde_parts", "format_setting", "format_number", "lower_is_better",
    # formats
    "render_markdown", "render_latex", "render_html", "render_csv", "latex_escape",
]
