"""``equibench plan`` on a 10^6-config grid, ``--help``, and a refused resource request: wall times.

Each timing is a fresh ``equibench`` process (what a user waits for: interpreter start, imports,
spec parse and validation included), ``reps`` repetitions, medians reported with every repetition;
CPU seconds are the child's user + system time (``resource.getrusage``). The machine is shared:
the load average is recorded at the start and end, and the timings are upper bounds.

- ``plan``: a generated spec (embedded prior, DPS, box inpainting; 2 step counts x 10 step sizes x
  2 noise levels x 50 seeds x (baseline + 499 lambdas) = 1,000,000 configs x 8 images), no store.
  The printed config count must be 1,000,000 and the counts come from ``grid_count`` (no Config
  is built). For contrast, ``grid.expand`` of a 10^4-config slice of the same spec is timed in
  process, and the per-config expansion rate projects what expanding 10^6 would take.
- ``--help``: ``equibench --help`` and ``equibench run --help`` (no torch, Ray or pandas imported).
- refused request: ``equibench run`` of a 2-row spec with ``resources: {num_gpus: 1}`` on a CPU
  machine, and with ``num_cpus: 64`` (checked before the store is touched or Ray starts).

    nice -n 15 .venv/bin/python -m benchmarks.plan_scale [--quick]   # -> benchmarks/results/plan_scale.json
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common as C

RESULTS_PATH = C.RESULTS_DIR / "plan_scale.json"
EQUIBENCH = [sys.executable, "-m", "orchestrator.cli"]
FULL = dict(seeds=50, lambdas=499, reps=3, expand_seeds=1, expand_lambdas=249)
QUICK = dict(seeds=2, lambdas=9, reps=1, expand_seeds=1, expand_lambdas=9)


def spec_dict(name: str, seeds: int, lambdas: int, resources: dict | None = None, count: int = 8) -> dict:
    """2 x 10 x 2 x ``seeds`` x (1 + ``lambdas``) configs (1,000,000 at 50 seeds and 499 lambdas)."""
    d = {
        "name": name, "prior": "embedded", "dataset": {"name": "embedded", "split": "report", "count": count},
        "tasks": [{"operator": "box_inpainting", "sigma_y": [0.05, 0.1]}],
        "solvers": [{"name": "dps", "num_steps": [20, 50], "step_sizes": [0.1 * (i + 1) for i in range(10)]}],
        "regularizers": [{"kind": "none"}] + ([{"kind": "equi", "lambdas": [round(0.001 * (i + 1), 6) for i in range(lambdas)]}]
                                              if lambdas else []),
        "seeds": list(range(seeds)), "metrics": ["psnr"],
    }
    if resources:
        d["resources"] = resources
    return d


def write_spec(folder: Path, d: dict) -> Path:
    path = folder / f"{d['name']}.yaml"
    path.write_text(json.dumps(d))  # JSON is YAML
    return path


def cli(args: list[str]) -> dict:
    """One fresh ``equibench ARGS`` process: wall and CPU seconds, exit code, output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(EQUIBENCH + args, capture_output=True, text=True, cwd=C.REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(C.REPO_ROOT)})
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "rc": proc.returncode,
            "out": (proc.stdout + proc.stderr).strip()}


def timed_cli(args: list[str], reps: int) -> dict:
    runs = [cli(args) for _ in range(reps)]
    return {"median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 3),
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
            "wall_s": [r["wall_s"] for r in runs], "rc": runs[-1]["rc"], "output": runs[-1]["out"]}


def expand_rate(folder: Path, seeds: int, lambdas: int) -> dict:
    """``grid.expand`` (Configs + ids) of a slice, in process: configs per second."""
    from orchestrator import grid, grid_count, spec as spec_mod

    spec = spec_mod.parse_sweep(str(write_spec(folder, spec_dict("expand-slice", seeds, lambdas))))
    t0 = time.perf_counter()
    n = len(grid.expand(spec))
    expand_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    counted = grid_count.count(spec, samples=8)
    count_s = time.perf_counter() - t0
    assert counted.configs == n, (counted.configs, n)
    return {"configs": n, "expand_s": round(expand_s, 3), "count_s": round(count_s, 4),
            "configs_per_s": round(n / expand_s), "projected_expand_1e6_s": round(1e6 * expand_s / n, 1)}


def run(quick: bool = False) -> dict:
    p = QUICK if quick else FULL
    load_start = C.load_average()
    with tempfile.TemporaryDirectory(prefix="equibench-plan-scale-") as tmp:
        folder = Path(tmp)
        big = write_spec(folder, spec_dict("plan-scale", p["seeds"], p["lambdas"]))
        n_configs = 2 * 10 * 2 * p["seeds"] * (1 + p["lambdas"])
        plan = timed_cli(["plan", str(big)], p["reps"])
        assert plan["rc"] == 0 and f"{n_configs:,} configs" in plan["output"], plan["output"]
        helps = {"--help": timed_cli(["--help"], p["reps"]), "run --help": timed_cli(["run", "--help"], p["reps"])}
        refused = {}
        for label, res in (("num_gpus: 1", {"num_gpus": 1}), ("num_cpus: 64", {"num_cpus": 64})):
            spec = write_spec(folder, spec_dict(f"refused-{label.split(':')[0]}", 1, 0, res, count=2))
            got = timed_cli(["run", str(spec), "--store", str(folder / "store")], p["reps"])
            assert got["rc"] == 2 and "the cluster has" in got["output"], got["output"]
            refused[label] = got
        assert not (folder / "store").exists(), "a refused request touched the store"
        contrast = expand_rate(folder, p["expand_seeds"], p["expand_lambdas"])
    return {
        "name": "plan_scale", "quick": quick, "machine": C.machine_info(),
        "load_average_start": load_start, "load_average_end": C.load_average(),
        "plan": {"configs": n_configs, "rows": n_configs * 8, **plan},
        "help": helps, "refused_resources": refused, "expand_contrast": contrast,
    }


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="equibench plan on 10^6 configs, --help, a refused resource request")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds); writes nothing to benchmarks/results")
    args = ap.parse_args(argv)
    res = run(quick=args.quick)
    text = json.dumps(res, indent=2, default=str)
    if not args.quick:
        RESULTS_PATH.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
