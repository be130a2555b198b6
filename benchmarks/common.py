"""Shared benchmark helpers: timing, repetitions and medians, machine facts, the embedded world.

Why these pieces:

* **Interleaved repetitions** (``interleave``): the machines are shared and noisy, so the two sides
  of a ratio are run alternately (A, B, A, B, ...) in one process, and each ratio is the median of
  the per-repetition ratios (adjacent in time, so they saw the same load). Medians of each side are
  reported too.
* **Machine facts** (``machine_info``): cores, CPU model, torch version and threads, the date and the
  load average when the benchmark started, so a number can be read against the machine that gave it.
* **The embedded world** (``embedded_root``): benchmarks measure the real loaders and solvers on the
  embedded 32x32 models. Until the trained weights exist (``solvers/embedded/weights/``), a
  freshly initialised copy of the same architectures is saved in the same layout under
  ``benchmarks/results/tmp-random-weights/`` and loaded through the same loaders, so timings do not
  depend on whether training has finished (weights change values, not cost). Results say which was
  used (``weights``).
* **A uniform result shape** (``result``) that ``run_all`` turns into JSON and Markdown.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # torch.profiler: no CUDA-probe chatter on CPU machines

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
RANDOM_WEIGHTS_DIR = RESULTS_DIR / "tmp-random-weights"  # gitignored (benchmarks/results/tmp*/)
PLUGIN = "benchmarks.backend"  # the plugin (``orchestrator.plugins``) that points the embedded prior at the fallback weights
#: Set by ``run_all``: a benchmark that started Ray in this process leaves it running for the next
#: one (run_all shuts it down at the end); a benchmark run alone shuts down what it started.
KEEP_RAY = False
#: Seconds the local Ray took to start in this process (set by ``bench_orchestration.start_ray``).
RAY_INIT_S: float | None = None


# ------------------------------------------------------------------------------------ machine
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (affinity), which is what the benchmarks can use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_info() -> dict:
    """Facts about the machine and software a number was measured on."""
    import torch

    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    try:
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1)
    except (ValueError, OSError, AttributeError):
        mem_gib = None
    git = None
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
        git = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cores": usable_cores(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": mem_gib,
        "torch_version": torch.__version__,
        "torch_threads_default": torch.get_num_threads(),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "load_average_1_5_15": load,
        "git": git,
    }


def load_average() -> float | None:
    """The 1-minute load average (a noise indicator recorded next to each measurement)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


@contextlib.contextmanager
def torch_threads(n: int):
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count after."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(prev)


# ------------------------------------------------------------------------------------- timing
def timed(fn: Callable, *args, **kwargs) -> tuple[float, Any]:
    """``(seconds, fn(*args, **kwargs))`` with ``time.perf_counter``."""
    t0 = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - t0, value


def repeat(fn: Callable[[], Any], reps: int, warmup: int = 0) -> list[float]:
    """Seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return [timed(fn)[0] for _ in range(reps)]


def interleave(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 0) -> dict[str, list[float]]:
    """Seconds per call for each of ``fns``, run alternately ``reps`` times (after ``warmup`` rounds).

    The order rotates every repetition (A B C, B C A, ...) so no side always runs right after
    another (caches, thermal or load drift are spread over all sides).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(timed(fns[name])[0])
    return out


def median(xs) -> float:
    return float(statistics.median(xs))


def summary(xs) -> dict:
    """``{"median", "min", "max", "n", "values"}`` of a list of seconds (or any numbers)."""
    xs = [float(x) for x in xs]
    return {"median": round(median(xs), 6), "min": round(min(xs), 6), "max": round(max(xs), 6), "n": len(xs),
            "values": [round(x, 6) for x in xs]}


def ratio_of_medians(num, den) -> float:
    return median(num) / median(den)


def median_ratio(num, den) -> float:
    """Median of the per-repetition ratios ``num[i] / den[i]`` (pairs adjacent in time)."""
    return median([a / b for a, b in zip(num, den)])


# ------------------------------------------------------------------------------------ results
def check(metric: str, value, target: float, op: str = ">=") -> dict:
    """A target check: ``{"metric", "value", "target", "met"}`` (``met`` is None without a value)."""
    if value is None:
        met = None
    elif op == ">=":
        met = bool(value >= target)
    elif op == "<":
        met = bool(value < target)
    elif op == "<=":
        met = bool(value <= target)
    else:
        raise ValueError(f"op must be one of '>=', '<', '<=', got {op!r}")
    return {"metric": metric, "value": value, "target": f"{op} {target}", "met": met}


def result(name: str, title: str, *, metrics: dict, checks: list, measured: list, details: dict | None = None,
           notes: list | None = None, seconds: float | None = None, quick: bool = False) -> dict:
    """The uniform shape every benchmark returns.

    ``metrics``: the top-level keys for ``latest.json`` (``grid_batching_speedup``, ...).
    ``checks``: ``check(...)`` dicts, one per target. ``measured``: ``[label, value, unit]`` rows,
    every number measured (the Markdown table). ``details``: raw repetitions and sizes.
    ``notes``: what limits a number, definitions, caveats.
    """
    return {"name": name, "title": title, "quick": quick, "metrics": metrics, "checks": checks,
            "measured": [[str(a), b, str(c)] for a, b, c in measured], "details": details or {},
            "notes": list(notes or []), "seconds": None if seconds is None else round(seconds, 2)}


def dump(obj) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


def main(run: Callable[..., dict], argv=None) -> int:
    """``python -m benchmarks.bench_x [--quick]``: run one benchmark and print its JSON."""
    import argparse

    p = argparse.ArgumentParser(description=(run.__doc__ or "").splitlines()[0] if run.__doc__ else None)
    p.add_argument("--quick", action="store_true", help="tiny sizes (seconds), for tests")
    args = p.parse_args(argv)
    print(dump(run(quick=args.quick)))
    return 0


