"""Where the science comes from: one namespace of the names the orchestrator calls.

The driver validates specs against ``SOLVERS``/``OPERATORS``/``GROUPS`` and the worker calls
``load_prior``, ``build_operator``, ``add_noise``, ``build_group``, ``solve``, ``RowBatch`` and
``RegularizerSpec``. By default these come from the real ``solvers``/``operators`` packages
(imported lazily). A backend *module path* (e.g. ``tests.orchestrator_fakes``) replaces any of
them, which is how orchestration tests run end to end with a tiny fake solver in real Ray actors:
actors receive the module path (a string), never objects.
"""
from __future__ import annotations

import importlib

NAMES = (
    "SOLVERS", "OPERATORS", "GROUPS", "solve", "RowBatch", "RegularizerSpec",
    "build_operator", "add_noise", "build_group", "load_prior",
    "prior_info", "DATASETS",  # optional: override spec.prior_info / orchestrator.data (tests)
)

_REAL = {
    "SOLVERS": "solvers", "solve": "solvers", "RowBatch": "solvers", "RegularizerSpec": "solvers",
    "OPERATORS": "operators", "GROUPS": "operators", "build_operator": "operators",
    "add_noise": "operators", "build_group": "operators", "load_prior": "solvers.loaders",
}


class _Lazy:
    """Attribute access imports the real module on first use and says which name is missing."""

    def __init__(self, override: dict):
        self._override = override

    def __getattr__(self, name):
        if name in self._override:
            return self._override[name]
        if name not in _REAL:
            raise AttributeError(name)
        module_name = _REAL[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ImportError(f"{module_name}.{name} is not available ({exc})") from exc
        try:
            return getattr(module, name)
        except AttributeError:
            raise ImportError(f"{module_name} does not define {name} yet") from None


def resolve(module_path: str | None = None):
    """The backend namespace: the real packages, with names from ``module_path`` taking priority."""
    override = {}
    if module_path:
        mod = importlib.import_module(module_path)
        override = {n: getattr(mod, n) for n in NAMES if hasattr(mod, n)}
    return _Lazy(override)


__all__ = ["resolve", "NAMES"]
