"""Plugins: importable modules that register into the real registries before a spec is checked.

A plugin is any module that, when imported, adds entries to the registries the orchestrator reads:
``solvers.SOLVERS`` (``register_solver``), ``operators.OPERATORS`` (``operators.registry.register``),
``operators.GROUPS``, ``solvers.loaders.PRIOR_LOADERS`` (``register_prior``) or
``orchestrator.data.DATASETS``. A sweep names its plugins in the spec (``plugins: [pkg.mod]``) and
``$EQUIBENCH_PLUGINS`` (comma-separated) adds more; neither changes a config id or the grid hash.
The spec parser imports them before validation, the driver before it plans, and every Ray actor in
its setup (it receives the list, so a remote node needs only the module on its path). A module that
does not import is one line: ``plugins: cannot import 'x' (ModuleNotFoundError: ...)``.
"""
from __future__ import annotations

import importlib
import os
from typing import Iterable

ENV = "EQUIBENCH_PLUGINS"


class PluginError(ValueError):
    """A plugin module that cannot be imported (one line: the module and the exception)."""


def requested(spec_plugins: Iterable[str] = ()) -> list[str]:
    """``$EQUIBENCH_PLUGINS`` then the spec's ``plugins``, each once, in that order."""
    names = [n.strip() for n in os.environ.get(ENV, "").split(",") if n.strip()]
    names += [str(n).strip() for n in spec_plugins or () if str(n).strip()]
    return list(dict.fromkeys(names))


def load(names: Iterable[str]) -> list[str]:
    """Import each module of ``names`` (already imported: nothing happens); ``PluginError`` naming
    the first that fails."""
    names = list(names)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure to import is the plugin's, said in one line
            detail = str(exc).splitlines()[0] if str(exc) else ""
            raise PluginError(f"plugins: cannot import {name!r} ({type(exc).__name__}: {detail})") from None
    return names


def load_requested(spec_plugins: Iterable[str] = ()) -> list[str]:
    """``load(requested(spec_plugins))``: the plugins of a spec and of the environment."""
    return load(requested(spec_plugins))


__all__ = ["ENV", "PluginError", "requested", "load", "load_requested"]