# ------------------------------------------------------------------------------ embedded world
def trained_weights_present() -> bool:
    """True when every file the embedded pixel and latent priors need exists (training finished)."""
    from solvers.loaders import EMBEDDED_ROOT

    root = Path(EMBEDDED_ROOT)
    need = [root / "pixel" / "unet" / "config.json", root / "pixel" / "scheduler",
            root / "latent" / "unet" / "config.json", root / "latent" / "vae" / "config.json",
            root / "latent" / "scheduler", root / "latent" / "latent_scale.json"]
    return all(p.exists() for p in need)


def _save_random_weights(target: Path, seed: int = 0) -> None:
    """Freshly initialised embedded models (same configs as training) in the loaders' layout."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DModel

    quiet_diffusers()
    from solvers.embedded import train

    torch.manual_seed(seed)
    UNet2DModel(**train.PIXEL_UNET).save_pretrained(target / "pixel" / "unet")
    DDPMScheduler(**train.PIXEL_SCHEDULE, clip_sample=False).save_pretrained(target / "pixel" / "scheduler")
    AutoencoderKL(**train.AUTOENCODER).save_pretrained(target / "latent" / "vae")
    UNet2DModel(**train.LATENT_UNET).save_pretrained(target / "latent" / "unet")
    DDPMScheduler(**train.LATENT_SCHEDULE, clip_sample=False).save_pretrained(target / "latent" / "scheduler")
    (target / "latent" / "latent_scale.json").write_text(json.dumps({"scale": 1.0}))


def random_weights_root() -> Path:
    """``benchmarks/results/tmp-random-weights`` (built once, atomically by rename)."""
    if (RANDOM_WEIGHTS_DIR / "latent" / "latent_scale.json").exists():
        return RANDOM_WEIGHTS_DIR
    partial = RANDOM_WEIGHTS_DIR.with_name(f"{RANDOM_WEIGHTS_DIR.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    _save_random_weights(partial)
    try:
        os.rename(partial, RANDOM_WEIGHTS_DIR)
    except OSError:  # another process won the race: use its copy
        shutil.rmtree(partial, ignore_errors=True)
    return RANDOM_WEIGHTS_DIR


def embedded_root() -> tuple[Path, str]:
    """``(weights root, label)``: the trained embedded weights, else the random-init stand-in."""
    from solvers.loaders import EMBEDDED_ROOT

    if trained_weights_present():
        return Path(EMBEDDED_ROOT), "trained"
    return random_weights_root(), "random-init (trained weights not present yet; same architectures)"


def quiet_diffusers() -> None:
    """Silence diffusers' per-load advice (``accelerate`` not installed): it is not a measurement."""
    try:
        from diffusers.utils import logging as dlog

        dlog.set_verbosity_error()
    except ImportError:
        pass


@functools.lru_cache(maxsize=None)
def pixel_world(device: str = "cpu"):
    """``(pixel prior, MPE autoencoder, weights label)`` through ``solvers.loaders`` (cached per
    process: benchmarks in one ``run_all`` share the loaded models; loading is not what they time)."""
    from solvers.loaders import load_autoencoder, load_prior

    quiet_diffusers()

    root, label = embedded_root()
    prior = load_prior({"kind": "embedded", "name": "pixel", "root": str(root)}, device=device)
    ae = load_autoencoder({"kind": "embedded", "root": str(root)}, device=device)
    return prior, ae, label


def val_images(n: int):
    """The first ``n`` validation images of the embedded dataset, (n, 3, 32, 32) in [-1, 1]."""
    from orchestrator import data

    size = data.info("embedded").sizes["report"]
    ids = [i % size for i in range(n)]
    return data.load("embedded", "report", ids)


def dps_equi_batch(prior, autoencoder, images, lams, seeds, *, task: str = "box_inpainting",
                   sigma_y: float = 0.05, step_size: float = 1.0):
    """A ``RowBatch`` of DPS rows: row i is image ``images[i]`` with lambda ``lams[i]``.

    Operator instances and noise are seeded per row from ``seeds`` (as the worker does), so the
    same row gets the same measurement in any batch.
    """
    import torch

    from orchestrator.problem import make_measurement, task_params
    from solvers import RegularizerSpec, RowBatch
    from solvers.rng import make_generators, row_seed

    B = images.shape[0]
    m = make_measurement("embedded", "report", range(B), task, task_params("embedded", task), sigma_y,
                         op_seeds=[row_seed("op", s) for s in seeds], noise_seeds=[row_seed("noise", s) for s in seeds],
                         x_true=images)
    op, y = m.operator, m.y
    batch = RowBatch(y=y, operator=op, generators=make_generators([row_seed("solver", s) for s in seeds]),
                     params={"lam": torch.as_tensor(lams, dtype=images.dtype),
                             "step_size": torch.full((B,), float(step_size), dtype=images.dtype)})
    reg = RegularizerSpec(kind="equi", mpe="autoencoder", group="hflip", autoencoder=autoencoder)
    return batch, reg


def profile_top(fn: Callable[[], Any], top: int | None = 8) -> list[dict]:
    """The ``top`` ops (all: None) by self CPU time of one call of ``fn`` (torch.profiler), each
    with its share of the call's total self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return [{"op": e.key, "self_cpu_ms": round(e.self_cpu_time_total / 1e3, 2),
             "share": round(e.self_cpu_time_total / total, 3), "calls": int(e.count)} for e in events[:top]]


def python_env() -> dict:
    """Environment for subprocesses: the repo on ``PYTHONPATH``, unbuffered, offline hub."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["PYTHONUNBUFFERED"] = "1"
    return env


PYTHON = sys.executable
