"""EquiBench solvers: one entry point, ``solve``, over a registry of inverse-problem solvers.

Importing this package registers every solver: the diffusion posterior samplers (``dps``,
``psld``, ``resample``, and ``daps`` / ``latent_daps`` when ``solvers/daps.py`` is present;
``family="diffusion"``) and the classical baselines of ``solvers/classical`` (``wiener``,
``tikhonov_sr``, ``biharmonic``, ``tv_pd``, ``tv_gd``; ``family="classical"``, no prior needed).
See ``docs/CONTRACTS.md`` ("Solvers").
"""
from solvers.api import (SOLVERS, RegularizerSpec, RowBatch, SolveContext, SolveOutput, SolverInfo,
                         register_solver, solve)

from solvers import dps, psld, resample  # noqa: E402,F401  (registration side effects)

try:  # DAPS / LatentDAPS live in their own module, written separately
    from solvers import daps  # noqa: F401
except ModuleNotFoundError as _exc:  # only a missing daps module is tolerated, not its own errors
    if _exc.name != "solvers.daps":
        raise

from solvers import classical  # noqa: E402,F401  (registration of the classical baselines)

__all__ = ["SOLVERS", "solve", "RowBatch", "RegularizerSpec", "SolveOutput", "SolveContext", "SolverInfo",
           "register_solver"]
