"""GPU actors: several per GPU (fractional num_gpus), one process per GPU, placement on multi-GPU nodes,
checked on fake cluster resources (``orchestrator.placement``, ``cluster.auto_actors``, the guards) and
on a local Ray that is told it has GPUs."""
from __future__ import annotations

import os

import pytest

from orchestrator import cluster, guards, placement, spec as spec_mod
from orchestrator.worker import WorkerCore


def node(cpu, gpu=0, alive=True):
    return {"Alive": alive, "Resources": {"CPU": float(cpu), **({"GPU": float(gpu)} if gpu else {})}}


@pytest.mark.parametrize("nodes, num_gpus, num_cpus, expected", [
    ([node(16, 1)], 0.25, 0.5, 4),            # four actors share the one GPU
    ([node(16, 1)], 0.1, 0.5, 10),            # 1 // 0.1 is 9.0 in floating point: counted as 10
    ([node(16, 2)], 0.4, 0.5, 4),             # 2 per GPU (0.8 used), not floor(2 / 0.4) = 5
    ([node(16, 8)], 1, 1, 8),                 # one process per GPU
    ([node(3, 8)], 0.5, 1, 3),                # CPUs bound GPU actors too
    ([node(16, 3), node(16, 3)], 2, 1, 2),    # whole GPUs per node: 1 + 1, not floor(6 / 2) = 3
    ([node(16, 4), node(16, 4, alive=False)], 1, 1, 4),  # a dead node holds nothing
    ([node(2)], 0, 0.5, 2),                   # CPU actors: CPUs / max(threads = 1, num_cpus)
])
def test_capacity_node_by_node_gpu_by_gpu(nodes, num_gpus, num_cpus, expected):
    assert placement.capacity(nodes, num_gpus, num_cpus) == expected


def _spec(**resources):
    return spec_mod.parse({"name": "a", "prior": "embedded", "dataset": {"count": 1},
                           "tasks": [{"operator": "gaussian_blur"}], "solvers": [{"name": "tv_pd", "num_steps": [1]}],
                           "metrics": ["psnr"], "resources": resources})


def test_auto_actors_packs_fractions_per_gpu_on_multi_gpu_nodes(monkeypatch):
    import ray

    monkeypatch.setattr(ray, "nodes", lambda: [node(32, 2), node(32, 2)])
    assert cluster.auto_actors(_spec(num_gpus=0.4, num_cpus=0.5), 100) == 8  # 2 per GPU x 4 GPUs
    assert cluster.auto_actors(_spec(num_gpus=1, num_cpus=1), 100) == 4
    assert cluster.auto_actors(_spec(num_gpus=0.25, num_cpus=0.5), 3) == 3  # never more than the units


def test_guards_count_whole_gpus_for_fractions():
    spec = _spec(num_gpus=0.4, num_cpus=0.5)
    guards.check_resources(spec, {"CPU": 16.0, "GPU": 2.0}, 4)
    with pytest.raises(guards.GuardError, match="allowed: at most 4 actors"):
        guards.check_resources(spec, {"CPU": 16.0, "GPU": 2.0}, 5)


@pytest.mark.parametrize("bad, msg", [(1.5, "whole number"), (-1, "greater than or equal to 0")])
def test_num_gpus_above_one_must_be_whole(bad, msg):
    with pytest.raises(spec_mod.SpecError, match=r"resources\.num_gpus") as exc:
        _spec(num_gpus=bad)
    assert msg in str(exc.value)
    assert _spec(num_gpus=2).resources.num_gpus == 2


def test_a_gpu_actor_without_cuda_refuses_instead_of_running_on_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the actor would use it")
    with pytest.raises(RuntimeError, match=r"resources\.num_gpus > 0 but torch\.cuda\.is_available\(\) is False"):
        WorkerCore(use_gpu=True, name="g")


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_ray_places_fractional_and_whole_gpu_actors_on_distinct_gpus():
    """A local Ray told it has 2 GPUs: 0.5-GPU actors land two per GPU, 1-GPU actors one per GPU, each
    actor its own process with ``CUDA_VISIBLE_DEVICES`` naming its GPU (what ``cuda`` means inside it)."""
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray of another test is running in this process")
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        @ray.remote
        class Probe:
            def where(self):
                return os.getpid(), tuple(str(g) for g in ray.get_gpu_ids()), os.environ.get("CUDA_VISIBLE_DEVICES")

        for num_gpus, expected in ((0.5, 4), (1, 2)):
            spec = _spec(num_gpus=num_gpus, num_cpus=0.5)
            n = cluster.auto_actors(spec, 100)
            assert n == expected
            actors = [Probe.options(**placement.actor_options(spec.resources)).remote() for _ in range(n)]
            got = ray.get([a.where.remote() for a in actors], timeout=120)
            pids = {p for p, _, _ in got}
            per_gpu = {}
            for _, ids, visible in got:
                assert len(ids) == 1 and visible == ids[0]
                per_gpu[ids[0]] = per_gpu.get(ids[0], 0) + 1
            assert len(pids) == n  # one process per actor
            assert sorted(per_gpu.values()) == [n // 2, n // 2]  # both GPUs used, evenly
            for a in actors:
                ray.kill(a)
    finally:
        ray.shutdown()
