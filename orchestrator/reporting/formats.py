"""Tables as text: Markdown, LaTeX (booktabs), HTML or CSV, all from the same cells.

A metric cell reads ``mean ± half-width`` (style ``pm``) or ``mean (sd s; lo, hi)`` (style
``range``), then ``[delta (lo, hi)]`` and ``†`` when the delta's interval excludes 0. CSV keeps raw
numbers in separate columns (``<col>``, ``<col> lo``, ``<col> hi``, ``<col> std``, ``<col> delta``,
``<col> delta lo``, ``<col> delta hi``, ``<col> delta sig``), no bold and no rounding.
"""
from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from typing import Callable, Sequence

from orchestrator.reporting.labels import METRICS, format_number, format_ratio, lower_is_better
from orchestrator.reporting.model import DAGGER, Cell, Column, Row, Table

__all__ = ["FORMATS", "Format", "render", "render_markdown", "render_latex", "render_html", "render_csv", "latex_escape", "html_table"]


@dataclass(frozen=True)
class _Style:
    bold: Callable[[str], str]
    escape: Callable[[str], str]
    delta: Callable[[str], str]  # wraps "+0.50 (+0.10, +0.90)"


def _num(value: float, metric: str, signed: bool = False, unit: bool = True) -> str:
    text = format_number(value, metric, signed)
    return text + "%" if unit and METRICS[metric].percent else text


def _delta_text(cell: Cell, metric: str) -> str:
    """``+0.50 (+0.10, +0.90)``; deltas of percentages are in percentage points, no unit."""
    text = _num(cell.delta, metric, signed=True, unit=False)
    if cell.d_lo is not None and cell.d_hi is not None:
        text += f" ({_num(cell.d_lo, metric, True, False)}, {_num(cell.d_hi, metric, True, False)})"
    return text


def cell_text(cell: Cell, col: Column, table_style: str, st: _Style) -> str:
    role = col.role
    if role == "text":
        return st.escape(cell.text)
    if role == "ratio":
        return st.escape(format_ratio(cell.value) + cell.mark) if cell.value is not None else "-"
    if role == "delta":
        return "-" if cell.delta is None else st.escape(_delta_text(cell, col.metric)) + (st.escape(DAGGER) if cell.significant else "")
    if cell.value is None:
        return "-"
    m = col.metric
    value = _num(cell.value, m)
    text = st.bold(st.escape(value)) if cell.bold else st.escape(value)
    has_ci = cell.lo is not None and cell.hi is not None
    if table_style == "pm":
        if has_ci:
            text += st.escape(f" ± {_num((cell.hi - cell.lo) / 2, m)}")
    else:
        parts = ([f"sd {_num(cell.std, m)}"] if cell.std is not None else []) + ([f"{_num(cell.lo, m)}, {_num(cell.hi, m)}"] if has_ci else [])
        if parts:
            text += st.escape(" (" + "; ".join(parts) + ")")
    if cell.delta is not None:
        text += st.delta(st.escape(_delta_text(cell, m))) + (st.escape(DAGGER) if cell.significant else "")
    return text


def _texts(table: Table, st: _Style) -> list[list[str] | None]:
    """Row texts (None for group headers), repeated values of ``merge`` columns blanked."""
    previous: dict[int, str] = {}
    out: list[list[str] | None] = []
    for row in table.rows:
        if row.header is not None:
            previous = {}
            out.append(None)
            continue
        texts = [cell_text(c, col, table.style, st) for c, col in zip(row.cells, table.columns)]
        for j, col in enumerate(table.columns):
            if col.merge:
                if previous.get(j) == texts[j]:
                    texts[j] = ""
                else:
                    previous[j] = texts[j]
        out.append(texts)
    return out


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


_MD = _Style(lambda s: f"**{s}**", _md_escape, lambda s: f" [{s}]")


def _md_table(table: Table) -> list[str]:
    headers = [_md_escape(f"{c.group} {c.label}".strip() if c.group else c.label) for c in table.columns]
    body = [[f"*{_md_escape(row.header)}*"] + [""] * (len(headers) - 1) if t is None else t for row, t in zip(table.rows, _texts(table, _MD))]
    widths = [max([len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(headers)]
    right = [c.role != "text" for c in table.columns]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)) + "|"
    return [line(headers), sep] + [line(r) for r in body]


def render_markdown(tables: Sequence[Table]) -> str:
    """GitHub Markdown: a heading per section, the selection headline, a padded table, notes."""
    out: list[str] = []
    for table in tables:
        out += [f"### {table.title}", ""]
        if table.headline:
            out += [f"**{table.headline}**" if table.headline_bold else table.headline, ""]
        out += _md_table(table) + [""]
        out += [f"- {n}" for n in table.notes] + ([""] if table.notes else [])
    return "\n".join(out).rstrip("\n") + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}", "\\": r"\textbackslash{}", "λ": r"$\lambda$", "|": r"$|$", "±": r"$\pm$",
                  "†": r"$^\dagger$", "‡": r"$^\ddagger$", "°": r"$^\circ$", "Δ": r"$\Delta$", "<": r"$<$", ">": r"$>$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


