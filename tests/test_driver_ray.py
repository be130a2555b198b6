"""The driver on a real local Ray (one session per module): end to end, resume, faults.

Uses the fake science plugin ``tests.support.fakes`` (microsecond solver, fault hooks) so the tests
exercise the real driver, actors and store; ``test_real_solver_end_to_end`` uses the real solvers
when they and the embedded weights are importable.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from orchestrator import driver, grid, spec as spec_mod, store
from tests.support import FAKES as FAKE
from tests.support.procs import descendants as _descendants

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _ray(ray_session):
    """Every test here runs on the module's local Ray (``tests/conftest.py``)."""


@pytest.fixture(scope="module")
def pool(ray_session):
    """Two fake-plugin actors shared by the module's sweeps (actor start costs seconds)."""
    actors = driver.start_actors(make_spec(), 2, name="pool")
    ray.get([a.ping.remote() for a in actors])
    return actors


def make_spec(name="t", lambdas=(0.1, 0.2), count=4, batch_size=5, options=None, metrics=("psnr", "rel_l2")):
    return spec_mod.parse({
        "name": name, "prior": "fake", "plugins": [FAKE], "dataset": {"count": count},
        "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
        "solvers": [{"name": "fake", "num_steps": [3], "options": dict(options or {})}],
        "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": list(lambdas)}],
        "batch_size": batch_size, "metrics": list(metrics), "resources": {"num_cpus": 0.5},
    })


def grid_keys(spec):
    return {(c.config_id, s) for c in grid.expand(spec) for s in grid.sample_ids(spec)}


def assert_exact(store_dir, spec):
    """Every grid row stored ok exactly once (no loss, no duplicates), raw files included."""
    raw = store.load(store_dir, run=spec.name, dedupe=False)
    ok = raw[raw["status"] == "ok"]
    keys = list(zip(ok["config_id"], ok["sample_id"]))
    assert len(keys) == len(set(keys)), "duplicate ok rows"
    assert set(keys) == grid_keys(spec)


def test_end_to_end_and_second_run_computes_nothing(tmp_path, pool):
    spec = make_spec(metrics=("psnr", "rel_l2", "fid"))
    res = driver.run_sweep(spec, tmp_path, quiet=True, actors=pool)
    assert (res.rows_ok, res.rows_failed, res.units_done) == (12, 0, 3)
    assert_exact(tmp_path, spec)
    df = store.load(tmp_path, run="t")
    assert df["psnr"].notna().all() and df["y_residual"].notna().all() and df["naive_psnr"].notna().all()
    assert set(df["regularizer"]) == {"none", "equi"} and sorted(set(df["lam"])) == [0.0, 0.1, 0.2]
    assert df["worker"].nunique() >= 1 and df["code_version"].notna().all()
    # set metrics: one row per config once its rows are in (FID null without Inception weights)
    sets = store.load_sets(tmp_path, run="t")
    assert len(sets) == 3 and set(sets["n_images"]) == {4}
    # images for figures
    imgs = store.load_images(tmp_path, "t")
    assert len(imgs["x_hat"]) == 12 and len(imgs["x_true"]) == 4
    infos = ray.get([a.info.remote() for a in pool])
    # each model once per actor: the prior, the MPE autoencoder's prior, the metric nets
    assert all(i["loads"] == len(i["priors"]) + 1 <= 3 for i in infos), infos
    again = driver.run_sweep(spec, tmp_path, quiet=True, actors=pool)
    assert again.computed_nothing and again.skipped_rows == 12


def test_same_row_same_result_whatever_the_batch(tmp_path, pool):
    """A row's result does not depend on batch composition (row seeds, per-row operators)."""
    a = driver.run_sweep(make_spec(name="a", batch_size=12), tmp_path, quiet=True, actors=pool[:1])
    b = driver.run_sweep(make_spec(name="b", batch_size=1), tmp_path, quiet=True, actors=pool)
    assert a.rows_ok == b.rows_ok == 12
    da = store.load(tmp_path, run="a").sort_values(["config_id", "sample_id"]).reset_index(drop=True)
    db = store.load(tmp_path, run="b").sort_values(["config_id", "sample_id"]).reset_index(drop=True)
    assert (da["config_id"] == db["config_id"]).all()
    assert (da["psnr"] - db["psnr"]).abs().max() < 1e-4


def test_solver_exception_and_diverged_rows_recorded(tmp_path, pool):
    spec = make_spec(name="bad", options={"nan_above": 0.15})
    res = driver.run_sweep(spec, tmp_path, quiet=True, actors=pool[:1])
    df = store.load(tmp_path, run="bad")
    assert res.rows_diverged == 4 and set(df[df["lam"] == 0.2]["status"]) == {"diverged"}
    assert df[df["status"] == "diverged"]["psnr"].isna().all()
    spec2 = make_spec(name="boom", options={"raise_msg": "solver blew up"})
    res2 = driver.run_sweep(spec2, tmp_path, quiet=True, actors=pool[:1])
    df2 = store.load(tmp_path, run="boom")
    assert res2.rows_failed == 12 and set(df2["status"]) == {"failed"}
    assert df2["error"].str.contains("solver blew up").all()
    # failed rows are re-run on resume, and readers then show the ok row only
    assert store.completed_keys(tmp_path, "boom") == set()


