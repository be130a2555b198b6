"""Posterior calibration, orchestration half (issue 19): ``dataset.samples_per_measurement``, the
replica seed rule, and posterior set rows stored through the driver (``orchestrator.posterior_sets``):
complete, checked against an independent computation, resumable, and guarded against a rebuilt
measurement that differs from the one the rows ran on. The layout: ``test_calibration_report.py``."""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from orchestrator import grid, plan, spec as spec_mod

WORLD = "mog8"


def mixture_spec(name="cal", count=2, per=16, **kw):
    data = {
        "name": name, "prior": f"mixture:{WORLD}",
        "dataset": {"name": WORLD, "split": "tune", "count": count, "samples_per_measurement": per},
        "tasks": [{"operator": "random_inpainting", "sigma_y": [0.3]}],
        "solvers": [{"name": "dps", "num_steps": [10], "step_sizes": [1.0]},
                    {"name": "tv_pd", "num_steps": [1], "step_sizes": [0.01]}],
        "regularizers": [{"kind": "none"}, {"kind": "equi", "group": "hflip", "lambdas": [0.1]}],
        "metrics": ["psnr"], "batch_size": 16, "resources": {"num_actors": 1, "num_cpus": 0.5, "threads": 1},
    }
    data.update(kw)
    return spec_mod.parse_sweep(data)


# ------------------------------------------------------------------------------ spec field
@pytest.mark.parametrize("dataset, field, words", [
    ({"name": WORLD, "count": 2, "samples_per_measurement": 0}, "dataset.samples_per_measurement", "greater than or equal to 1"),
    ({"name": "embedded", "count": 2, "samples_per_measurement": 4}, "dataset.samples_per_measurement", "allowed: 1"),
    ({"name": WORLD, "samples_per_measurement": 4}, "dataset.count", "give dataset.count"),
    ({"name": WORLD, "split": "tune", "count": 17, "samples_per_measurement": 4}, "dataset.count", "allowed: 1..16"),
    ({"name": WORLD, "split": "tune", "ids": [3, 20], "samples_per_measurement": 4}, "dataset.ids", "allowed: ids 0..15"),
    ({"name": WORLD, "count": 2, "samples_per_measurement": 5000}, "dataset.samples_per_measurement", "[1, 4096]"),
])
def test_samples_per_measurement_errors_are_one_line_naming_field_and_allowed(dataset, field, words):
    data = {"name": "bad", "prior": "embedded" if dataset["name"] == "embedded" else f"mixture:{WORLD}", "dataset": dataset,
            "tasks": [{"operator": "random_inpainting"}], "solvers": [{"name": "dps", "num_steps": [5], "step_sizes": [1.0]}]}
    with pytest.raises(spec_mod.SpecError) as err:
        spec_mod.parse_sweep(data)
    lines = [ln.strip() for ln in str(err.value).splitlines()[1:]]
    assert len(lines) == 1 and lines[0].startswith(f"{field}:") and words in lines[0], lines


def test_png8_is_refused_for_a_posterior_dataset_and_the_default_is_one_sample():
    with pytest.raises(spec_mod.SpecError, match=r"image_format: 'png8' .* allowed for this dataset: 'float16'"):
        mixture_spec(image_format="png8")
    one = spec_mod.parse_sweep({"name": "one", "prior": f"mixture:{WORLD}", "dataset": {"name": WORLD, "split": "tune", "count": 3},
                                "tasks": [{"operator": "random_inpainting"}],
                                "solvers": [{"name": "dps", "num_steps": [5], "step_sizes": [1.0]}]})
    assert one.dataset.samples_per_measurement == 1 and grid.sample_ids(one) == [0, 1, 2]


