"""A device-side "all rows stopped" flag the host reads without waiting for the device.

An optimiser loop that stops early when every row has converged (ReSample's per-row AdamW) must
learn that on the host, and ``bool(flag.any())`` on a CUDA tensor blocks the host until the device
has caught up: a host sync per iteration. ``StopFlag`` instead copies the flag into pinned host
memory with ``non_blocking=True`` and records a CUDA event behind the copy; ``done()`` reads the
host copy only once that event has completed (``event.query()``, which never blocks) and otherwise
posts nothing new and says "not yet". A stopped row never moves again (the loop masks it), so the
flag is monotone: the host learns about the stop a few iterations late and the extra iterations
change nothing in the result.

On a CPU device there is no queue to wait for: the flag is read directly (what the sync-counting
test, ``tests/test_gpu_sync.py``, reports separately as this module's reads).
"""
from __future__ import annotations

import torch

__all__ = ["StopFlag"]


class StopFlag:
    """``post(all_stopped)`` each iteration (a 0-dim bool tensor), ``done()`` -> bool, never blocking on CUDA.

    ``event_factory`` (tests): builds the event a CUDA flag records; default ``torch.cuda.Event``.
    """

    def __init__(self, device: torch.device | str, *, event_factory=None):
        self.device = torch.device(device)
        self.deferred = self.device.type == "cuda" or event_factory is not None
        self._event_factory = event_factory or (torch.cuda.Event if self.device.type == "cuda" else None)
        self._host = None
        self._event = None
        self._seen = False
        self._latest = None

    def post(self, all_stopped: torch.Tensor) -> None:
        if not self.deferred:
            self._latest = all_stopped
            return
        if self._event is not None:  # a copy is in flight: read it when it lands, post nothing new meanwhile
            return
        if self._host is None:
            host = torch.zeros((), dtype=torch.bool)
            self._host = host.pin_memory() if self.device.type == "cuda" else host
        self._host.copy_(all_stopped.detach().reshape(()), non_blocking=True)
        self._event = self._event_factory()
        self._event.record()

    def done(self) -> bool:
        if not self.deferred:
            return self._latest is not None and bool(self._latest)
        if self._event is not None and self._event.query():  # landed: the host copy is valid
            self._event = None
            self._seen = bool(self._host)
        return self._seen