def test_actor_killed_mid_unit_no_loss_no_duplicates(tmp_path, pool):
    marker = tmp_path / "crash-once"
    marker.write_text("")
    logs = tmp_path / "logs"
    logs.mkdir()
    spec = make_spec(name="kill", options={"crash_marker": str(marker), "log_dir": str(logs)})
    res = driver.run_sweep(spec, tmp_path / "store", quiet=True, actors=pool)
    assert not marker.exists(), "the crash hook did not fire"
    assert res.rows_ok == 12 and res.rows_failed == 0
    assert_exact(tmp_path / "store", spec)
    solves = sum(len(f.read_text().split()) for f in logs.iterdir())
    assert solves == res.units + 1  # the interrupted unit ran twice, nothing else did
    assert len(store.load(tmp_path / "store", run="kill", dedupe=False)) == 12


def test_driver_stopped_then_resumed_runs_only_missing(tmp_path, pool):
    logs = tmp_path / "logs"
    logs.mkdir()
    spec = make_spec(name="resume", batch_size=2, options={"log_dir": str(logs)})
    first = driver.run_sweep(spec, tmp_path / "s", quiet=True, actors=pool[:1], stop_after_units=2)
    assert first.stopped_early and len(store.completed_keys(tmp_path / "s", "resume")) == 4
    for f in logs.iterdir():
        f.unlink()
    second = driver.run_sweep(spec, tmp_path / "s", quiet=True, actors=pool)
    assert second.skipped_rows == 4 and second.rows_ok == 8
    rows_solved = sum(int(n) for f in logs.iterdir() for n in f.read_text().split())
    assert rows_solved == 8  # only the missing rows ran
    assert_exact(tmp_path / "s", spec)


def test_corrupt_file_rows_are_rerun(tmp_path, pool):
    spec = make_spec(name="corrupt", batch_size=4)
    driver.run_sweep(spec, tmp_path, quiet=True, actors=pool[:1])
    victim = sorted((tmp_path / "results" / "run=corrupt").glob("unit-*.parquet"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # a crash left half a file
    with pytest.warns(store.StoreWarning):
        assert len(store.completed_keys(tmp_path, "corrupt")) == 8
    res = driver.run_sweep(spec, tmp_path, quiet=True, actors=pool[:1])
    assert res.rows_ok == 4  # the unit is rewritten under the same name
    assert_exact(tmp_path, spec)


@pytest.mark.slow
def test_cli_driver_killed_and_resumed(tmp_path):
    """SIGKILL the CLI driver after its first unit lands, then resume with the same command."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(
        f"name: cli\nplugins: [{FAKE}]\nprior: fake\ndataset: {{count: 4}}\n"
        "tasks: [{operator: fake_mask}]\n"
        "solvers: [{name: fake, num_steps: [2], options: {sleep: 0.6}}]\n"
        "regularizers: [{kind: none}, {kind: equi, lambdas: [0.1, 0.2]}]\n"
        "batch_size: 2\nmetrics: [psnr]\nresources: {num_cpus: 0.5, num_actors: 1}\n")
    store_dir = tmp_path / "store"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", str(spec_file), "--store", str(store_dir),
           "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), "CI": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    folder = store_dir / "results" / "run=cli"
    deadline = time.time() + 90
    while time.time() < deadline and not (folder.is_dir() and list(folder.glob("unit-*.parquet"))):
        time.sleep(0.2)
    tree = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its Ray processes die, as on a real crash
    for pid in tree:  # Ray workers may sit in their own session: end them by pid
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    proc.wait()
    done_before = len(store.completed_keys(store_dir, "cli"))
    assert 0 < done_before < 12
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr
    spec = spec_mod.parse(spec_file)
    assert_exact(store_dir, spec)
    out2 = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert "nothing to compute" in out2.stdout


def _real_available():
    try:
        import solvers  # noqa: F401
        from solvers.loaders import load_prior  # noqa: F401

        spec_mod.parse(REPO / "configs" / "smoke.yaml")
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _real_available(), reason="real solvers/operators/embedded weights not available yet")
def test_real_solver_end_to_end(tmp_path):
    spec = spec_mod.parse(REPO / "configs" / "smoke.yaml")
    res = driver.run_sweep(spec, tmp_path, num_actors=2, quiet=True)
    assert res.rows_failed == 0 and res.rows_ok + res.rows_diverged == res.total_rows
    df = store.load(tmp_path, run=spec.name)
    assert df[df["status"] == "ok"]["psnr"].between(5, 60).all()
