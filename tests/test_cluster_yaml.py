"""cluster.yaml (AWS GPU) and cluster.local.yaml (local provider) pass Ray's own config schema."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name,provider", [("cluster.yaml", "aws"), ("cluster.local.yaml", "local")])
def test_cluster_config_validates(name, provider):
    cfg = yaml.safe_load((REPO / name).read_text())
    assert cfg["provider"]["type"] == provider
    prepared = prepare_config(copy.deepcopy(cfg))
    validate_config(prepared)  # raises on any schema violation
    if provider == "aws":
        gpu = prepared["available_node_types"]["gpu_worker"]
        assert gpu["resources"]["GPU"] >= 1 and gpu["node_config"]["InstanceType"].startswith(("g", "p"))


def test_schema_check_is_not_vacuous():
    cfg = yaml.safe_load((REPO / "cluster.yaml").read_text())
    cfg["max_workers"] = "four"
    with pytest.raises(Exception):
        validate_config(prepare_config(cfg))