# ------------------------------------------------------------------------------ seed rule
def test_replicas_share_the_measurement_and_differ_in_solver_noise(one_thread):
    """Every replica row of one measurement runs on the same y (operator and noise seeds) with its own
    solver stream; the worker's batch shows it on the tensors themselves."""
    from orchestrator.problem import batch_for

    spec = mixture_spec(count=2, per=3)
    samples = grid.sample_ids(spec)
    assert samples == [0, 16, 32, 1, 17, 33]  # replica r of measurement m is id r * 16 + m (tune: 16 measurements)
    cfg = next(c for c in grid.expand(spec) if c.solver == "dps" and c.reg_kind == "none")
    unit = plan.plan([cfg], samples, 16)[0]
    m, batch, _ = batch_for(unit)
    by_m = {0: [0, 1, 2], 1: [3, 4, 5]}
    for rows in by_m.values():
        assert len({unit.rows[i].op_seed for i in rows}) == 1 and len({unit.rows[i].noise_seed for i in rows}) == 1
        assert len({unit.rows[i].row_seed for i in rows}) == 3
        assert all(torch.equal(m.y[rows[0]], m.y[i]) for i in rows)
        assert all(torch.equal(m.x_true[rows[0]], m.x_true[i]) for i in rows)
    assert not torch.equal(m.y[0], m.y[3])
    draws = [torch.randn(4, generator=g) for g in batch.generators]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])


# ------------------------------------------------------------------------------ stored rows
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def actors(ray_session):
    from orchestrator import driver

    pool = driver.start_actors(mixture_spec(), 1)
    ray.get([a.ping.remote() for a in pool])
    return pool


def _posterior_files(store_dir, run):
    from orchestrator.posterior_sets import posterior_dir

    return sorted(posterior_dir(store_dir, run).glob("config-*.parquet"))


def _independent_metrics(store_dir, run, row):
    """mean_err and std_ratio of one posterior row, recomputed from the stored images and an exact
    posterior built here from the raw seeds (``solvers.mixture`` directly, not ``posterior_sets``)."""
    from orchestrator import data, problem, store
    from solvers.mixture import metrics as M

    df = store.load(store_dir, run=run, filters={"config_id": row["config_id"], "status": "ok"})
    df = df[[data.measurement_of(WORLD, "tune", s) == row["measurement"] for s in df["sample_id"]]]
    imgs = store.load_images(store_dir, run, sorted(set(df["unit_id"])))
    X = torch.as_tensor(np.stack([imgs["x_hat"][f"{row['config_id']}:{s}"] for s in df["sample_id"]]).astype(np.float64))
    X = X.reshape(len(df), -1)
    params = problem.task_params(WORLD, "random_inpainting")
    m = int(row["measurement"])
    meas = problem.make_measurement(WORLD, "tune", [m], "random_inpainting", params, 0.3,
                                    op_seeds=[problem.operator_seed("random_inpainting", params, m, 0)],
                                    noise_seeds=[problem.noise_seed("random_inpainting", params, 0.3, m, 0)])
    post = data.info(WORLD).exact_posterior(meas.operator, meas.y, 0.3)
    return M.mean_error(X, post), M.std_ratio(X, post), float(M.mmse_gap(X, post).mean())


