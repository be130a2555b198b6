"""The ``tune:`` section of a spec: pydantic models of the searched space, objective, scheduler,
tuning images and cells to search (shapes only; ``check`` relates them to the sweep spec)."""
from __future__ import annotations

import math
import re
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from orchestrator import spec as spec_mod
from orchestrator.metrics import registry as _metric_registry
from orchestrator.spec import RegSpec

#: Per-image columns a search may optimise: every image metric of the registry (``y_residual``, the
#: solver's own, needs no ground truth).
OBJECTIVE_METRICS = _metric_registry.names("image")
#: ``step_scale`` multiplies each solver's own step size (``solvers[].step_sizes``), so one search
#: space serves solvers whose step sizes differ by orders of magnitude (DPS zeta ~1, DAPS lr ~1e-4).
SPACE_KEYS = ("lam", "step_size", "step_scale", "num_steps")
OPTION_KEY = re.compile(r"^options\.([A-Za-z_][A-Za-z0-9_]*)$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(_Model):
    """One searched parameter: ``{loguniform: [lo, hi]}``, ``{uniform: [lo, hi]}`` or a list of values.

    ``points`` turns a range into that many grid points (log- or linearly spaced) for the grid
    searcher; ``integer`` rounds (``num_steps`` is always integer).
    """

    loguniform: Optional[tuple[float, float]] = None
    uniform: Optional[tuple[float, float]] = None
    values: Optional[list[float]] = None
    points: Optional[int] = Field(None, ge=2, description="grid points for a range (grid searcher)")
    integer: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, (list, tuple)):
            return {"values": list(v)}
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return {"values": [v]}
        return v

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("loguniform", "uniform", "values") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of loguniform, uniform, values (got {given or 'none'})")
        if self.values is not None:
            if not self.values:
                raise ValueError("values is empty")
            if self.points is not None:
                raise ValueError("points applies to a range (loguniform/uniform), not to values")
        for kind in ("loguniform", "uniform"):
            rng = getattr(self, kind)
            if rng is not None:
                lo, hi = rng
                if not lo < hi:
                    raise ValueError(f"{kind}: need lo < hi, got [{lo}, {hi}]")
                if kind == "loguniform" and lo <= 0:
                    raise ValueError(f"loguniform: lo must be > 0, got {lo}")
        return self

    @property
    def bounds(self) -> tuple[float, float]:
        if self.values is not None:
            return min(self.values), max(self.values)
        return tuple(self.loguniform or self.uniform)  # type: ignore[return-value]

    @property
    def gridable(self) -> bool:
        return self.values is not None or self.points is not None

    def grid_values(self) -> list:
        """The grid points: the values, or ``points`` spaced over the range (log for loguniform)."""
        if self.values is not None:
            vals = list(self.values)
        else:
            lo, hi = self.bounds
            n = int(self.points or 2)
            if self.loguniform is not None:
                vals = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n - 1)) for i in range(n)]
            else:
                vals = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
        vals = [int(round(v)) if self.integer else float(v) for v in vals]
        return list(dict.fromkeys(vals))

    def domain(self, searcher: str):
        """The Tune search-space entry for ``searcher`` (grid: ``grid_search`` over the grid points)."""
        from ray import tune

        if searcher == "grid":
            return tune.grid_search(self.grid_values())
        if self.values is not None:
            return tune.choice([int(v) if self.integer else float(v) for v in self.values])
        lo, hi = self.bounds
        if self.loguniform is not None:
            return tune.lograndint(int(math.ceil(lo)), int(hi) + 1) if self.integer else tune.loguniform(lo, hi)
        return tune.randint(int(math.ceil(lo)), int(hi) + 1) if self.integer else tune.uniform(lo, hi)


class ObjectiveSpec(_Model):
    """The metric a search optimises (mean over the tuning images) and its direction."""

    metric: str
    mode: Optional[Literal["min", "max"]] = Field(None, description="default: the metric's direction in the metric registry (min where lower is better)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"metric": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _known(self):
        if self.metric not in OBJECTIVE_METRICS:
            raise ValueError(f"unknown objective metric {self.metric!r}; allowed: {', '.join(map(repr, OBJECTIVE_METRICS))}")
        return self

    @property
    def direction(self) -> str:
        return self.mode or ("min" if _metric_registry.get(self.metric).lower_is_better else "max")


class SchedulerSpec(_Model):
    """``none`` (every trial sees every tuning image) or ``asha`` (stops weak trials at chunk rungs)."""

    kind: Literal["none", "asha"] = "none"
    grace_period: int = Field(1, ge=1, description="chunks every trial evaluates before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return {"kind": v} if isinstance(v, str) else v


class ImagesSpec(_Model):
    """The tuning subset: ``ids`` or ``count`` images from ``offset``, of ``split`` (default: the
    tune split that the dataset pairs with the sweep's report split, e.g. ``tune`` for ``report``;
    else the sweep's split). It must not share content with the sweep's report images."""

    split: Optional[str] = None
    ids: Optional[list[int]] = None
    count: Optional[int] = Field(None, ge=1)
    offset: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one(self):
        if (self.ids is None) == (self.count is None):
            raise ValueError("give ids or count (with an optional offset), not both and not neither")
        if self.ids is not None:
            spec_mod.check_sample_ids(self.ids)
            if self.offset:
                raise ValueError("offset applies to count, not to ids")
        return self

    def sample_ids(self) -> list[int]:
        return list(self.ids) if self.ids is not None else list(range(self.offset, self.offset + int(self.count)))


class PairSpec(_Model):
    solver: str
    regularizer: Literal["none", "equi", "equicon"]


class TuneSection(_Model):
    """The ``tune:`` section of a spec (see configs/tune-smoke.yaml for a commented example)."""

    objective: ObjectiveSpec
    images: ImagesSpec
    space: dict[str, ParamSpec] = Field(default_factory=dict)
    searcher: Literal["grid", "random", "optuna"] = "random"
    num_samples: Optional[int] = Field(None, ge=1, description="trials per searched cell (random/optuna)")
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    compare_schedulers: bool = Field(False, description="also run the search with the other scheduler")
    chunk_size: Optional[int] = Field(None, ge=1, description="images per reported chunk; default: a quarter")
    max_concurrent: Optional[int] = Field(None, ge=1, description="concurrent trials; default: one per worker")
    seed: int = 0
    startup_trials: Optional[int] = Field(None, ge=1, description="optuna: random trials before TPE")
    pairs: Optional[list[PairSpec]] = Field(None, min_length=1, description="(solver, regularizer) cells to search")


def cell_keys(t: TuneSection, reg: RegSpec) -> list[str]:
    """The space keys a cell searches: all of them, except lambda for the baseline."""
    return [k for k in t.space if not (k == "lam" and reg.kind == "none")]
