"""EquiBench solvers: one entry point, ``solve``, over a registry of diffusion posterior samplers.

Importing this package registers every solver (``dps``, ``psld``, ``resample``, and ``daps`` /
``latent_daps`` when ``solvers/daps.py`` is present). See ``docs/CONTRACTS.md`` ("Solvers").
"""
from solvers.api import (SOLVERS, RegularizerSpec, RowBatch, SolveContext, SolveOutput, SolverInfo,
                         register_solver, solve)

from solvers import dps, psld, resample  # noqa: E402,F401  (registration side effects)

try:  # DAPS / LatentDAPS live in their own module, written separately
    from solvers import daps  # noqa: F401
except ModuleNotFoundError as _exc:  # only a missing daps module is tolerated, not its own errors
    if _exc.name != "solvers.daps":
        raise

__all__ = ["SOLVERS", "solve", "RowBatch", "RegularizerSpec", "SolveOutput", "SolveContext", "SolverInfo",
           "register_solver"]
