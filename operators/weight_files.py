"""Weight files of the learned operators: a cache key that names a missing file, freezing, atomic saves."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn


def file_key(path: str | os.PathLike | None, what: str) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)``; ``FileNotFoundError`` naming the file when missing."""
    if path is None:
        raise FileNotFoundError(f"{what}: no weights file given (pass weights=<path>)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what}: weights file not found: {p}")
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def freeze(net: nn.Module) -> nn.Module:
    net.eval()
    net.requires_grad_(False)
    return net


def atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
