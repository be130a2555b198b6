"""A tiny fake science backend for orchestration tests (``backend="tests.orchestrator_fakes"``).

Real Ray actors import this module by name, so tests exercise the real driver/worker/store path
with a solver that costs microseconds. Fault hooks are solver options (part of the config):

- ``crash_marker``: a file path; if it exists when a unit starts, it is removed and the actor
  process exits hard (``os._exit``), once: Ray restarts the actor and retries the unit.
- ``raise_msg``: the solver raises ``RuntimeError(raise_msg)`` (a unit failing inside the solver).
- ``nan_above``: rows with ``lam > nan_above`` return NaN (diverged rows).
- ``sleep``: seconds to sleep per unit (to have time to kill a driver mid-sweep).
- ``log_dir``: each solve appends its rows' keys to a file there (tests count executions).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from solvers.rng import randn_like_rows


# ------------------------------------------------------------------------------- registries
@dataclass
class _SolverEntry:
    space: str
    needs_transpose: bool = False
    defaults: dict = field(default_factory=lambda: {"crash_marker": None, "raise_msg": None, "nan_above": None,
                                                     "sleep": 0.0, "log_dir": None})


SOLVERS = {
    "fake": _SolverEntry("pixel"),
    "fake_latent": _SolverEntry("latent"),
    "fake_transpose": _SolverEntry("pixel", needs_transpose=True),
}


class FakeMask:
    """Keeps a random half of the pixels (one mask per seed)."""

    has_transpose = True
    linear = True

    def __init__(self, image_shape, seeds=0, device=None, keep: float = 0.5):
        if not 0 < keep <= 1:
            raise ValueError(f"fake_mask: keep must be in (0, 1], got {keep}")
        seeds = [seeds] if isinstance(seeds, int) else list(seeds)
        self.name, self.params, self.batch = "fake_mask", {"keep": keep}, len(seeds)
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


class FakeSquare(FakeMask):
    """A non-linear operator without a transpose."""

    has_transpose = False
    linear = False

    def forward(self, x):
        return x * x

    def transpose(self, y, kind="adjoint"):
        raise NotImplementedError


OPERATORS = {"fake_mask": FakeMask, "fake_square": FakeSquare}
GROUPS = {"hflip": object(), "identity": object()}


def build_operator(name, image_shape=(3, 32, 32), seeds=0, device=None, **params):
    if name not in OPERATORS:
        raise ValueError(f"unknown operator {name!r}; allowed: {sorted(OPERATORS)}")
    unknown = set(params) - {"keep"}
    if unknown:
        raise ValueError(f"{name}: unknown params {sorted(unknown)}; allowed: ['keep']")
    return OPERATORS[name](image_shape, seeds, device, **params)


def add_noise(y, sigma_y, generators):
    return y + sigma_y * randn_like_rows(y, generators)


@dataclass
class RowBatch:
    y: Any
    operator: Any
    generators: list
    params: dict = field(default_factory=dict)
    x_true: Any = None


@dataclass
class RegularizerSpec:
    kind: str = "none"
    mpe: Any = "autoencoder"
    group: str = "hflip"
    reduction: str = "norm"
    schedule: Any = None
    freq: int = 1
    cutoff_frac: float = 0.1
    autoencoder: Any = None


# ----------------------------------------------------------------------------------- priors
def load_prior(ref):
    """A stand-in prior: remembers how many times this process loaded one."""
    load_prior.count = getattr(load_prior, "count", 0) + 1
    space = ref.split(":")[1] if isinstance(ref, str) and ref.startswith("embedded:") else "pixel"
    return SimpleNamespace(space=space, image_shape=(3, 32, 32), ref=ref,
                           autoencoder=SimpleNamespace(encode=lambda x: x, decode=lambda z: z))


def prior_info(ref, kind):
    if ref.path == "embedded":
        return {"image_size": 32, "files": []}
    if ref.path.startswith("size"):
        return {"image_size": int(ref.path[4:]), "files": []}
    return {"image_size": 32, "files": [Path(ref.path)]}


# ------------------------------------------------------------------------------------ solve
def solve(name, prior, batch, num_steps, regularizer=None, options=None):
    opts = {**SOLVERS[name].defaults, **(options or {})}
    if opts["log_dir"]:
        with open(Path(opts["log_dir"]) / f"solves-{os.getpid()}.log", "a") as fh:
            fh.write(f"{batch.y.shape[0]}\n")
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
    lam = torch.as_tensor(batch.params["lam"])
    noise = randn_like_rows(batch.y, batch.generators)
    x = batch.operator.naive_inverse(batch.y) + 0.01 * noise * batch.params["step_size"].view(-1, 1, 1, 1)
    x = x - 0.01 * lam.view(-1, 1, 1, 1)
    status = ["ok"] * x.shape[0]
    if opts["nan_above"] is not None:
        bad = lam > float(opts["nan_above"])
        x[bad] = float("nan")
        status = ["diverged" if b else "ok" for b in bad.tolist()]
    res = batch.operator.residual(torch.nan_to_num(x), batch.y)
    return SimpleNamespace(x=x, status=status, extras={"y_residual": res}, meta={})


def descendants(pid: int) -> list[int]:
    """Pids of ``pid``'s descendants, read from /proc (empty where /proc is absent): the Ray
    processes a driver subprocess started, so a test can kill exactly those."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