_LATEX = _Style(lambda s: r"\textbf{" + s + "}", latex_escape, lambda s: r" {\scriptsize[" + s + "]}")


def _column_groups(columns: Sequence[Column]) -> list[tuple[str, int, int]]:
    """(group, first, last) runs of consecutive columns (0-based, inclusive)."""
    runs: list[tuple[str, int, int]] = []
    for j, c in enumerate(columns):
        if runs and runs[-1][0] == c.group and c.group:
            runs[-1] = (c.group, runs[-1][1], j)
        else:
            runs.append((c.group, j, j))
    return runs


def render_latex(tables: Sequence[Table]) -> str:
    """A booktabs ``table`` environment per section (needs ``\\usepackage{booktabs}``)."""
    out: list[str] = []
    for table in tables:
        cols = table.columns
        spec = "".join("l" if c.role == "text" else "r" for c in cols)
        out += [r"\begin{table}[t]", r"\centering", r"\caption{" + latex_escape(table.title) + "}"]
        if table.headline:
            text = latex_escape(table.headline)
            out += [r"{\small " + (r"\textbf{" + text + "}" if table.headline_bold else text) + r"}\par\smallskip"]
        out += [r"\begin{tabular}{" + spec + "}", r"\toprule"]
        runs = _column_groups(cols)
        if any(g for g, _, _ in runs):
            head, rules = [], []
            for g, a, b in runs:
                if g:
                    head.append(r"\multicolumn{" + str(b - a + 1) + "}{c}{" + latex_escape(g) + "}")
                    rules.append(r"\cmidrule(lr){" + f"{a + 1}-{b + 1}" + "}")
                else:
                    head += [""] * (b - a + 1)
            out += [" & ".join(head) + r" \\", " ".join(rules)]
        out += [" & ".join(latex_escape(c.label) for c in cols) + r" \\", r"\midrule"]
        for row, t in zip(table.rows, _texts(table, _LATEX)):
            out.append(r"\multicolumn{" + str(len(cols)) + "}{l}{\\textit{" + latex_escape(row.header) + r"}} \\" if t is None else " & ".join(t) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if table.notes:
            out += [r"\par\smallskip", r"{\footnotesize\raggedright"] + [latex_escape(note) + r"\par" for note in table.notes] + ["}"]
        out += [r"\end{table}", ""]
    return "\n".join(out)


_HTML = _Style(lambda s: f"<b>{s}</b>", html.escape, lambda s: f" <small>[{s}]</small>")


def _sort_value(cell: Cell, col: Column) -> str:
    """What a column sorts on in the browser: the raw number (as in the CSV), a text cell's text,
    '' when missing (sorted last)."""
    value = cell.text if col.role == "text" else cell.delta if col.role == "delta" else cell.value
    return "" if value is None else value if isinstance(value, str) else _csv_number(value)


def _first_order(col: Column) -> str:
    """A header's first sort direction in the browser: best first for numbers, A-Z for text."""
    return "asc" if col.role == "text" or (col.role in ("metric", "delta") and bool(col.metric) and lower_is_better(col.metric)) else "desc"


def _attrs(attrs: dict[str, str]) -> str:
    return "".join(f' {k}="{html.escape(str(v))}"' for k, v in attrs.items() if v not in (None, ""))


def html_table(table: Table, row_attrs: Callable[[Row], dict[str, str]] | None = None) -> list[str]:
    """One section as HTML lines: title, headline, a ``<table>`` with spanning column groups, notes.

    With ``row_attrs`` (the interactive report, ``reporting.html_report``) the same texts are marked
    up to be sorted and filtered in the browser: header cells carry ``data-col`` and, where they
    have them, ``data-metric`` / ``data-group``; body cells ``data-v``, the raw number they sort on;
    rows ``row_attrs(row)``; and a repeat of a merged column (blank in every format) keeps its text
    with ``class="rep"`` (shown only once the table is sorted)."""
    esc, rich, cols = html.escape, row_attrs is not None, table.columns
    out = [f"<h3>{esc(table.title)}</h3>"]
    if table.headline:
        out.append(f"<p><b>{esc(table.headline)}</b></p>" if table.headline_bold else f"<p>{esc(table.headline)}</p>")
    out += ['<table class="eb-table">' if rich else "<table>", "<thead>"]
    runs = _column_groups(cols)
    if any(g for g, _, _ in runs):
        out.append("<tr>" + "".join((f'<th colspan="{b - a + 1}"' + (_attrs({"class": "grp", "data-group": g, "data-first": a}) if rich else "")
                                     + f">{esc(g)}</th>") if g else "<th></th>" * (b - a + 1) for g, a, b in runs) + "</tr>")
    heads = [_attrs({"data-col": j, "data-metric": c.metric or "", "data-group": c.group, "data-kind": c.role, "data-order": _first_order(c)})
             if rich else "" for j, c in enumerate(cols)]
    out += ["<tr>" + "".join(f"<th{a}>{esc(c.label)}</th>" for a, c in zip(heads, cols)) + "</tr>", "</thead>", "<tbody>"]
    for row, t in zip(table.rows, _texts(table, _HTML)):
        if t is None:
            out.append(("<tr class=\"grp\">" if rich else "<tr>") + f'<td colspan="{len(cols)}"><i>{esc(row.header)}</i></td></tr>')
            continue
        tds = []
        for j, (x, c, cell) in enumerate(zip(t, cols, row.cells)):
            attrs = {"class": "" if c.role == "text" else "num"}
            if rich:
                if c.merge and x == "" and cell.text:
                    attrs["class"], x = "rep", esc(cell.text)
                attrs["data-v"] = _sort_value(cell, c)
            tds.append(f"<td{_attrs(attrs)}>{x}</td>")
        out.append(f"<tr{_attrs(row_attrs(row)) if rich else ''}>" + "".join(tds) + "</tr>")
    out += ["</tbody>", "</table>"]
    if table.notes:
        out += ["<ul>"] + [f"<li>{esc(n)}</li>" for n in table.notes] + ["</ul>"]
    return out


def render_html(tables: Sequence[Table]) -> str:
    """A standalone HTML page, a ``<table>`` per section with spanning task headers (the
    interactive one-file report over every layout is ``reporting.html_report``)."""
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>EquiBench report</title>',
           "<style>table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
           "td.num{text-align:right}th{text-align:center}small{color:#666}</style>", "</head><body>"]
    for table in tables:
        out += html_table(table)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _csv_number(value: float | None) -> str:
    return "" if value is None else format(float(value), ".10g")


