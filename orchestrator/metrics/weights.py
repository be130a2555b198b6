"""Where a metric's network weights file is looked for (never downloaded, never faked).

Each file is looked up, in order: the explicit path given to ``Metrics`` (a missing explicit path
is an error), ``$EQUIBENCH_WEIGHTS/<file>``, ``$TORCH_HOME/hub/checkpoints/<file>`` (torch's hub
cache, where torchvision/torch-fidelity would have put a download). When no file is found the
metrics needing it are ``None`` and ONE ``MissingWeightsWarning`` per ``Metrics`` object and file
names the file and the places searched (``missing_weights_message``). A file that is present but
does not fit its network raises ``ValueError`` (the loaders).
"""
from __future__ import annotations

import os
from pathlib import Path

WEIGHTS_ENV = "EQUIBENCH_WEIGHTS"


class MissingWeightsWarning(UserWarning):
    """A metric's network weights file is not on this machine; the metric is reported as null."""


def weight_search_paths(filename: str) -> list[Path]:
    """Where ``filename`` is looked for when no explicit path is given, in order."""
    import torch

    paths = []
    if os.environ.get(WEIGHTS_ENV):
        paths.append(Path(os.environ[WEIGHTS_ENV]).expanduser() / filename)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    return paths


def find_weights(filename: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The weights file to use, or ``None`` when absent; an explicit path must exist."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise FileNotFoundError(f"weights file not found: {p} (expected {filename})")
        return p
    return next((p for p in weight_search_paths(filename) if p.is_file()), None)


def missing_weights_message(label: str, filename: str) -> str:
    """The warning's text for metrics ``label`` whose weights file ``filename`` was not found."""
    searched = ", ".join(str(p) for p in weight_search_paths(filename))
    return (f"{label} is reported as null: its weights file {filename} was not found (searched {searched}; set "
            f"${WEIGHTS_ENV} to a folder holding it, or pass the path explicitly). Nothing is downloaded or substituted.")
