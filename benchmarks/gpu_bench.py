"""What one GPU does with EquiBench in minutes: throughput, memory and FLOP rate of DPS and DAPS on the
FFHQ-256 guided-diffusion architecture, host syncs per step, and a sharded sweep (``benchmarks/gpu.sh``).

    python -m benchmarks.gpu_bench --device cuda --out benchmarks/results        (about 6 minutes on an H200)
    python -m benchmarks.gpu_bench --device cpu --tiny --out /tmp/x              (the dry run: same code, tiny sizes)

1. **Solvers** (``--solvers dps daps`` x ``--precisions fp32 bf16``) on the FFHQ-256 architecture
   (``solvers.guided_unet``, ``GUIDED_CONFIGS["ffhq256"]``, 93.6 M parameters, random weights: weights
   change values, not cost), Gaussian deblurring at 256 px (61 px kernel, std 3), three batches each:
   ``batch1``; ``fit``: the largest batch that fits (``orchestrator.gpu_batch.largest_fit``: one-step
   probes, bisection on ``torch.cuda.OutOfMemoryError``, at most ``--max-batch``); ``lambda_grid``:
   EquiReg (``equi``, MPE = the encoder of a Stable-Diffusion-VAE-shaped AutoencoderKL, random weights)
   with ``--lambdas`` lambdas x as many images as fit, in one batch. Each: seconds per step (DPS: a
   DDPM step, one network forward + backward; DAPS: one annealing level, 5 ODE network calls + the
   task's 100 Langevin steps), images/hour at the paper budget (DPS 1000 steps, DAPS 200 levels),
   peak GPU memory, FLOPs per step (``benchmarks.gpu_peaks.FlopCounter``) and achieved TFLOP/s against
   the card's peak (``gpu_peaks.PEAKS``; bf16 runs against the BF16 tensor peak, fp32 ones against TF32
   when cuDNN may use it).
2. **Host syncs per step** (CUDA): every diffusion solver at N and 2N steps under
   ``torch.cuda.set_sync_debug_mode("warn")``, counting the warnings (the CPU test,
   ``tests/test_gpu_sync.py``, can only count tensor reads; this also sees host<->device copies).
3. **Sharded sweep** on the embedded world (``benchmarks.gpu_sweep``): 1 and 4 actors on the one GPU.

Every section checks the time left (``--budget-s``) and is skipped with a note when it would not
fit; a failing section is recorded (``error``) and the rest still runs. Writes
``OUT/gpu-<device>-<date>.json`` (``--tiny``: ``gpu-<device>-tiny-<date>.json``).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
import traceback
import warnings
from pathlib import Path

import torch

from benchmarks import gpu_peaks
from orchestrator.gpu_batch import attempt, largest_fit

PAPER_BUDGET = {"dps": 1000, "daps": 200}  # DPS-1000 steps; DAPS-1K: 200 annealing levels x 5 ODE steps
FULL = dict(size=256, config="ffhq256", max_batch=256, vae=(128, 256, 512, 512), vae_layers=2,
            timed_steps={"dps": 4, "daps": 1})
TINY = dict(size=16, config="tiny", max_batch=2, vae=(32, 32), vae_layers=1, timed_steps={"dps": 1, "daps": 1})


class Clock:
    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), float(budget_s)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.t0)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------- the world
def ffhq_world(device, tiny: bool, seed: int = 0):
    """``(prior, autoencoder, operator builder, images)``: the FFHQ-256 architecture (tiny: a 2-level
    guided UNet at 32 px, the same code) and an SD-VAE-shaped AutoencoderKL, random weights."""
    from diffusers import AutoencoderKL

    from solvers.guided_unet import GUIDED_CONFIGS, GuidedUNet, GuidedUNetConfig
    from solvers.loaders_diffusers import KLCodec
    from solvers.priors import Autoencoder, UNetPrior, VPSchedule

    p = TINY if tiny else FULL
    cfg = (GuidedUNetConfig(image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,),
                            num_heads=1, num_head_channels=32) if tiny else GUIDED_CONFIGS[p["config"]])
    torch.manual_seed(seed)
    with torch.device(device):
        net = GuidedUNet(cfg).eval()
        n = len(p["vae"])
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=p["vae"],
                            down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                            layers_per_block=p["vae_layers"], norm_num_groups=32).eval()
    for m in (net, vae):
        for q in m.parameters():
            q.requires_grad_(False)
    size = p["size"]
    prior = UNetPrior(net, VPSchedule.linear(1000), (3, size, size), name=f"guided:{p['config']}-random")
    codec = KLCodec(vae)
    f = 2 ** (n - 1)
    ae = Autoencoder(codec.encode, codec.decode, latent_shape=(4, size // f, size // f), image_shape=(3, size, size),
                     modules=codec, scale=0.18215)
    g = torch.Generator().manual_seed(seed + 1)
    low = torch.rand(8, 3, 8, 8, generator=g) * 2 - 1  # smooth test images: upsampled noise, in [-1, 1]
    images = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(-1, 1)
    return prior, ae, images.to(device), sum(q.numel() for q in net.parameters())


def make_batch(images, rows: int, lams, device, sigma_y: float = 0.05):
    from operators import add_noise, build_operator
    from solvers import RowBatch
    from solvers.rng import make_generators

    x = images[torch.arange(rows) % images.shape[0]]
    op = build_operator("gaussian_blur", image_shape=tuple(x.shape[1:]), seeds=list(range(rows)), device=device)
    y = add_noise(op.forward(x), sigma_y, make_generators(range(1000, 1000 + rows), device))
    lam = torch.as_tensor([lams[i % len(lams)] for i in range(rows)], dtype=x.dtype, device=device)
    return RowBatch(y=y, operator=op, generators=make_generators(range(rows), device),
                    params={"lam": lam, "step_size": torch.full((rows,), 1.0, device=device)})


def _solve(solver, prior, ae, images, rows, steps, prec, lams=(0.0,), options=None):
    from solvers import RegularizerSpec, precision, solve

    batch = make_batch(images, rows, lams, images.device)
    if solver == "daps":
        batch.params.pop("step_size")  # the task's own Langevin lr
    reg = RegularizerSpec(kind="equi", mpe="encoder", autoencoder=ae) if any(l > 0 for l in lams) else None
    with precision.autocast(prec):
        return solve(solver, prior, batch, steps, regularizer=reg, options=options or {})


def measure(solver, prior, ae, images, rows, prec, peak, steps, lams=(0.0,), options=None) -> dict:
    """One timed solve of ``steps`` steps at ``rows`` rows, after a one-step warm-up (cuDNN autotune,
    allocator) that also counts the FLOPs of a step."""
    device = images.device
    flops = gpu_peaks.count_flops(lambda: _solve(solver, prior, ae, images, rows, 1, prec, lams, options))
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = _solve(solver, prior, ae, images, rows, steps, prec, lams, options)
    _sync(device)
    wall = time.perf_counter() - t0
    s_step = wall / steps
    tflops = flops / s_step / 1e12
    key = "bf16" if prec == "bf16" else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
    ref = peak.get(key) if peak and prec != "fp16" else None
    return {"rows": rows, "steps_timed": steps, "wall_s": round(wall, 4), "s_per_step": round(s_step, 5),
            "s_per_step_per_image": round(s_step / rows, 6),
            "images_per_hour_paper_budget": round(3600 * rows / (s_step * PAPER_BUDGET[solver]), 2),
            "paper_budget_steps": PAPER_BUDGET[solver],
            "gpu_mem_peak_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 3) if device.type == "cuda" else None,
            "gpu_mem_reserved_gib": round(torch.cuda.memory_reserved(device) / 2 ** 30, 3) if device.type == "cuda" else None,
            "flops_per_step": int(flops), "tflops_achieved": round(tflops, 3),
            "peak_tflops": ref, "peak_kind": key if ref else None,
            "fraction_of_peak": round(tflops / ref, 4) if ref else None,
            "status_ok": sum(s == "ok" for s in out.status)}


def find_fit(solver, prior, ae, images, prec, hi, lams=(0.0,), options=None) -> dict:
    probes = []

    def fits(b):
        t0 = time.perf_counter()
        ok, _ = attempt(lambda: _solve(solver, prior, ae, images, b, 1, prec, lams, options))
        probes.append({"rows": b, "fits": ok, "s": round(time.perf_counter() - t0, 3)})
        return ok

    fit = largest_fit(fits, hi)
    return {"fit": fit, "capped_at_max_batch": fit == hi, "probes": probes}


def solver_runs(args, device, peak, clock, notes) -> list:
    prior, ae, images, n_params = ffhq_world(device, args.tiny)
    notes.append(f"FFHQ-256 guided-diffusion architecture, {n_params / 1e6:.1f} M parameters, random weights"
                 + (" (tiny: 2-level UNet at 16 px)" if args.tiny else ""))
    hi = args.max_batch or (TINY if args.tiny else FULL)["max_batch"]
    opts = {"daps": {"mcmc_steps": 3}} if args.tiny else {}
    lams = [float(v) for v in args.lambdas]
    timed = (TINY if args.tiny else FULL)["timed_steps"]
    runs = []
    for solver in args.solvers:
        for prec in args.precisions:
            base = {"solver": solver, "precision": prec, "image_size": images.shape[-1], "task": "gaussian_blur"}
            for kind in ("batch1", "fit", "lambda_grid"):
                rec = {**base, "batch": kind}
                if clock.left() < args.reserve_s:
                    rec["skipped"] = f"time budget: {clock.left():.0f} s left, {args.reserve_s:.0f} s kept for the rest"
                    runs.append(rec)
                    continue
                t0 = time.perf_counter()
                try:
                    o = opts.get(solver)
                    if kind == "batch1":
                        rec.update(measure(solver, prior, ae, images, 1, prec, peak, timed[solver], options=o))
                    elif kind == "fit":
                        search = find_fit(solver, prior, ae, images, prec, hi, options=o)
                        rec.update(search, **measure(solver, prior, ae, images, search["fit"], prec, peak, timed[solver], options=o))
                    else:
                        grid = [0.0] + lams  # the baseline and every lambda, rows side by side
                        search = find_fit(solver, prior, ae, images, prec, hi, lams=grid, options=o)
                        n_lam, fit = len(grid), search["fit"]
                        rows = fit // n_lam * n_lam if fit >= n_lam else fit  # whole lambda columns
                        rec.update(search, lambdas=grid, images_per_lambda=max(1, rows // n_lam),
                                   **measure(solver, prior, ae, images, rows, prec, peak, timed[solver], lams=grid, options=o))
                except Exception as exc:  # noqa: BLE001 - recorded; the other runs go on
                    rec["error"] = f"{type(exc).__name__}: {exc}"[:500]
                    rec["traceback"] = traceback.format_exc()[-1500:]
                rec["section_s"] = round(time.perf_counter() - t0, 2)
                runs.append(rec)
                print(json.dumps({k: v for k, v in rec.items() if k not in ("probes", "traceback")}), flush=True)
    del prior, ae
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return runs


# ------------------------------------------------------------------------------------ host syncs
def host_syncs(device, tiny: bool) -> dict:
    """Synchronising CUDA calls per step of every diffusion solver (embedded world, EquiReg on)."""
    if device.type != "cuda":
        return {"per_step": None, "note": "CPU: no device to wait for; tests/test_gpu_sync.py counts tensor reads instead"}
    from orchestrator.problem import make_measurement, task_params
    from solvers import RegularizerSpec, RowBatch, solve
    from solvers.loaders import load_prior
    from solvers.rng import make_generators

    pix, lat = load_prior("embedded:pixel", device=device), load_prior("embedded:latent", device=device)
    cases = {"dps": (pix, 0.5, {}), "daps": (pix, None, {"mcmc_steps": 3}), "psld": (lat, 1.0, {}),
             "latent_daps": (lat, None, {"mcmc_steps": 3}), "resample": (lat, 1.0, {})}
    out = {}
    for name, (prior, step, opts) in cases.items():
        counts = {}
        for n in (3, 6):
            m = make_measurement("embedded", "report", [0, 1], "gaussian_blur", task_params("embedded", "gaussian_blur"),
                                 0.05, device=device)
            params = {"lam": torch.tensor([0.0, 0.5], device=device)}
            if step is not None:
                params["step_size"] = torch.full((2,), step, device=device)
            batch = RowBatch(y=m.y, operator=m.operator, generators=make_generators([3, 4], device), params=params)
            reg = RegularizerSpec(kind="equi", mpe="autoencoder", autoencoder=lat.autoencoder)
            torch.cuda.synchronize()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    solve(name, prior, batch, n, regularizer=reg, options=opts)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
            counts[n] = sum("synchroniz" in str(w.message) for w in caught)
        out[name] = {"syncs_3_steps": counts[3], "syncs_6_steps": counts[6], "per_step": (counts[6] - counts[3]) / 3}
    return {"per_step": {k: v["per_step"] for k, v in out.items()}, "detail": out}


# ----------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (the CPU dry run)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole benchmark")
    ap.add_argument("--reserve-s", type=float, default=None, help="seconds kept for the sync check and the sweep")
    ap.add_argument("--solvers", nargs="+", default=["dps", "daps"], choices=["dps", "daps"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--lambdas", nargs="+", default=None,
                    help="EquiReg lambdas of the grid (beside lambda 0); default 0.01 .. 10 (7 values; --tiny: 0.1)")
    ap.add_argument("--max-batch", type=int, default=None, help="upper bound of the batch search")
    ap.add_argument("--sweep-actors", nargs="+", type=int, default=[1, 4])
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda but torch.cuda.is_available() is False; allowed: --device cpu (with --tiny for the dry run)")
    if args.lambdas is None:
        args.lambdas = ["0.1"] if args.tiny else ["0.01", "0.03", "0.1", "0.3", "1", "3", "10"]
    if args.reserve_s is None:
        args.reserve_s = 10.0 if args.tiny else 120.0
    clock = Clock(args.budget_s)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = gpu_peaks.peak_for(name) if device.type == "cuda" else None
    notes = [] if peak or device.type != "cuda" else [f"no peak table entry for {name!r}: fraction_of_peak is null"]
    doc = {"benchmark": "gpu", "tiny": args.tiny, "device": str(device), "device_name": name,
           "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpu_mem_total_gib": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 30, 1)
           if device.type == "cuda" else None,
           "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32, "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
           "peak": peak, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "notes": notes}
    sections = [("runs", lambda: solver_runs(args, device, peak, clock, notes)),
                ("host_syncs", lambda: host_syncs(device, args.tiny))]
    if not args.no_sweep:
        from benchmarks import gpu_sweep

        sections.append(("sweep", lambda: gpu_sweep.run(device, args.tiny, args.sweep_actors, clock)))
    for key, fn in sections:
        t0 = time.perf_counter()
        try:
            doc[key] = fn()
        except Exception as exc:  # noqa: BLE001 - recorded, the other sections still run
            doc[key] = {"error": f"{type(exc).__name__}: {exc}"[:500], "traceback": traceback.format_exc()[-2000:]}
        doc[f"{key}_s"] = round(time.perf_counter() - t0, 2)
    doc["seconds"] = round(time.perf_counter() - clock.t0, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    slug = "".join(c if c.isalnum() else "-" for c in name.replace("NVIDIA ", "")).strip("-").lower() or "device"
    path = args.out / f"gpu-{slug}{'-tiny' if args.tiny else ''}-{_dt.date.today().isoformat()}.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    print(f"wrote {path} in {doc['seconds']} s")
    errors = [k for k in ("runs", "host_syncs", "sweep") if isinstance(doc.get(k), dict) and "error" in doc[k]]
    errors += [f"runs[{i}]" for i, r in enumerate(doc.get("runs") or []) if isinstance(r, dict) and "error" in r]
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
