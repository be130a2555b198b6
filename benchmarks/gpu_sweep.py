"""A sharded sweep on the embedded world with 1 and N actors on one device: images per GPU-hour.

The real path (``orchestrator.driver.run_sweep``: Ray actors, work units, the store): DPS (20 steps)
and DAPS (10 levels), each without and with EquiReg at two lambdas, on Gaussian deblurring, 32
images (192 rows in units of 32; ``tiny``: DPS, 2 steps, 4 rows in 4 units). Ray is
started once, before the sweeps, so each sweep's wall time counts its actors' start (model loads)
and its units, not Ray's own start. On CUDA each actor takes ``1 / N`` of the GPU
(``resources.num_gpus``); on CPU (the dry run) half a CPU each.

Utilisation: sampled every 0.25 s during each sweep from ``torch.cuda.utilization()`` (needs
``pynvml``), else ``nvidia-smi --query-gpu=utilization.gpu``; neither available (or a CPU run):
``null``, with a note saying which.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time


def _util_reader(device):
    """``(read() -> percent, source)`` or ``(None, why not)``."""
    import torch

    if device.type != "cuda":
        return None, "CPU run: no GPU utilisation"
    try:
        torch.cuda.utilization(device)
        return (lambda: float(torch.cuda.utilization(device))), "torch.cuda.utilization (pynvml)"
    except Exception as exc:  # noqa: BLE001 - pynvml missing or NVML unavailable: try nvidia-smi
        why = f"torch.cuda.utilization: {type(exc).__name__}: {exc}"[:200]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None, why + "; nvidia-smi not on PATH"
    index = device.index or 0

    def read():
        out = subprocess.run([smi, f"--id={index}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5)
        return float(out.stdout.strip().splitlines()[0])

    try:
        read()
    except Exception as exc:  # noqa: BLE001
        return None, why + f"; nvidia-smi: {type(exc).__name__}: {exc}"[:200]
    return read, "nvidia-smi --query-gpu=utilization.gpu"


class _Sampler(threading.Thread):
    def __init__(self, read, period: float = 0.25):
        super().__init__(daemon=True)
        self.read, self.period, self.values = read, period, []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.values.append(self.read())
            except Exception:  # noqa: BLE001 - one missed sample is not a measurement
                pass
            self.stop.wait(self.period)


def sweep_spec(name: str, n_actors: int, device, tiny: bool) -> dict:
    gpu = device.type == "cuda"
    if tiny:  # 4 rows in 4 units (so 4 actors all get one): DPS, 2 steps, 2 images, none + one lambda
        solvers, lambdas, count, batch = [{"name": "dps", "num_steps": [2]}], {"dps": [0.3]}, 2, 1
    else:
        solvers = [{"name": "dps", "num_steps": [20]}, {"name": "daps", "num_steps": [10]}]
        lambdas, count, batch = {"dps": [0.03, 0.3], "daps": [500.0, 5000.0]}, 32, 32
    return {
        "name": name, "prior": "embedded", "dataset": {"name": "embedded", "split": "report", "count": count},
        "tasks": [{"operator": "gaussian_blur", "sigma_y": [0.05]}], "solvers": solvers,
        "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1], "solver_lambdas": lambdas}],
        "metrics": ["psnr", "ssim"], "batch_size": batch, "save_images": "none", "compact": False,
        "resources": {"num_actors": n_actors, "threads": 1,
                      **({"num_gpus": 1.0 / n_actors, "num_cpus": 1.0} if gpu else {"num_gpus": 0, "num_cpus": 0.5})},
    }


def run(device, tiny: bool, actor_counts=(1, 4), clock=None) -> dict:
    import ray

    from orchestrator import spec as spec_mod
    from orchestrator.cluster import ensure_ray
    from orchestrator.driver import run_sweep

    read, source = _util_reader(device)
    out = {"utilisation_source": source if read else None, "notes": [] if read else [f"utilisation null: {source}"],
           "runs": []}
    t0 = time.perf_counter()
    started = ensure_ray(None)
    out["ray_start_s"] = round(time.perf_counter() - t0, 2)
    work = tempfile.mkdtemp(prefix="equibench-gpu-sweep-")
    try:
        for n in actor_counts:
            if clock is not None and clock.left() < (15 if tiny else 60):
                out["runs"].append({"actors": n, "skipped": f"time budget: {clock.left():.0f} s left"})
                continue
            spec = spec_mod.parse_sweep(sweep_spec(f"gpu-sweep-{n}", n, device, tiny))
            sampler = _Sampler(read) if read else None
            if sampler:
                sampler.start()
            t1 = time.perf_counter()
            res = run_sweep(spec, f"{work}/store-{n}", num_actors=n, quiet=True)
            wall = time.perf_counter() - t1
            if sampler:
                sampler.stop.set()
                sampler.join()
            util = sampler.values if sampler else []
            out["runs"].append({
                "actors": n, "num_gpus_per_actor": spec.resources.num_gpus, "rows": res.total_rows, "rows_ok": res.rows_ok,
                "rows_failed": res.rows_failed, "units": res.units, "wall_s": round(wall, 2),
                "images_per_gpu_hour": round(res.rows_ok / wall * 3600, 1) if device.type == "cuda" else None,
                "images_per_hour": round(res.rows_ok / wall * 3600, 1),
                "utilisation_mean_pct": round(sum(util) / len(util), 1) if util else None,
                "utilisation_max_pct": max(util) if util else None, "utilisation_samples": len(util),
                "errors": [str(e)[:300] for e in res.errors][:3]})
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    runs = [r for r in out["runs"] if "rows_ok" in r]
    if len(runs) >= 2 and runs[0]["wall_s"] > 0:
        out["speedup_last_vs_first"] = round(runs[0]["wall_s"] / runs[-1]["wall_s"], 3)
    out["notes"].append("wall_s: each sweep's actors start (and load their models) inside it; Ray's start is not in it")
    return out
