"""Shared fixtures. Test modules never import each other: shared fakes live in ``tests/support/``.

The fake science (``tests/support/fakes.py``) is a plugin (``orchestrator.plugins``): a test loads it
with the ``fakes`` fixture, or names it in a spec (``plugins: [tests.support.fakes]``,
``tests.support.FAKES``) or in ``$EQUIBENCH_PLUGINS`` for a CLI run. It registers into the real
registries, so after every test module that loaded it its entries are removed again and the next
module sees the real registries only.
"""
from __future__ import annotations

import sys

import pytest
import torch

from tests.support import FAKES


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for the module (started here unless one runs already; shut down if started here)."""
    import ray

    from orchestrator import driver

    started = driver.ensure_ray()
    yield
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread avoids spin-waiting on a shared 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def fakes():
    """The fake plugin, loaded through ``orchestrator.plugins`` (as the driver and actors load it)."""
    from orchestrator import plugins

    plugins.load([FAKES])
    return sys.modules[FAKES]


@pytest.fixture(scope="module", autouse=True)
def _fake_plugin_scope():
    """Registries as the module found them: the fake plugin's entries go when the module ends."""
    yield
    mod = sys.modules.pop(FAKES, None)
    if mod is not None:
        mod.unregister()
