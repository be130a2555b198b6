"""One problem builder: ground truth, operator, noisy measurement and naive inverse, with one seed rule.

Every caller that needs a measurement — the sweep worker, ``equibench solve``, benchmarks and
tests — builds it here, so an image ``(dataset, split, sample_id)`` under a task, noise level and
seed gives the same operator instance (mask, kernel) and the same noise everywhere:

- operator seed: ``row_seed("operator", operator, op_params, m, seed)``
- noise seed: ``row_seed("noise", operator, op_params, sigma_y, m, seed)``

with ``m`` the sample's measurement, ``data.measurement_of(dataset, split, sample_id)``: the sample
id itself except in datasets with several samples per measurement (the mixture worlds), whose
replicas of one measurement thus share operator and noise while the solver stream differs per id.
Both are shared by every solver and lambda of that task, sample and seed (paired comparisons).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from solvers.rng import row_seed


@dataclass
class Measurement:
    """``x_true`` (B, C, H, W) in [-1, 1], the ``operator`` (batch B), ``y`` = A(x) + noise, ``naive``."""

    x_true: Any
    operator: Any
    y: Any
    naive: Any
    sample_ids: list


def _measurement(sample_id: int, dataset: str | None, split: str | None) -> int:
    if dataset is None:
        return int(sample_id)
    from orchestrator import data

    return data.measurement_of(dataset, split, sample_id)


def operator_seed(operator: str, op_params: dict, sample_id: int, seed: int, dataset: str | None = None,
                  split: str | None = None) -> int:
    """Seed of a row's operator instance (``dataset``/``split`` map the id to its measurement)."""
    return row_seed("operator", operator, op_params, _measurement(sample_id, dataset, split), int(seed))


def noise_seed(operator: str, op_params: dict, sigma_y: float, sample_id: int, seed: int, dataset: str | None = None,
               split: str | None = None) -> int:
    """Seed of a row's measurement noise (``dataset``/``split`` map the id to its measurement)."""
    return row_seed("noise", operator, op_params, float(sigma_y), _measurement(sample_id, dataset, split), int(seed))


def task_params(dataset: str, operator: str, params: dict | None = None) -> dict:
    """The operator parameters a task runs with: the dataset's size defaults, then the task's own."""
    from orchestrator import data

    return {**data.info(dataset).operator_defaults(operator), **(params or {})}


def make_measurement(dataset: str, split: str, sample_ids: Sequence[int], operator: str, op_params: dict,
                     sigma_y: float, seed: int = 0, device=None, op_seeds=None, noise_seeds=None,
                     x_true=None) -> Measurement:
    """Build the measurement of ``sample_ids``; ``op_params`` are the resolved ones (``task_params``).

    ``op_seeds``/``noise_seeds`` override the rule (a plan that already computed them passes them);
    ``x_true`` skips loading. Operators come from ``operators.OPERATORS`` (plugins included).
    """
    import torch

    from operators import add_noise, build_operator
    from orchestrator import data
    from solvers.rng import make_generators

    ids = [int(i) for i in sample_ids]
    if x_true is None:
        x_true = data.load(dataset, split, ids)
    x_true = x_true.to(device) if device is not None else x_true
    dev = x_true.device
    op_seeds = list(op_seeds) if op_seeds is not None else [
        operator_seed(operator, op_params, i, seed, dataset, split) for i in ids]
    noise_seeds = list(noise_seeds) if noise_seeds is not None else [
        noise_seed(operator, op_params, sigma_y, i, seed, dataset, split) for i in ids]
    op = build_operator(operator, image_shape=tuple(x_true.shape[1:]), seeds=op_seeds, device=dev, **op_params)
    with torch.no_grad():
        y = add_noise(op.forward(x_true), sigma_y, make_generators(noise_seeds, dev))
        naive = op.naive_inverse(y)
    return Measurement(x_true=x_true, operator=op, y=y, naive=naive, sample_ids=ids)


def regularizer_for(group: dict, autoencoder):
    """The ``RegularizerSpec`` of a work unit's group (None for the baseline)."""
    if group["reg_kind"] == "none":
        return None
    from solvers import RegularizerSpec

    return RegularizerSpec(
        kind=group["reg_kind"], mpe=group["mpe"], group=group["group"], reduction=group["reduction"],
        schedule=group["schedule"], freq=group["freq"], cutoff_frac=group["cutoff_frac"], autoencoder=autoencoder,
    )


def batch_for(unit, autoencoder=None, device=None):
    """``(Measurement, RowBatch, RegularizerSpec | None)`` of a work unit (``orchestrator.plan``):
    the measurement with the plan's seeds, each row's lambda/step size and solver stream."""
    import torch

    from solvers import RowBatch
    from solvers.rng import make_generators

    g, rows = unit.group, unit.rows
    m = make_measurement(g["dataset"], g["split"], [r.sample_id for r in rows], g["operator"], g["op_params"],
                         g["sigma_y"], device=device, op_seeds=[r.op_seed for r in rows],
                         noise_seeds=[r.noise_seed for r in rows])
    dev, dtype = m.x_true.device, m.x_true.dtype
    params = {"lam": torch.tensor([r.lam for r in rows], dtype=dtype, device=dev),
              "step_size": torch.tensor([r.step_size for r in rows], dtype=dtype, device=dev)}
    batch = RowBatch(y=m.y, operator=m.operator, generators=make_generators([r.row_seed for r in rows], dev),
                        params=params, x_true=m.x_true)
    return m, batch, regularizer_for(g, autoencoder)
