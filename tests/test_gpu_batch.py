"""Rows per solver call (``compute.max_batch``): the largest batch that fits, found by bisection on an
injected ``torch.cuda.OutOfMemoryError``; chunked units give the rows the values one call gives."""
from __future__ import annotations

import math

import pytest
import torch

from orchestrator import grid, plan, spec as spec_mod
from orchestrator.gpu_batch import BatchFitter, largest_fit, merge_outputs, signature
from orchestrator.worker import WorkerCore
from solvers.api import SolveOutput


def oom_above(limit, calls=None):
    def fn(rows):
        if calls is not None:
            calls.append(len(rows))
        if len(rows) > limit:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected: {len(rows)} > {limit})")
        return list(rows)
    return fn


@pytest.mark.parametrize("limit", [1, 37, 128, 255, 256])
def test_largest_fit_finds_the_limit_in_log_probes(limit):
    probes = []
    got = largest_fit(lambda b: probes.append(b) or b <= limit, 256)
    assert got == limit
    assert len(probes) <= 1 + math.ceil(math.log2(256)), probes  # hi first, then bisection


def test_largest_fit_refuses_when_one_row_does_not_fit():
    with pytest.raises(torch.OutOfMemoryError, match="one row"):
        largest_fit(lambda b: False, 8)


def test_auto_tries_the_whole_unit_then_bisects_with_probes_and_remembers():
    f = BatchFitter("auto")
    solved, probed = [], []
    rows = list(range(100))
    parts = f.run("sig", rows, oom_above(37, solved), oom_above(37, probed))
    assert [r for p in parts for r in p] == rows  # every row once, in order
    assert solved[0] == 100 and max(len(p) for p in parts) == 37
    assert f.fits() == {"sig": 37} and f.probes == len(probed) <= 8
    solved.clear(), probed.clear()
    parts = f.run("sig", rows, oom_above(37, solved), oom_above(37, probed))
    assert probed == [] and solved == [37, 37, 26]  # the next unit uses what was found: no OOM, no probe
    assert f.run("other", rows[:10], oom_above(37)) == [rows[:10]]  # another setting: its own search


def test_an_int_bound_caps_calls_and_an_oom_halves():
    f = BatchFitter(16)
    calls = []
    parts = f.run("s", list(range(40)), oom_above(100, calls))
    assert calls == [16, 16, 8]
    calls.clear()
    parts = f.run("t", list(range(40)), oom_above(5, calls))
    assert [len(p) for p in parts] == [4] * 10 and calls[:3] == [16, 8, 4]  # 16 OOM, 8 OOM, then 4 fits
    with pytest.raises(torch.OutOfMemoryError, match="one row"):
        BatchFitter(4).run("u", [1, 2], oom_above(0))


def test_off_is_one_call_and_other_errors_propagate():
    assert BatchFitter(None).run("s", [1, 2, 3], oom_above(5)) == [[1, 2, 3]]
    with pytest.raises(torch.OutOfMemoryError):  # off: an OOM fails the unit, as before
        BatchFitter(None).run("s", [1, 2, 3], oom_above(1))

    def boom(rows):
        raise RuntimeError("not memory")
    with pytest.raises(RuntimeError, match="not memory"):
        BatchFitter("auto").run("s", [1, 2], boom)
    with pytest.raises(ValueError, match="allowed: null, an integer >= 1, 'auto'"):
        BatchFitter(0)


def test_merge_keeps_rows_in_order_and_fills_a_missing_extra_with_nan():
    a = SolveOutput(torch.zeros(2, 1), ["ok", "ok"], {"y_residual": torch.ones(2)}, {"solver": "x"})
    b = SolveOutput(torch.ones(1, 1), ["diverged"], {"y_residual": torch.full((1,), 2.0), "influence_grad": torch.full((1,), 0.5)})
    m = merge_outputs([a, b])
    assert m.x.squeeze(1).tolist() == [0, 0, 1] and m.status == ["ok", "ok", "diverged"]
    assert m.extras["y_residual"].tolist() == [1, 1, 2]
    ig = m.extras["influence_grad"].tolist()
    assert math.isnan(ig[0]) and math.isnan(ig[1]) and ig[2] == 0.5
    assert m.meta == {"solver": "x"}


def _units(compute=None, count=6):
    data = {"name": "gb", "prior": "embedded", "dataset": {"count": count}, "batch_size": 4,
            "tasks": [{"operator": "gaussian_blur", "sigma_y": [0.05]}],
            "solvers": [{"name": "dps", "num_steps": [2], "step_sizes": [0.5]}],
            "regularizers": [{"kind": "equi", "lambdas": [0.0, 0.3]}], "metrics": ["psnr"]}
    if compute:
        data["compute"] = compute
    spec = spec_mod.parse(data)
    return spec, plan.plan(grid.expand(spec), grid.sample_ids(spec), spec.unit_rows)


def _by_key(results):
    return {(r["config_id"], r["sample_id"]): r for res in results for r in res["rows"]}


def test_worker_chunks_a_unit_on_injected_oom_and_rows_match_one_call(one_thread, monkeypatch):
    spec, units = _units({"max_batch": "auto"})
    assert spec.unit_rows == 256 and len(units) == 1 and units[0].size == 12  # 2 lambdas x 6 images
    ctx = {"metrics": ["psnr"], "save_images": False}
    whole = WorkerCore(name="whole")
    ref = _by_key([whole.run_unit(u, ctx) for u in units])
    core = WorkerCore(name="chunked", compute=spec.compute.actor_options())
    real, sizes = core._solve, []

    def limited(unit, num_steps=None):
        sizes.append((len(unit.rows), num_steps))
        if len(unit.rows) > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
        return real(unit, num_steps)

    monkeypatch.setattr(core, "_solve", limited)
    got = _by_key([core.run_unit(u, ctx) for u in units])
    assert sizes[0] == (12, None) and any(steps == 1 for _, steps in sizes)  # whole unit, then one-step probes
    assert core.info()["batch_fits"] == {signature(units[0].group): 5}
    assert set(got) == set(ref)
    for k, r in ref.items():
        assert got[k]["status"] == r["status"] == "ok", got[k]["error"]
        assert got[k]["psnr"] == pytest.approx(r["psnr"], abs=1e-4)  # rows never interact: same values
        assert got[k]["y_residual"] == pytest.approx(r["y_residual"], rel=1e-4)


def test_max_batch_sets_the_rows_per_unit_not_the_configs():
    base, u0 = _units()
    capped, u1 = _units({"max_batch": 8})
    assert base.unit_rows == 4 and capped.unit_rows == 8
    assert [c.config_id for c in grid.expand(base)] == [c.config_id for c in grid.expand(capped)]
    assert [u.size for u in u0] == [4, 4, 4] and [u.size for u in u1] == [8, 4]
