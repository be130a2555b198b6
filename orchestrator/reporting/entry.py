"""Entry points: a store in, report text or files out; table warnings printed once on stderr."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from orchestrator import figures, store
from orchestrator.reporting.build import build_tables
from orchestrator.reporting.formats import FORMATS, render, render_markdown
from orchestrator.reporting.layouts import LAYOUTS
from orchestrator.reporting.model import ReportOptions, Table

__all__ = ["load_store", "make_report", "write_report", "print_comparison", "write_demo_report", "emit_warnings", "COMPARISON_METRICS"]

#: warnings already printed by this process (each is printed once)
_EMITTED: set[str] = set()


def emit_warnings(tables: Iterable[Table], stream=None) -> list[str]:
    """Print each table warning (inert / dominant lambda) on stderr, once per process; returns the
    ones printed now."""
    stream = stream or sys.stderr
    new = []
    for table in tables:
        for w in table.warnings:
            if w not in _EMITTED:
                _EMITTED.add(w)
                new.append(w)
                print(f"equibench report: warning: {w}", file=stream)
    return new


def load_store(store_dir, runs: Sequence[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(results, sets) of the store, optionally only ``runs``; a missing store is an error."""
    if not Path(store_dir).is_dir():
        raise FileNotFoundError(f"no store at {store_dir}")
    run = list(runs) if runs else None
    results = store.load(store_dir, run=run)
    if results.empty:
        known = store.list_runs(store_dir)
        raise ValueError(f"no result rows in {store_dir}" + (f" for runs {sorted(run)}" if run else "") + f"; runs in the store: {known or 'none'}")
    return results, store.load_sets(store_dir, run=run)


def _check_formats(formats: Iterable[str]) -> None:
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(FORMATS)}")


def make_report(results: pd.DataFrame, sets: pd.DataFrame | None, layout: str, fmt: str, options: ReportOptions = ReportOptions()) -> str:
    """One layout in one format, as text."""
    _check_formats([fmt])
    tables = build_tables(results, sets, layout, options)
    if not tables:
        raise ValueError(f"no rows for layout {layout!r} ({LAYOUTS[layout].description}) after filters")
    emit_warnings(tables)
    return render(tables, fmt)


def write_report(results: pd.DataFrame, sets: pd.DataFrame | None, out_dir, layouts: Iterable[str], formats: Iterable[str],
                 options: ReportOptions = ReportOptions(), posterior: pd.DataFrame | None = None) -> list[Path]:
    """Write ``<out>/<layout>.<ext>`` for every layout x format; returns the paths. A layout with no
    rows (``pde`` on an image-only store, ``calibration`` without ``posterior`` rows) is skipped; no
    rows for any layout is an error."""
    layouts, formats = list(layouts), list(formats)
    _check_formats(formats)
    built = {layout: build_tables(results, sets, layout, options, posterior) for layout in layouts}
    if not any(built.values()):
        raise ValueError(f"no rows for layouts {layouts} after filters")
    emit_warnings(t for tables in built.values() for t in tables)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for layout, tables in built.items():
        for fmt in formats if tables else []:
            path = out / f"{layout}.{FORMATS[fmt].extension}"
            path.write_text(render(tables, fmt), encoding="utf-8")
            paths.append(path)
    return paths


#: The demo's comparison columns: quality, then cost.
COMPARISON_METRICS = ("psnr", "ssim", "lpips", "wall_s")


def print_comparison(df: pd.DataFrame, sets: pd.DataFrame | None = None, options: ReportOptions = ReportOptions()) -> str:
    """A compact Markdown table of PSNR/SSIM/LPIPS/seconds per image per task x method (best
    lambda per method by PSNR), with paired deltas against the base solver; ``make demo`` prints it."""
    tables = build_tables(df, sets, "tasks-by-method", dataclasses.replace(options, metrics=COMPARISON_METRICS))
    if not tables:
        return "(no image-task rows to compare)\n"
    emit_warnings(tables)
    return render_markdown(tables)


def write_demo_report(store_dir, out_dir, runs: Sequence[str] | None = None, options: ReportOptions = ReportOptions()) -> Path:
    """Write ``<out_dir>/demo.md`` (comparison, Table-2 and Table-7 layouts, figure links) and
    every figure under ``<out_dir>/figures``; returns the Markdown file's path."""
    results, sets = load_store(store_dir, runs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig_paths = figures.write_figures(results, store_dir, out / "figures")
    runs = sorted(set(results["run_id"].dropna().astype(str)))
    layouts = {name: build_tables(results, sets, name, options) for name in ("methods-by-tasks", "mean-std")}
    emit_warnings(t for tables in layouts.values() for t in tables)
    lines = [
        "# EquiBench demo report", "",
        f"Runs: {', '.join(runs)}. Rows: {len(results)} images ({int((results['status'] == 'ok').sum())} ok).", "",
        "## Comparison", "", print_comparison(results, sets, options).rstrip("\n"), "",
        "## Table 2 layout (methods x tasks)", "", render_markdown(layouts["methods-by-tasks"]).rstrip("\n"), "",
        "## Table 7 layout (mean (sd; 95% interval))", "", render_markdown(layouts["mean-std"]).rstrip("\n"), "",
        "## Figures", "",
    ]
    for path in sorted(p for p in fig_paths if p.suffix == ".png"):
        lines += [f"![{path.stem}]({path.relative_to(out).as_posix()})", ""]
    md = out / "demo.md"
    md.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    return md
