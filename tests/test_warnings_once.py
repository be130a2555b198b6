"""Warnings once per sweep: workers return their warnings with their results, the driver prints each
distinct one once; a metric that is not requested never warns (its weights are never looked up)."""
from __future__ import annotations

import warnings

import pytest

from orchestrator import cluster, grid, plan, spec as spec_mod
from orchestrator.metrics import MissingWeightsWarning
from orchestrator.worker import WorkerCore, warning_records
from tests.support import FAKES as FAKE


@pytest.fixture()
def no_weights(tmp_path, monkeypatch):
    """No LPIPS / Inception weights anywhere the metrics look."""
    monkeypatch.setenv("EQUIBENCH_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def units(metrics, count=4, batch_size=4):
    spec = spec_mod.parse({"name": "w", "prior": "fake", "plugins": [FAKE], "dataset": {"count": count}, "batch_size": batch_size,
                           "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
                           "solvers": [{"name": "fake", "num_steps": [2]}],
                           "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1]}],
                           "metrics": list(metrics), "resources": {"num_cpus": 0.5}})
    return plan.plan(grid.expand(spec), grid.sample_ids(spec), spec.batch_size), list(metrics)


def run_all(core, metrics):
    us, names = units(metrics)
    ctx = {"metrics": names, "save_images": False}
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        got = [core.run_unit(u, ctx) for u in us]
    assert not escaped, [str(w.message) for w in escaped]  # nothing printed by the worker itself
    return got


def test_psnr_only_never_looks_up_weights(no_weights, one_thread):
    core = WorkerCore(plugins=[FAKE])
    got = run_all(core, ["psnr", "rel_l2"])
    assert all(r["warnings"] == [] for r in got)
    assert all(r["rows"][0]["psnr"] is not None for r in got)
    assert core.loads == len(core._priors) + 1  # the priors and one Metrics object, each built once


def test_missing_weights_come_back_once_with_the_first_result(no_weights, one_thread):
    core = WorkerCore(plugins=[FAKE])
    first, *rest = run_all(core, ["psnr", "lpips", "fid"])
    cats = sorted((w["category"], w["message"].split(" is reported")[0]) for w in first["warnings"])
    assert cats == [("orchestrator.metrics.weights.MissingWeightsWarning", "FID/KID"),
                    ("orchestrator.metrics.weights.MissingWeightsWarning", "LPIPS")]
    assert rest and all(r["warnings"] == [] for r in rest)
    assert first["rows"][0]["lpips"] is None and first["rows"][0]["psnr"] is not None
    sets = core.set_metrics(first["images"] or _images(), _images(), ["fid"])
    assert sets["fid"] is None and sets["warnings"] == [] and core.loads == len(core._priors) + 1  # same Metrics object reused


def _images():
    import numpy as np

    return np.zeros((2, 3, 32, 32), dtype=np.float32)


def test_a_solver_warning_is_returned_not_printed(one_thread, monkeypatch):
    core = WorkerCore(plugins=[FAKE])
    import solvers

    real = solvers.solve

    def noisy(*a, **k):
        warnings.warn("step size clipped", RuntimeWarning)
        return real(*a, **k)

    monkeypatch.setattr(solvers, "solve", noisy)
    got = run_all(core, ["psnr"])
    assert got[0]["warnings"] == [{"category": "builtins.RuntimeWarning", "message": "step size clipped"}]


def test_the_driver_reissues_each_distinct_warning_once():
    """Two actors' copies of one warning -> one warning, with its own category (filters apply)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("LPIPS is reported as null", MissingWeightsWarning)
        warnings.warn("other", UserWarning)
    records = warning_records(caught)
    seen: set = set()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        cluster.reissue_warnings(records, seen)  # actor 1
        cluster.reissue_warnings(records, seen)  # actor 2: the same two
        cluster.reissue_warnings([{"category": "no.such.Module", "message": "x"}], seen)
    assert [(w.category, str(w.message)) for w in shown] == [
        (MissingWeightsWarning, "LPIPS is reported as null"), (UserWarning, "other"), (UserWarning, "x")]


def test_an_actor_death_is_named_once():
    msg = ("The actor died unexpectedly before finishing this task.\n\tclass_name: WorkerCore\n\tpid: {pid}\n"
           "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR Worker exit detail: "
           "Worker unexpectedly exits with a connection error code 2.")
    seen: set = set()
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for pid in (11, 12):
            cluster.actor_died(RuntimeError(msg.format(pid=pid)), seen)
    assert len(shown) == 1 and "a worker actor died" in str(shown[0].message)
    assert "connection error code 2" in str(shown[0].message)
