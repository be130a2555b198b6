"""Planning: configs x samples -> WorkUnits that one actor runs as one batch.

Configs that differ only in per-row numbers (lambda, step size, seed) share a unit: they have the
same prior, solver (+options, steps), task (operator, params, noise level) and regularizer
settings, so one batched solver pass serves many lambdas at once (lambda-grid batching). Within a
group, rows are ordered by config then sample and cut into units of at most ``batch_size`` rows,
so a config's rows finish close together (its set metrics can be computed early).

``unit_id`` hashes the group and the unit's row keys: the same rows always give the same unit id,
hence the same file name in the store, so a retried unit overwrites instead of duplicating.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from orchestrator.grid import Config, noise_seed, operator_seed, solver_seed, stable_hash

#: Config fields that must be equal for configs to share a batch.
GROUP_FIELDS = (
    "prior_space", "prior", "mpe_prior", "dataset", "split", "solver", "solver_options", "num_steps",
    "task", "operator", "op_params", "sigma_y", "reg_kind", "mpe", "group", "schedule", "reduction",
    "freq", "cutoff_frac",
)


@dataclass(frozen=True)
class Row:
    """One (config, sample) with its per-row numbers and its three random streams' seeds."""

    config_id: str
    sample_id: int
    seed: int
    lam: float
    step_size: float
    row_seed: int  # the solver's generator
    op_seed: int  # the operator instance (mask/kernel)
    noise_seed: int  # the measurement noise


@dataclass
class WorkUnit:
    """A batch of rows sharing ``group`` (a dict of GROUP_FIELDS); ``configs`` maps id -> Config."""

    unit_id: str
    group: dict
    rows: list[Row]
    configs: dict = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.rows)


def group_key(cfg: Config) -> dict:
    key = {f: getattr(cfg, f) for f in GROUP_FIELDS}
    precision = getattr(cfg, "precision", "fp32")
    if precision != "fp32":  # only then: fp32 units keep their ids (the worker reads a missing key as fp32)
        key["precision"] = precision
    return key


def plan(configs: list[Config], samples: list[int], batch_size: int, done: set | frozenset = frozenset()) -> list[WorkUnit]:
    """Work units covering every (config, sample) not in ``done``, each of <= ``batch_size`` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: "OrderedDict[str, tuple[dict, list[Config]]]" = OrderedDict()
    for cfg in configs:
        key = group_key(cfg)
        groups.setdefault(stable_hash(key), (key, []))[1].append(cfg)
    units = []
    for gid, (key, cfgs) in groups.items():
        rows = [
            Row(c.config_id, int(s), c.seed, c.lam, c.step_size, solver_seed(c, s), operator_seed(c, s), noise_seed(c, s))
            for c in cfgs for s in samples if (c.config_id, int(s)) not in done
        ]
        by_id = {c.config_id: c for c in cfgs}
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            uid = stable_hash([gid, [(r.config_id, r.sample_id) for r in chunk]])
            units.append(WorkUnit(uid, key, chunk, {cid: by_id[cid] for cid in dict.fromkeys(r.config_id for r in chunk)}))
    return units
