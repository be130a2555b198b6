"""Every solver x regularizer through ``equibench solve`` on a CUDA device: a device-correctness check.

What it shows: each path runs on the GPU end to end (models, operators, per-row CUDA generators,
EquiReg, metrics) without a device mismatch, every row finishes ``ok`` with finite output, and the
quality (mean PSNR on a few embedded validation images) is of the same order as the CPU runs of the
same settings (the tuned embedded ones of configs/solvers-table.yaml, as ``equibench solve`` uses by
default). CUDA generators draw other numbers than CPU ones, so outputs are compared
statistically, not bitwise; bitwise row independence on CUDA is what the solver tests check when
run with ``EQUIBENCH_TEST_DEVICE=cuda``.

    python benchmarks/cuda_check.py --out cuda_check.json [--n 8] [--steps 20] [--device cuda]
"""
from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from types import SimpleNamespace

SOLVERS = ("dps", "psld", "resample", "daps", "latent_daps")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tasks", nargs="+", default=["gaussian_blur", "box_inpainting"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/cuda_check_runs"),
                    help="per-run grids and metrics (kept out of --out's folder: the device tool returns few files)")
    args = ap.parse_args(argv)

    from orchestrator.commands import solve as solve_cmd

    results = []
    work = args.work
    for task in args.tasks:
        for solver in SOLVERS:
            for reg in ("equi", "equicon"):
                label = f"{solver}-{reg}-{task}"
                ns = SimpleNamespace(
                    solver=solver, regularizer=reg, lam=0.3, task=task, n=args.n, steps=args.steps,
                    out=work / label, step_size=None, no_tuned=False, mpe=None, group="hflip", reduction="norm",
                    schedule=None, sigma_y=0.05, seed=0, option=[], weights=None, threads=None, device=args.device)
                t0 = time.perf_counter()
                try:
                    solve_cmd.run(ns)
                    rec = json.loads((work / label / "metrics.json").read_text())
                    mean = {k: sum(v["psnr"]) / len(v["psnr"]) for k, v in rec["metrics"].items()}
                    finite = all(math.isfinite(p) for v in rec["metrics"].values() for p in v["psnr"])
                    results.append({"run": label, "ok": finite and all(s == "ok" for st in rec["status"].values() for s in st),
                                    "device": rec.get("device"), "mean_psnr": mean, "status": rec["status"],
                                    "seconds_per_image": rec["seconds_per_image"], "wall_s": time.perf_counter() - t0})
                except Exception as exc:  # recorded, the check goes on
                    results.append({"run": label, "ok": False, "error": repr(exc), "traceback": traceback.format_exc()})
                print(json.dumps(results[-1])[:400], flush=True)
    import torch

    summary = {"device": args.device, "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
               "torch": torch.__version__, "n": args.n, "steps": args.steps, "all_ok": all(r["ok"] for r in results),
               "results": results}
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"all_ok={summary['all_ok']} ({sum(r['ok'] for r in results)}/{len(results)}) -> {args.out}")
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
