"""``benchmarks/gpu.sh``, the one GPU script (issue 18), runs end to end as its CPU dry run.

``bash benchmarks/gpu.sh --device cpu --tiny --out DIR`` is the same code the GPU runs (the FFHQ-256
architecture shrunk to a 2-level UNet at 16 px, one timed step, the sharded sweep with 1 and 4
actors): the JSON must hold every section with every row solved. Values mean nothing on a CPU; the
keys, the row counts and the statuses do. About 45 s on an idle 2-core machine, so it runs in
``make test-bench`` (``.ci/run``) beside the other benchmarks' dry runs.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _gpu_sh(*args, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(REPO), GPU_BENCH_TIMEOUT=str(timeout - 30))
    env.pop("OUT", None)
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), *args], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    proc = _gpu_sh("--device", "cpu", "--tiny", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-6000:]
    files = sorted(out.glob("gpu-cpu-tiny-*.json"))
    assert len(files) == 1, (list(out.iterdir()), proc.stdout[-3000:])
    return json.loads(files[0].read_text())


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_every_solver_precision_and_batch_is_measured(dry_run):
    assert dry_run["tiny"] is True and dry_run["device"] == "cpu" and dry_run["torch"] == torch.__version__
    runs = dry_run["runs"]
    seen = {(r["solver"], r["precision"], r["batch"]) for r in runs}
    assert seen == {(s, p, b) for s in ("dps", "daps") for p in ("fp32", "bf16") for b in ("batch1", "fit", "lambda_grid")}
    for r in runs:
        assert r["status_ok"] == r["rows"] > 0, r  # every row solved, none diverged or failed
        assert r["s_per_step"] > 0 and r["images_per_hour_paper_budget"] > 0 and r["flops_per_step"] > 0, r
        assert r["gpu_mem_peak_gib"] is None and r["fraction_of_peak"] is None, r  # no GPU: null, never faked
        if r["batch"] != "batch1":
            assert 1 <= r["fit"] <= 2, r  # the tiny cap (--max-batch 2)
    grid = [r for r in runs if r["batch"] == "lambda_grid"]
    assert all(r["lambdas"][0] == 0.0 and len(r["lambdas"]) >= 2 for r in grid)


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_the_sharded_sweep_runs_with_one_and_four_actors(dry_run):
    sweep = dry_run["sweep"]["runs"]
    assert [r["actors"] for r in sweep] == [1, 4]
    for r in sweep:
        assert r["rows"] > 0 and r["rows_ok"] == r["rows"] and r["rows_failed"] == 0 and not r["errors"], r
        assert r["images_per_gpu_hour"] is None and r["utilisation_mean_pct"] is None, r  # CPU: null
    assert dry_run["host_syncs"]["per_step"] is None and "tests/test_gpu_sync.py" in dry_run["host_syncs"]["note"]
    assert dry_run["seconds"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_cuda_without_a_gpu_is_refused_in_one_line(tmp_path):
    proc = _gpu_sh("--device", "cuda", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 2, proc.stdout[-3000:]
    assert "--device cuda but torch.cuda.is_available() is False" in proc.stdout
    assert "Traceback" not in proc.stdout and not list(tmp_path.iterdir())
