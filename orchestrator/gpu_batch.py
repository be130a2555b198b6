"""Rows per solver call: the largest batch that fits the device, found once per solver setting.

``compute.max_batch`` (``orchestrator.spec_compute``) bounds the rows of one solver call. A work unit
is then solved in chunks (rows never interact, so the chunks give the rows the same values as one
call), and an out-of-memory call is not a failed unit:

- ``auto``: the first call tries the whole unit; if it raises ``torch.cuda.OutOfMemoryError``, the
  largest size that fits is found by bisection with one-step probes (``largest_fit``: a probe solves
  ``b`` rows for one step, whose peak memory is the run's: every step does the same work) and
  remembered for the solver setting (``signature``: everything but the step count and noise level);
- an int ``N``: calls of at most ``N`` rows; an OOM halves the size (remembered the same way);
- after the first bisection, a later OOM (fragmentation) halves the remembered size.

``BatchFitter.run`` takes two callables, so it is testable on CPU with an injected OOM:
``solve_rows(rows)`` (the real call) and ``probe_rows(rows)`` (the one-step call). Memory is freed
(``torch.cuda.empty_cache``) after an OOM, outside the ``except`` block so the failed call's frames
and tensors are gone first.
"""
from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

__all__ = ["is_oom", "attempt", "largest_fit", "signature", "BatchFitter", "merge_outputs"]

#: group fields that do not change a call's memory (left out of the signature)
_NOT_MEMORY = ("num_steps", "sigma_y")


def is_oom(exc: BaseException) -> bool:
    """A device out-of-memory error (``torch.cuda.OutOfMemoryError`` is ``torch.OutOfMemoryError``)."""
    return isinstance(exc, torch.OutOfMemoryError)


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attempt(fn: Callable[[], Any]) -> tuple[bool, Any]:
    """``(True, fn())``, or ``(False, None)`` when ``fn`` ran out of device memory (memory freed);
    any other exception propagates."""
    failed = False
    try:
        return True, fn()
    except torch.OutOfMemoryError:
        failed = True
    if failed:
        _free()
    return False, None


def largest_fit(fits: Callable[[int], bool], hi: int, good: int = 0) -> int:
    """The largest ``b`` in ``[1, hi]`` with ``fits(b)`` (monotone in ``b``): ``hi`` first, then
    bisection between ``good`` (known to fit; 0: none) and the smallest known failure.
    Raises ``torch.OutOfMemoryError`` when not even one row fits."""
    if hi < 1:
        raise ValueError(f"hi must be >= 1, got {hi}")
    if good >= hi or fits(hi):
        return hi
    bad = hi
    while bad - good > 1:
        mid = (good + bad) // 2
        if fits(mid):
            good = mid
        else:
            bad = mid
    if good < 1:
        raise torch.OutOfMemoryError("one row does not fit in device memory (compute.max_batch bisection)")
    return good


def signature(group: dict) -> str:
    """The memory signature of a unit's group: every field but the step count and noise level."""
    from orchestrator.grid import stable_hash

    return stable_hash({k: v for k, v in group.items() if k not in _NOT_MEMORY})


@dataclass
class _Fit:
    fit: int = 0  # largest size known to fit (0: none)
    bad: int | None = None  # smallest size known not to fit
    probed: bool = False  # the bisection ran once


class BatchFitter:
    """Chunked solving under ``max_batch`` (``None`` | int >= 1 | ``"auto"``); state per signature."""

    def __init__(self, max_batch=None):
        if not (max_batch is None or max_batch == "auto" or (isinstance(max_batch, int) and max_batch >= 1)):
            raise ValueError(f"max_batch {max_batch!r} is not allowed; allowed: null, an integer >= 1, 'auto'")
        self.max_batch = max_batch
        self.state: dict[str, _Fit] = {}
        self.probes = 0  # one-step probe calls made (tests, benchmarks)

    @property
    def active(self) -> bool:
        return self.max_batch is not None

    def fits(self) -> dict[str, int]:
        """``{signature: largest size known to fit}`` (what an actor reports in ``info``)."""
        return {k: v.fit for k, v in self.state.items() if v.fit}

    def size(self, key: str, n: int) -> int:
        """Rows of the next call of a unit of ``n`` rows."""
        cap = n if self.max_batch in (None, "auto") else min(n, int(self.max_batch))
        st = self.state.get(key)
        return cap if st is None or st.bad is None else max(1, min(cap, st.fit or 1))

    def run(self, key: str, rows: Sequence, solve_rows: Callable[[Sequence], Any],
            probe_rows: Callable[[Sequence], Any] | None = None) -> list:
        """``[solve_rows(chunk), ...]`` covering ``rows`` in order, in chunks that fit (module doc)."""
        if not self.active:
            return [solve_rows(rows)]
        st = self.state.setdefault(key, _Fit())
        out, i, n = [], 0, len(rows)
        size = self.size(key, n)
        while i < n:
            chunk = rows[i:i + size]
            ok, res = attempt(lambda: solve_rows(chunk))
            if ok:
                st.fit = max(st.fit, len(chunk))
                out.append(res)
                i += len(chunk)
                continue
            if len(chunk) == 1:
                raise torch.OutOfMemoryError("one row does not fit in device memory (compute.max_batch)")
            st.bad = len(chunk) if st.bad is None else min(st.bad, len(chunk))
            st.fit = min(st.fit, st.bad - 1)
            if self.max_batch == "auto" and not st.probed and probe_rows is not None:
                st.probed = True
                start = i

                def probe(b: int) -> bool:
                    self.probes += 1
                    return attempt(lambda: probe_rows(rows[start:start + b]))[0]

                st.fit = largest_fit(probe, st.bad - 1, good=st.fit)
            else:
                st.fit = max(1, len(chunk) // 2)
            size = st.fit
        return out


def merge_outputs(parts: list):
    """One ``SolveOutput`` of chunk outputs in row order: ``x``, ``status``, per-row ``extras``
    concatenated (a key a chunk lacks, e.g. ``influence_grad`` of a chunk whose lambdas are all 0, is
    NaN for its rows: stored as null), ``meta`` of the first chunk."""
    from solvers.api import SolveOutput

    if len(parts) == 1:
        return parts[0]
    keys = list(dict.fromkeys(k for p in parts for k in p.extras))
    extras = {}
    for k in keys:
        like = next(p.extras[k] for p in parts if k in p.extras)
        extras[k] = torch.cat([p.extras[k] if k in p.extras else
                               torch.full((p.x.shape[0], *like.shape[1:]), float("nan"), dtype=like.dtype, device=like.device)
                               for p in parts])
    return SolveOutput(torch.cat([p.x for p in parts]), [s for p in parts for s in p.status], extras, dict(parts[0].meta))
