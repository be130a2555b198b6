"""Labelled image grids: the report's qualitative figures and ``equibench solve``'s ``solve.png``.

One drawer for both, so a grid from ``solve`` reads like one in a report: a column per method
(titled ground truth, naive inverse, baseline, EquiReg ...), a row per image (labelled on the left),
a note under each tile (its PSNR), "missing" where a tile has no image. Drawn on a
``matplotlib.figure.Figure`` with no pyplot state.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def to_display(arr) -> tuple[np.ndarray, str | None]:
    """(C,H,W) in [-1, 1] as an image for imshow: RGB or gray in [0, 1]; other channel counts
    (PDE fields) show channel 0 scaled to its own range."""
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.shape[0] == 3:
        return np.clip((a.transpose(1, 2, 0) + 1) / 2, 0, 1), None
    if a.shape[0] == 1:
        return np.clip((a[0] + 1) / 2, 0, 1), "gray"
    ch = a[0]
    lo, hi = float(ch.min()), float(ch.max())
    return (ch - lo) / (hi - lo if hi > lo else 1.0), "viridis"


def draw(cells: Sequence[Sequence], titles: Sequence[str], notes: Sequence[Sequence[str | None]] | None = None,
         row_labels: Sequence[str] | None = None, suptitle: str | None = None, width: float = 1.9,
         height: float = 2.1) -> Figure:
    """A figure of ``cells[i][j]`` ((C,H,W) arrays in [-1, 1], or None: "missing"), column ``j``
    titled ``titles[j]``, row ``i`` labelled ``row_labels[i]``, ``notes[i][j]`` under each tile."""
    nrows, ncols = len(cells), len(titles)
    if nrows == 0 or ncols == 0:
        raise ValueError("an image grid needs at least one row and one column")
    if any(len(row) != ncols for row in cells):
        raise ValueError(f"every row of the grid needs {ncols} cells, one per title")
    # constrained layout keeps each row's notes clear of the next row (tight_layout lets the
    # aspect-locked image axes overlap them)
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, row in enumerate(cells):
        for j, arr in enumerate(row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if arr is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            else:
                img, cmap = to_display(arr)
                ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            note = notes[i][j] if notes is not None else None
            if note:
                ax.set_xlabel(note, fontsize=8)
            if i == 0:
                ax.set_title(titles[j], fontsize=8)
            if j == 0 and row_labels is not None:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return fig


def save_png(fig: Figure, path: Path, dpi: int = 100) -> Path:
    """Write ``fig`` to ``path`` as a PNG (Agg canvas, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi)
    return path


def psnr_note(value) -> str | None:
    """``"23.41 dB"`` for a finite PSNR, None otherwise (no note under the tile)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return f"{v:.2f} dB" if np.isfinite(v) else None
