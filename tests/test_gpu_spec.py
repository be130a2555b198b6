"""The spec's ``compute`` section: its defaults leave every id as it was; ``precision`` is part of a
config's identity (bf16 and fp32 share solver noise: a paired comparison); bad values are one line
naming the field and the allowed values; the actors receive their settings."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from orchestrator import grid, plan, run_identity, spec as spec_mod

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def _ids(spec):
    configs = grid.expand(spec)
    samples = grid.sample_ids(spec)
    units = plan.plan(configs, samples, spec.unit_rows)
    return ([c.config_id for c in configs], run_identity.grid_hash([c.config_id for c in configs], samples),
            [u.unit_id for u in units], configs, samples)


@pytest.fixture(scope="module")
def demo():
    return yaml.safe_load(DEMO.read_text())


def _with(demo, **compute):
    data = copy.deepcopy(demo)
    data["compute"] = compute
    return spec_mod.parse_sweep(data)


def test_explicit_defaults_change_no_id_no_hash_no_record(demo):
    plain = spec_mod.parse_sweep(copy.deepcopy(demo))
    explicit = _with(demo, precision="fp32", compile=False, channels_last=False, max_batch=None)
    a, b = _ids(plain), _ids(explicit)
    assert a[:3] == b[:3]
    assert "precision" not in a[3][0].canonical() and "precision" not in a[3][0].to_json()
    assert plain.canonical() == explicit.canonical() and "compute" not in plain.canonical()


def test_bf16_is_another_config_with_the_same_solver_noise(demo):
    fp32, bf16 = _ids(spec_mod.parse_sweep(copy.deepcopy(demo))), _ids(_with(demo, precision="bf16"))
    assert not set(fp32[0]) & set(bf16[0]) and fp32[1] != bf16[1] and not set(fp32[2]) & set(bf16[2])
    c32, c16 = fp32[3], bf16[3]
    assert all(c.precision == "bf16" and '"precision":"bf16"' in c.to_json() for c in c16)
    s = fp32[4][0]
    assert [grid.solver_seed(c, s) for c in c32] == [grid.solver_seed(c, s) for c in c16]
    units = plan.plan(c16, fp32[4], 8)
    assert all(u.group["precision"] == "bf16" for u in units)
    assert all("precision" not in u.group for u in plan.plan(c32, fp32[4], 8))


def test_execution_settings_are_not_part_of_any_config(demo):
    base = _ids(spec_mod.parse_sweep(copy.deepcopy(demo)))
    fast = _with(demo, compile=True, channels_last=True, max_batch="auto")
    ids = _ids(fast)
    assert ids[0] == base[0] and ids[1] == base[1]  # same configs, same grid
    assert fast.compute.compile == "inductor" and fast.unit_rows == 256
    assert fast.canonical()["compute"]["max_batch"] == "auto"
    assert fast.compute.actor_options() == {"compile": "inductor", "channels_last": True, "max_batch": "auto"}


@pytest.mark.parametrize("compute, field, allowed", [
    ({"precision": "fp8"}, "compute.precision", "'fp32', 'bf16' or 'fp16'"),
    ({"compile": "tensorrt"}, "compute.compile", "allowed: false, true (= inductor), 'inductor', 'aot_eager'"),
    ({"max_batch": 0}, "compute.max_batch", "allowed: null, an integer >= 1, 'auto'"),
    ({"max_batch": "big"}, "compute.max_batch", "allowed: null, an integer >= 1, 'auto'"),
    ({"max_batch": True}, "compute.max_batch", "allowed: null, an integer >= 1, 'auto'"),
    ({"channels_last": "yes please"}, "compute.channels_last", "boolean"),
    ({"precison": "bf16"}, "compute.precison", "unknown field"),
])
def test_bad_compute_values_are_one_line_naming_field_and_allowed(demo, compute, field, allowed):
    with pytest.raises(spec_mod.SpecError) as exc:
        _with(demo, **compute)
    lines = str(exc.value).splitlines()
    assert len(lines) == 2 and lines[1].strip().startswith(field + ":"), lines
    assert allowed in lines[1], lines[1]


def test_actors_get_the_compute_settings(monkeypatch, demo):
    from orchestrator import cluster
    from orchestrator import worker

    seen = []

    class FakeWorker:
        @staticmethod
        def options(**kw):
            seen.append(("options", kw))
            return FakeWorker

        @staticmethod
        def remote(**kw):
            seen.append(("remote", kw))
            return object()

    monkeypatch.setattr(worker, "Worker", FakeWorker)
    spec = _with(demo, precision="bf16", compile="aot_eager", max_batch=32)
    cluster.start_actors(spec, 2)
    remotes = [kw for what, kw in seen if what == "remote"]
    assert len(remotes) == 2 and all(kw["compute"] == {"compile": "aot_eager", "channels_last": False, "max_batch": 32}
                                     for kw in remotes)
    assert [kw for what, kw in seen if what == "options"][0] == {"num_cpus": 0.5, "num_gpus": 0.0}


def test_the_spec_offers_exactly_the_solvers_precisions():
    """``ComputeSpec.precision``'s literal (kept torch-free for spec parsing) lists ``solvers.precision.PRECISIONS``."""
    import typing

    from orchestrator.spec_compute import ComputeSpec
    from solvers.precision import PRECISIONS

    assert set(typing.get_args(ComputeSpec.model_fields["precision"].annotation)) == set(PRECISIONS)
