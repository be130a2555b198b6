"""Orchestrator backend for benchmarks: the real science, with a stand-in for missing weights.

Passed to ``run_sweep(..., backend="benchmarks.backend")`` / ``equibench run --backend`` only while
the trained embedded weights are absent (``benchmarks.common.trained_weights_present``). Every name
the orchestrator calls still comes from the real packages (``orchestrator.backend`` falls through
to them); only two are replaced:

- ``load_prior``: an ``embedded`` spec without a ``root`` gets the random-init weights root
  (``benchmarks/results/tmp-random-weights``, same architectures, same loaders), so a sweep costs
  what it will cost with the trained models.
- ``prior_info``: the spec check looks for the weight files under that same root.

Ray actors import this module by name (the repo is on their ``PYTHONPATH``), never by object.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.common import embedded_root


def load_prior(spec):
    """``solvers.loaders.load_prior`` with embedded specs pointed at ``embedded_root()``."""
    from solvers.loaders import load_prior as real

    if isinstance(spec, str):
        kind, _, name = spec.partition(":")
        spec = {"kind": kind, **({"name": name} if name else {})}
    spec = dict(spec)
    if spec.get("kind") == "embedded" and "root" not in spec:
        spec["root"] = str(embedded_root()[0])
    return real(spec)


def prior_info(ref, kind):
    """``orchestrator.spec.prior_info`` with the embedded files looked up under ``embedded_root()``."""
    from orchestrator.spec import prior_info as real
    from solvers.loaders import EMBEDDED_ROOT

    info = real(ref, kind)
    if ref.path != "embedded":
        return info
    root = embedded_root()[0]
    files = []
    for f in info["files"]:
        try:
            files.append(root / Path(f).resolve().relative_to(Path(EMBEDDED_ROOT).resolve()))
        except ValueError:
            files.append(Path(f))
    return {**info, "files": files}
