"""The cluster side of a sweep: code version, Ray start/attach, actor count and actor start.

Kept apart from the driver loop (``orchestrator.driver`` re-exports these names).
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from orchestrator.spec import SweepSpec

REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """``git describe`` of the checkout (``-dirty`` when modified), else the package version."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return f"equibench-{version('equibench')}"
    except Exception:  # noqa: BLE001
        return "unknown"


def ensure_ray(address: str | None = None) -> bool:
    """Connect to ``address`` or start local Ray with this machine's CPUs; True if we started it."""
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
    kwargs = dict(include_dashboard=False, log_to_driver=True, configure_logging=False, runtime_env=env)
    if address:
        ray.init(address=address, **kwargs)
        return True
    # address='local' always starts a fresh local Ray, never attaching to another process's
    # cluster (ray.init() alone may connect to the latest one found under /tmp/ray). On an
    # overloaded machine the raylet can miss Ray's start-up deadline: retry once before failing.
    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=os.cpu_count(), **kwargs)
            return True
        except Exception:  # noqa: BLE001 - Ray raises several types for a start-up timeout
            if attempt == 2:
                raise
            ray.shutdown()
            time.sleep(2.0)
    return True


def auto_actors(spec: SweepSpec, n_units: int) -> int:
    """As many actors as the cluster can hold (GPUs / num_gpus, or CPUs / threads), at most n_units."""
    import ray

    res = ray.cluster_resources()
    r = spec.resources
    if r.num_gpus > 0:
        n = int(res.get("GPU", 0) // r.num_gpus)
    else:
        n = int(res.get("CPU", 1) // max(r.threads, r.num_cpus))
    return max(1, min(n, n_units))


def start_actors(spec: SweepSpec, n: int, backend: str | None = None, name: str | None = None) -> list:
    """``n`` Worker actors with the spec's resources (fractional CPUs/GPUs, explicit threads)."""
    from orchestrator.worker import Worker

    r = spec.resources
    return [
        Worker.options(num_cpus=r.num_cpus, num_gpus=r.num_gpus).remote(
            backend=backend, threads=r.threads, use_gpu=r.num_gpus > 0, metric_weights=dict(spec.metric_weights),
            name=f"{name or spec.name}-{i}")
        for i in range(n)
    ]
