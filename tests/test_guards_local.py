"""Resource requests a local Ray cannot place are refused before Ray starts and before the store is
touched, naming the cluster's resources (``driver`` + ``cluster.local_resources``)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import cluster, driver, guards, spec as spec_mod

from orchestrator.plugins import ENV as PLUGINS_ENV
from tests.support import FAKES as FAKE

REPO = Path(__file__).resolve().parents[1]


def spec(resources: dict):
    return spec_mod.parse({"name": "res", "prior": "fake", "plugins": [FAKE], "dataset": {"count": 2},
                           "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
                           "solvers": [{"name": "fake", "num_steps": [2]}], "regularizers": [{"kind": "none"}],
                           "metrics": ["psnr"], "resources": resources})


def test_local_resources_are_this_machines():
    res = cluster.local_resources()
    assert res["CPU"] == float(os.cpu_count()) and res.get("GPU", 0.0) >= 0.0


@pytest.mark.parametrize("resources, message", [
    ({"num_gpus": 1}, "resources.num_gpus: 1 per actor but the cluster has CPU 2, GPU 0"),
    ({"num_cpus": 64}, "resources.num_cpus: 64 per actor but the cluster has CPU 2, GPU 0; allowed: at most 2"),
    ({"num_cpus": 0.5, "num_actors": 5}, "allowed: at most 4 actors"),
])
def test_refused_before_ray_starts_and_before_the_store(tmp_path, monkeypatch, resources, message):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("a Ray of this process is up: the cluster check applies instead")
    monkeypatch.setattr(driver, "local_resources", lambda: {"CPU": 2.0, "GPU": 0.0})
    monkeypatch.setattr(driver, "ensure_ray", lambda address=None: pytest.fail("Ray started"))
    store = tmp_path / "store"
    with pytest.raises(guards.GuardError, match=message.replace("(", r"\(")):
        driver.run_sweep(spec(resources), store, quiet=True)
    assert not store.exists()


def test_cli_refuses_an_impossible_request_in_one_line(tmp_path):
    """The real CLI, the real machine: 64 GPUs and 4096 CPUs per actor fit nowhere (the fake plugin
    given through ``$EQUIBENCH_PLUGINS``)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), PLUGINS_ENV: FAKE}
    for i, res in enumerate(("{num_gpus: 64}", "{num_cpus: 4096}")):
        path = tmp_path / f"s{i}.yaml"
        path.write_text("name: res\nprior: fake\ndataset: {count: 2}\n"
                        "tasks: [{operator: fake_mask, sigma_y: [0.05]}]\nsolvers: [{name: fake, num_steps: [2]}]\n"
                        f"regularizers: [{{kind: none}}]\nmetrics: [psnr]\nresources: {res}\n")
        store = tmp_path / f"store{i}"
        proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "run", str(path), "--store", str(store)],
                              capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert "per actor but the cluster has CPU" in lines[0] and "Traceback" not in proc.stderr
        assert not store.exists()