def _csv_fields(table: Table, j: int, name: str) -> list[tuple[str, Callable[[Cell], str]]]:
    """(header, getter) pairs of column ``j`` that any row fills."""
    col = table.columns[j]
    cells = [r.cells[j] for r in table.rows if r.header is None]
    role = col.role
    if role == "text":
        return [(name, lambda c: c.text)]
    if role == "ratio":
        return [(name, lambda c: _csv_number(c.value))] + ([(f"{name} source", lambda c: "influence_obj" if c.mark else ("influence_grad" if c.value is not None else ""))]
                                                          if any(c.mark for c in cells) else [])
    fields: list[tuple[str, Callable[[Cell], str]]] = []
    if role == "metric":
        fields.append((name, lambda c: _csv_number(c.value)))
        if any(c.lo is not None for c in cells):
            fields += [(f"{name} lo", lambda c: _csv_number(c.lo)), (f"{name} hi", lambda c: _csv_number(c.hi))]
        if any(c.std is not None for c in cells):
            fields.append((f"{name} std", lambda c: _csv_number(c.std)))
    prefix = f"{name} delta" if role == "metric" else name
    if any(c.delta is not None for c in cells):
        fields.append((prefix, lambda c: _csv_number(c.delta)))
        if any(c.d_lo is not None for c in cells):
            fields += [(f"{prefix} lo", lambda c: _csv_number(c.d_lo)), (f"{prefix} hi", lambda c: _csv_number(c.d_hi)),
                       (f"{prefix} sig", lambda c: "" if c.d_lo is None else str(int(c.significant)))]
    return fields


def render_csv(tables: Sequence[Table]) -> str:
    """Machine-readable: one line per table row with raw numbers, the section, how its configs
    were selected and the row group as columns."""
    fields: list[str] = ["section", "selection", "group"]
    records: list[dict] = []
    for table in tables:
        group = ""
        names = [c.key or f"{c.group} {c.label}".strip() for c in table.columns]
        getters = [_csv_fields(table, j, name) for j, name in enumerate(names)]
        for per_col in getters:
            fields += [f for f, _ in per_col if f not in fields]
        for row in table.rows:
            if row.header is not None:
                group = row.header
                continue
            rec = {"section": table.title, "selection": table.selection, "group": group}
            for cell, per_col in zip(row.cells, getters):
                rec.update({f: get(cell) for f, get in per_col})
            records.append(rec)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", restval="")
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue()


@dataclass(frozen=True)
class Format:
    render: Callable[[Sequence[Table]], str]
    extension: str


FORMATS: dict[str, Format] = {
    "md": Format(render_markdown, "md"),
    "latex": Format(render_latex, "tex"),
    "html": Format(render_html, "html"),
    "csv": Format(render_csv, "csv"),
}


def render(tables: Sequence[Table], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; allowed: {sorted(FORMATS)}")
    return FORMATS[fmt].render(tables)
