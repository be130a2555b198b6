"""The benchmarks run end to end at tiny sizes and write the documented keys (values mean nothing).

One subprocess runs ``python -m benchmarks.run_all --quick --out DIR`` (its own local Ray, its own
thread settings), then the JSON and Markdown are checked: every headline key present with the
right type, the machine facts, one target check per target, no benchmark errors.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# three minutes of subprocesses and Ray: `make test-bench` (run by .ci/run) and `make test-all`
pytestmark = pytest.mark.slow

FLOAT_KEYS = ("grid_batching_speedup", "resident_vs_reload_speedup", "orchestration_efficiency_1actor",
              "orchestration_efficiency_2actors", "store_groupby_seconds_1m", "unet_fraction_of_matmul_peak")
TARGETS = {"grid_batching_speedup", "resident_vs_reload_speedup", "orchestration_efficiency_1actor",
           "orchestration_efficiency_2actors",
           "store_groupby_seconds_1m_duckdb", "store_groupby_seconds_1m_pandas"}


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1", RAY_ADDRESS="local")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run_all", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return json.loads((out / "latest.json").read_text()), (out / "latest.md").read_text()


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_quick_keys_and_types(quick_results):
    doc, _ = quick_results
    assert doc["quick"] is True
    assert doc["errors"] == {}
    for key in FLOAT_KEYS:
        assert isinstance(doc[key], float) and not isinstance(doc[key], bool), key
        assert doc[key] > 0, (key, doc[key])
    assert isinstance(doc["store_files_1m"], int) and doc["store_files_1m"] > 0
    m = doc["machine"]
    assert isinstance(m["cores"], int) and m["cores"] >= 1
    assert isinstance(m["torch_version"], str) and m["torch_version"]
    assert isinstance(m["date"], str) and m["date"][:2] == "20"
    assert isinstance(m["cpu_model"], str)
    assert {c["metric"] for c in doc["targets"]} == TARGETS
    for c in doc["targets"]:
        assert isinstance(c["met"], bool) and isinstance(c["target"], str)
    for name, res in doc["benchmarks"].items():
        assert res["quick"] is True and res["measured"], name
        for label, _value, unit in res["measured"]:
            assert isinstance(label, str) and isinstance(unit, str)


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_quick_markdown_lists_every_key(quick_results):
    doc, md = quick_results
    assert md.startswith("# EquiBench benchmarks (QUICK MODE")
    for key in FLOAT_KEYS + ("store_files_1m",):
        assert f"`{key}`" in md, key
    assert "| metric | value | target | met |" in md
    for name in doc["benchmarks"]:
        assert f"bench_{name}.py" in md
