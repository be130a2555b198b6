"""EquiBench solvers: one entry point, ``solve``, over a registry of inverse-problem solvers.

Importing this package registers every solver: the diffusion posterior samplers (``dps``,
``psld``, ``resample``, ``daps`` / ``latent_daps``;
``family="diffusion"``) and the classical baselines of ``solvers/classical`` (``wiener``,
``tikhonov_sr``, ``biharmonic``, ``tv_pd``, ``tv_gd``; ``family="classical"``, no prior needed).
It then imports every other top-level module of this folder (file-name order), so a new solver is
one new file here that calls ``register_solver``; the explicit imports above fix the registry's
order for the built-in ones. See ``docs/CONTRACTS.md`` ("Solvers").
"""
from solvers.api import (SOLVERS, RegularizerSpec, RowBatch, SolveContext, SolveOutput, SolverInfo,
                         register_solver, solve)

from solvers import dps, psld, resample  # noqa: E402,F401  (registration side effects)

from solvers import daps  # noqa: E402,F401  (DAPS and LatentDAPS)

from solvers import classical  # noqa: E402,F401  (registration of the classical baselines)


def _import_modules() -> None:
    """Import every top-level module of this package (a solver added as one new file registers)."""
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if not mod.ispkg:
            importlib.import_module(f"{__name__}.{mod.name}")


_import_modules()

__all__ = ["SOLVERS", "solve", "RowBatch", "RegularizerSpec", "SolveOutput", "SolveContext", "SolverInfo",
           "register_solver"]
