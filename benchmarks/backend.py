"""Benchmark plugin (``plugins: [benchmarks.backend]``): the embedded prior, with a stand-in for missing weights.

Named in a benchmark sweep's ``plugins`` only while the trained embedded weights are absent
(``benchmarks.bench_orchestration.sweep_plugins``). Importing it re-registers the prior kind
``embedded`` (``solvers.loaders.register_prior``) so that a spec without a ``root`` gets
``benchmarks.common.embedded_root()``: the random-init weights root
(``benchmarks/results/tmp-random-weights``, same architectures, same loaders) until training has
run, the trained one after. Loading and the spec check's ``info`` (the files it needs) both go
through the real embedded loader; config ids are those of ``prior: embedded``, so a sweep costs
what it will cost with the trained models. The driver and every Ray actor import it by name.
"""
from __future__ import annotations

from benchmarks.common import embedded_root
from solvers.loaders import PRIOR_LOADERS, register_prior

#: the embedded kind as registered before this plugin (``solvers.loaders_diffusers``)
REAL = PRIOR_LOADERS["embedded"]


def _rooted(spec: dict) -> dict:
    return spec if "root" in spec else {**spec, "root": str(embedded_root()[0])}


def load_prior(spec: dict):
    """The real embedded loader on ``_rooted(spec)``."""
    return REAL.load(_rooted(spec))


register_prior("embedded", info=lambda spec: REAL.info(_rooted(spec)), fields=REAL.fields, required=REAL.required,
               spaces=REAL.spaces, space_key=REAL.space_key)(load_prior)
