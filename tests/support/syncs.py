"""Counting host syncs on CPU: every way a tensor's value reaches Python, instrumented.

On CUDA each of these blocks the host until the device has caught up (``torch.cuda.set_sync_debug_mode``
flags them there); on CPU nothing blocks, so a CPU test counts the calls instead. ``count_syncs()``
patches ``Tensor.item / tolist / numpy / cpu / nonzero / __bool__ / __float__ / __int__ / __index__``
for the duration of a ``with`` block and records each call with the file and line that made it (the
innermost frame of our packages), so a failing test names it. Copies between host and device
(``.to``) cannot be told apart from no-ops on a CPU-only machine; ``benchmarks/gpu_bench.py`` counts
them for real under ``torch.cuda.set_sync_debug_mode`` when a GPU is there.

Two kinds of reads are kept apart, each with its reason: ``polls``, made by ``solvers/hostflag.py``
(on CUDA it reads a pinned host copy only after a non-blocking event query, tested on its own; on
CPU it reads directly), and ``host_state``, made inside ``torch.optim`` (AdamW's step counter: a host
tensor on CPU; ``solvers.resample`` makes the optimiser ``capturable`` on CUDA, keeping it on the device).
"""
from __future__ import annotations

import contextlib
import sys
from collections import Counter
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
_OURS = tuple(str(REPO / p) for p in ("solvers", "operators", "orchestrator"))
_HOSTFLAG = str(REPO / "solvers" / "hostflag.py")
_METHODS = ("item", "tolist", "numpy", "cpu", "nonzero", "__bool__", "__float__", "__int__", "__index__")


class SyncLog:
    def __init__(self):
        self.calls: Counter = Counter()
        self.polls: Counter = Counter()
        self.host_state: Counter = Counter()
        self.active = True

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def _site() -> tuple[str, bool]:
    """``(file:line of the innermost frame in our packages, whether torch.optim made the read)``."""
    f = sys._getframe(2)
    first, optim = None, False
    while f is not None:
        name = f.f_code.co_filename
        if first is None and name != __file__:
            first = f"{name}:{f.f_lineno}"
            optim = f"{Path('torch') / 'optim'}" in name
        if name.startswith(_OURS):
            return f"{Path(name).relative_to(REPO)}:{f.f_lineno}", optim
        f = f.f_back
    return first or "?", optim


@contextlib.contextmanager
def count_syncs():
    log = SyncLog()
    saved = {m: getattr(torch.Tensor, m) for m in _METHODS}

    def record():
        if not log.active:
            return
        log.active = False  # the bookkeeping itself must not count
        try:
            site, optim = _site()
            bucket = log.polls if site.startswith("solvers/hostflag.py") else log.host_state if optim else log.calls
            bucket[site] += 1
        finally:
            log.active = True

    def wrap(name):
        orig = saved[name]

        def patched(self, *a, **k):
            record()
            return orig(self, *a, **k)
        return patched

    try:
        for m in _METHODS:
            setattr(torch.Tensor, m, wrap(m))
        yield log
    finally:
        for m, fn in saved.items():
            setattr(torch.Tensor, m, fn)
