"""The objects between the data and the text: options, a section's data, and a table.

A layout turns a ``Section`` (one dataset and noise level, everything selected) into a ``Table``
of ``Column``s and ``Row``s of ``Cell``s; a format renders tables as text. Cells keep raw numbers
(means, intervals, deltas) so every format shows the same values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

import pandas as pd

from orchestrator import stats

__all__ = ["Column", "Cell", "Row", "Table", "ReportOptions", "Section", "DAGGER", "DDAGGER", "OBJ_MARK"]

#: a delta whose 95% interval excludes 0
DAGGER = "†"
#: a row run with per-config (unpaired) solver noise
DDAGGER = "‡"
#: an influence value that is the objective ratio (influence_obj), not the gradient ratio
OBJ_MARK = "°"


@dataclass(frozen=True)
class Column:
    """A table column. ``kind``: ``text``; ``metric`` (a mean with its interval and delta);
    ``ratio`` (an influence value); ``delta`` (a difference with its interval, e.g. vs the best
    classical baseline). ``metric`` names the metric whose precision numbers use."""

    label: str
    metric: str | None = None
    group: str = ""
    merge: bool = False  # blank repeated values in consecutive rows (task names in Table 1)
    key: str = ""  # the CSV header, when the label is not machine-friendly
    kind: str = ""  # default: "metric" when ``metric`` is given, else "text"

    @property
    def role(self) -> str:
        return self.kind or ("metric" if self.metric else "text")


@dataclass(frozen=True)
class Cell:
    text: str = ""
    value: float | None = None
    std: float | None = None
    lo: float | None = None  # the mean's interval
    hi: float | None = None
    delta: float | None = None
    d_lo: float | None = None  # the delta's interval
    d_hi: float | None = None
    bold: bool = False
    mark: str = ""  # a marker after the value (OBJ_MARK on influence)

    @property
    def significant(self) -> bool:
        """The delta's interval excludes 0."""
        return self.d_lo is not None and self.d_hi is not None and (self.d_lo > 0 or self.d_hi < 0)


@dataclass(frozen=True)
class Row:
    cells: tuple[Cell, ...] = ()
    header: str | None = None  # a group row spanning the table ("Latent", "Linear")
    bold_group: Hashable = None  # rows compared for bold marks


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()
    headline: str = ""  # a statement under the title (how configs were selected)
    headline_bold: bool = False  # selected on the images it reports: said in bold
    style: str = "pm"  # means as "mean ± half width" ("pm") or "mean (sd s; lo, hi)" ("range")
    selection: str = ""  # for CSV: "same images", the selection split, or ""
    warnings: tuple[str, ...] = ()  # also printed once on stderr by the entry points


@dataclass(frozen=True)
class ReportOptions:
    """What the user chose; ``None`` means the layout's default."""

    metrics: tuple[str, ...] | None = None
    select: str = "best"
    select_by: str | None = None
    baseline_only: tuple[str, ...] = ()
    naive: bool = True
    tasks: tuple[str, ...] | None = None
    solvers: tuple[str, ...] | None = None
    select_on: str | None = None  # a dataset ("embedded/tune") whose rows pick each method's config
    report_on: tuple[str, ...] | None = None  # datasets the tables show (default: all but select_on)
    n_resamples: int = stats.N_RESAMPLES
    ci_seed: int = stats.SEED
    level: float = stats.LEVEL


@dataclass
class Section:
    """One section's data handed to a layout: everything already selected."""

    title: str
    summary: pd.DataFrame  # every config of the section
    rows: pd.DataFrame  # the selected rows
    base: dict  # (task, solver, num_steps) -> the base solver's selected row
    naive: dict  # task -> (mean, std, n, Interval) of the naive inverse's PSNR
    metrics: tuple[str, ...]
    primary: str
    rule: str
    records: list[dict]  # ``rows`` as dicts, converted once
    evidence: object = None  # evidence.Evidence: intervals and influence per setting
    classical: dict = field(default_factory=dict)  # task -> the best classical row
    selected_on: str | None = None  # the selection split, or None (these images)
    chosen_here: bool = False  # some config was chosen among several on these images
    extra_notes: tuple[str, ...] = ()
