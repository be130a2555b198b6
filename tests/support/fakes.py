"""The fake science plugin of the orchestration tests: ``plugins: [tests.support.fakes]``.

Importing it registers, into the real registries, solvers that cost microseconds (``fake`` pixel,
``fake_latent``, ``fake_transpose`` needing ``operator.transpose``), two operators (``fake_mask``,
linear with a transpose; ``fake_square``, non-linear without one) and a prior kind ``fake`` (no
weights: ``prior: fake``, both spaces; ``fake:size<N>`` takes N x N images). Real Ray actors import
it by name (``orchestrator.plugins``), so tests run the real driver, worker, ``solvers.solve`` and
store. ``unregister()`` removes every entry again (``tests/conftest.py`` calls it after each test
module that loaded the plugin). Fault hooks are solver options (part of the config):

- ``crash_marker``: a file path; if it exists when a unit starts, it is removed and the actor
  process exits hard (``os._exit``), once: Ray restarts the actor and retries the unit.
- ``raise_msg``: the solver raises ``RuntimeError(raise_msg)`` (a unit failing inside the solver).
- ``nan_above``: rows with ``lam > nan_above`` return NaN (diverged rows).
- ``sleep``: seconds to sleep per unit (to have time to kill a driver mid-sweep).
- ``log_dir``: each solve appends its batch size to a file there (tests count executions).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from operators.registry import EMBEDDED_DEFAULTS, OPERATORS, register
from solvers.api import SOLVERS, register_solver
from solvers.loaders import PRIOR_LOADERS, register_prior
from solvers.priors import Autoencoder, Prior, VPSchedule
from solvers.rng import randn_like_rows

FAULT_HOOKS = {"crash_marker": None, "raise_msg": None, "nan_above": None, "sleep": 0.0, "log_dir": None}
IMAGE_SIZE = 32


# -------------------------------------------------------------------------------- operators
@register("fake_mask")
class FakeMask:
    """Keeps a random half of the pixels (one mask per seed)."""

    has_transpose = True
    linear = True
    EMBEDDED_DEFAULTS: dict = {}

    def __init__(self, image_shape, seeds=0, device=None, keep: float = 0.5, **unknown):
        if unknown:
            raise ValueError(f"{self.name}: unknown params {sorted(unknown)}; allowed: ['keep']")
        if not 0 < keep <= 1:
            raise ValueError(f"{self.name}: keep must be in (0, 1], got {keep}")
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        self.params, self.batch = {"keep": keep}, len(seeds)
        self.image_shape = self.measurement_shape = tuple(image_shape)
        masks = [(torch.rand(image_shape[1:], generator=torch.Generator().manual_seed(int(s))) < keep).float()
                 for s in seeds]
        self.mask = torch.stack(masks)[:, None].to(device or "cpu")

    def forward(self, x):
        return x * self.mask

    __call__ = forward

    def transpose(self, y, kind="adjoint"):
        return y * self.mask

    def naive_inverse(self, y):
        return y

    def residual(self, x, y):
        return (y - self.forward(x)).reshape(x.shape[0], -1).norm(dim=1)


@register("fake_square")
class FakeSquare(FakeMask):
    """A non-linear operator without a transpose."""

    has_transpose = False
    linear = False

    def forward(self, x):
        return x * x

    def transpose(self, y, kind="adjoint"):
        raise NotImplementedError("fake_square is non-linear: it has no transpose (the Operator contract)")


# ----------------------------------------------------------------------------------- priors
class FakePrior(Prior):
    """No network (eps = 0) and an identity autoencoder: what validation and EquiReg need."""

    def __init__(self, space: str, size: int):
        shape = (3, size, size)
        super().__init__(VPSchedule.linear(), shape, name=f"fake:{space}")
        self.space = space
        self.autoencoder = Autoencoder(lambda x: x, lambda z: z, latent_shape=shape, image_shape=shape)

    def eps(self, x_t, t):
        return torch.zeros_like(x_t)

    def encode(self, x):
        return x

    def decode(self, z):
        return z


def _size(spec: dict) -> int:
    name = str(spec.get("name") or f"size{IMAGE_SIZE}")
    if not name.startswith("size") or not name[4:].isdigit():
        raise ValueError(f"fake prior name must be 'size<N>', got {name!r}")
    return int(name[4:])


@register_prior("fake", info=lambda spec: {"image_size": _size(spec), "channels": 3, "files": []},
                fields=("name", "space"), spaces=("pixel", "latent"), space_key="space")
def load_fake_prior(spec: dict) -> FakePrior:
    return FakePrior(spec.get("space", "pixel"), _size(spec))


# ----------------------------------------------------------------------------------- solvers
def _fake(ctx):
    """The stand-in solver: the naive inverse, nudged by the row's noise, step size and lambda."""
    opts = ctx.options
    if opts["log_dir"]:
        with open(Path(opts["log_dir"]) / f"solves-{os.getpid()}.log", "a") as fh:
            fh.write(f"{ctx.B}\n")
    marker = opts["crash_marker"]
    if marker:
        try:
            os.remove(marker)  # atomic claim: of two actors starting at once, one removes it and dies
        except FileNotFoundError:
            pass
        else:
            os._exit(1)  # the actor process dies mid-unit
    if opts["sleep"]:
        time.sleep(float(opts["sleep"]))
    if opts["raise_msg"]:
        raise RuntimeError(opts["raise_msg"])
    lam = ctx.param("lam")
    x = ctx.operator.naive_inverse(ctx.y) + 0.01 * randn_like_rows(ctx.y, ctx.generators) * ctx.rows(ctx.param("step_size"), ctx.y)
    x = x - 0.01 * ctx.rows(lam, x)
    if opts["nan_above"] is not None:
        x[lam > float(opts["nan_above"])] = float("nan")  # solve() reports these rows diverged
    return x


for _name, _space, _transpose in (("fake", "pixel", False), ("fake_latent", "latent", False),
                                  ("fake_transpose", "pixel", True)):
    register_solver(_name, space=_space, needs_transpose=_transpose, defaults=dict(FAULT_HOOKS))(_fake)

_MINE = {"solvers": ("fake", "fake_latent", "fake_transpose"), "operators": ("fake_mask", "fake_square"),
         "priors": ("fake",)}


def unregister() -> None:
    """Remove this plugin's entries from the registries (the next import registers them again)."""
    for name in _MINE["solvers"]:
        if getattr(SOLVERS.get(name), "fn", None) is _fake:
            del SOLVERS[name]
    for name in _MINE["operators"]:
        if OPERATORS.get(name) in (FakeMask, FakeSquare):
            del OPERATORS[name]
            EMBEDDED_DEFAULTS.pop(name, None)
    if getattr(PRIOR_LOADERS.get("fake"), "load", None) is load_fake_prior:
        del PRIOR_LOADERS["fake"]
