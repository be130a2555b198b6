"""A fast subset of the fault harness (``tests/test_faults.py``) for the default ``make test``.

Same scenario code at a smaller size, one local Ray for the module (``ray.init(num_cpus=2)``, two
0.25-CPU fake-plugin actors): the bad-spec corpus (validated through the CLI where loading a model
or starting Ray fails loudly), an actor killed at every 10th unit, a unit that raises then succeeds
on rerun, NaN rows, truncated Parquet files, and the spec checks for non-finite numbers and option
values. ``make test-faults`` runs everything, bigger. Not marked ``faults`` on purpose (the default
suite deselects that marker).
"""
from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from orchestrator import spec as spec_mod
from tests.support.faults import (
    check_bad_spec_corpus, scenario_actor_kills, scenario_nan_rows, scenario_solver_raises_then_rerun,
    scenario_truncated_parquet, start_local_ray, start_pool,
)
pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def pool():
    started = not ray.is_initialized()
    if started:
        start_local_ray()
    try:
        yield start_pool(2)
    finally:
        if started:
            ray.shutdown()


@pytest.mark.timeout(600)
def test_bad_spec_corpus_fails_before_any_model(tmp_path):
    check_bad_spec_corpus(tmp_path)


@pytest.mark.timeout(600)
def test_actor_killed_every_10th_unit(tmp_path, pool):
    logs = tmp_path / "logs"
    logs.mkdir()
    stats = scenario_actor_kills(tmp_path / "store", logs, pool, count=4)  # 12 units: one kill (ray.kill)
    assert len(stats["kills"]) == 1


@pytest.mark.timeout(600)
def test_unit_raises_then_rerun_ok(tmp_path, pool):
    scenario_solver_raises_then_rerun(tmp_path / "store", tmp_path, pool, count=2)


@pytest.mark.timeout(600)
def test_nan_rows_diverged_others_ok(tmp_path, pool):
    scenario_nan_rows(tmp_path / "store", pool, count=2)


@pytest.mark.timeout(600)
def test_truncated_parquet_detected_ignored_recomputed(tmp_path, pool):
    logs = tmp_path / "logs"
    logs.mkdir()
    scenario_truncated_parquet(tmp_path / "store", logs, pool, count=2)


# the spec checks for non-finite numbers and option values (no Ray, milliseconds)
_BASE = {"name": "gap", "prior": "embedded", "dataset": {"count": 2}, "tasks": [{"operator": "box_inpainting"}],
         "solvers": [{"name": "dps", "num_steps": [2]}], "regularizers": [{"kind": "none"}]}


@pytest.mark.parametrize("over", [
    {"regularizers": [{"kind": "equi", "lambdas": [float("nan")]}]},
    {"regularizers": [{"kind": "equi", "lambdas": [float("inf")]}]},
    {"tasks": [{"operator": "box_inpainting", "sigma_y": [float("nan")]}]},
    {"solvers": [{"name": "dps", "num_steps": [2], "step_sizes": [float("inf")]}]},
    {"resources": {"num_cpus": float("inf")}},
], ids=["lambda-nan", "lambda-inf", "sigma-nan", "step-inf", "num_cpus-inf"])
def test_non_finite_numbers_rejected(over):
    try:
        spec_mod.parse({**_BASE, **over})
    except spec_mod.SpecError:
        return
    raise AssertionError(f"accepted {over}")


@pytest.mark.parametrize("options", [{"select": "bogus"}, {"restarts": 0}], ids=["select", "restarts"])
def test_bad_option_values_rejected_before_models(options):
    try:
        spec_mod.parse({**_BASE, "solvers": [{"name": "dps", "num_steps": [2], "options": options}]})
    except spec_mod.SpecError:
        return
    raise AssertionError(f"accepted options {options}")


# ================================================================== one local Ray per class