@pytest.mark.ray
def test_posterior_rows_stored_checked_and_resumable(tmp_path, actors, one_thread):
    from orchestrator import driver, posterior_sets

    spec = mixture_spec()
    store_dir = tmp_path / "store"
    # a run stopped after one unit (as if killed), then resumed: every (config, measurement) exactly once
    first = driver.run_sweep(spec, store_dir, quiet=True, actors=actors, stop_after_units=1)
    assert first.stopped_early
    res = driver.run_sweep(spec, store_dir, quiet=True, actors=actors)
    configs = grid.expand(spec)
    assert len(configs) == 3  # dps none / equi, tv_pd (classical: once, unregularized)
    rows = posterior_sets.load(store_dir, run=spec.name)
    raw = posterior_sets.load(store_dir, run=spec.name, dedupe=False)
    assert len(raw) == len(rows) == 3 * 2 and set(zip(rows["config_id"], rows["measurement"])) == {
        (c.config_id, m) for c in configs for m in (0, 1)}
    assert (rows["status"] == "ok").all() and (rows["n_samples"] == 16).all() and (rows["n_rows"] == 16).all()
    samplers, points = rows[rows["estimator"] == "samples"], rows[rows["estimator"] == "point"]
    assert set(points["solver"]) == {"tv_pd"} and set(samplers["solver"]) == {"dps"}
    assert points[["sw", "sw_floor", "std_ratio", "cov90"]].isna().all().all()  # a point estimate: mean metrics only
    assert points[["mean_err", "mmse_gap"]].notna().all().all()
    assert (samplers["sw"] > samplers["sw_floor"]).all() and (samplers["sw_floor"] > 0).all()
    assert samplers[["cov50", "cov90"]].apply(lambda c: c.between(0, 1)).all().all()
    # the floor is the measurement's, not the config's: one reference per measurement
    assert samplers.groupby("measurement")["sw_floor"].nunique().eq(1).all()
    for rec in rows.to_dict("records"):
        mean_err, std_ratio, gap = _independent_metrics(store_dir, spec.name, rec)
        assert math.isclose(rec["mean_err"], mean_err, rel_tol=1e-9) and math.isclose(rec["mmse_gap"], gap, rel_tol=1e-9)
        if rec["estimator"] == "samples":
            assert math.isclose(rec["std_ratio"], std_ratio, rel_tol=1e-9)
    assert res.sets_written >= 1

    # a second run computes nothing: no posterior file is rewritten
    files = {f: f.stat().st_mtime_ns for f in _posterior_files(store_dir, spec.name)}
    again = driver.run_sweep(spec, store_dir, quiet=True, actors=actors)
    assert again.units == 0 and again.sets_written == 0
    assert {f: f.stat().st_mtime_ns for f in _posterior_files(store_dir, spec.name)} == files

    # a lost posterior row is recomputed alone, from the stored rows (no unit runs), to the same values
    lost = sorted(files)[0]
    before = posterior_sets.load(store_dir, run=spec.name).set_index(["config_id", "measurement"])
    os.remove(lost)
    redo = driver.run_sweep(spec, store_dir, quiet=True, actors=actors)
    assert redo.units == 0 and redo.sets_written == 1
    after = posterior_sets.load(store_dir, run=spec.name).set_index(["config_id", "measurement"])
    cols = list(posterior_sets.METRICS)
    assert np.allclose(before[cols].to_numpy(float), after.loc[before.index, cols].to_numpy(float), equal_nan=True)


@pytest.mark.ray
def test_a_rebuilt_measurement_that_differs_is_a_failed_row(tmp_path, actors, one_thread):
    """If the stored rows ran on another y than the one the driver rebuilds (a worker on another device
    kind), the posterior row says so instead of scoring the samples against the wrong posterior."""
    from orchestrator import driver, posterior_sets, store

    spec = mixture_spec(name="cal-guard", count=1, per=8,
                        solvers=[{"name": "dps", "num_steps": [5], "step_sizes": [1.0]}], regularizers=[{"kind": "none"}])
    store_dir = tmp_path / "store"
    driver.run_sweep(spec, store_dir, quiet=True, actors=actors)
    assert (posterior_sets.load(store_dir, run=spec.name)["status"] == "ok").all()
    folder = store.images_dir(store_dir, spec.name)
    for f in folder.glob("unit-*.npz"):  # the stored naive inverses of another measurement
        with np.load(f) as z:
            payload = {k: z[k] for k in z.files}
        payload["naive"] = payload["naive"] + np.float16(0.5)
        np.savez_compressed(f, **payload)
    for f in _posterior_files(store_dir, spec.name):
        os.remove(f)
    driver.run_sweep(spec, store_dir, quiet=True, actors=actors)
    rows = posterior_sets.load(store_dir, run=spec.name)
    assert len(rows) == 1 and rows["status"].iloc[0] == "failed" and "differs from the one the row ran on" in rows["error"].iloc[0]
    assert rows["sw"].isna().all()
