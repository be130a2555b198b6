"""UNet throughput against this machine's measured fp32 matmul throughput: the distance to the limit.

- Peak: GFLOP/s of an ``n x n`` fp32 matmul (``2 n^3`` FLOPs; n = 2048), the best this CPU does on
  the densest kernel it has, at the same thread count as the UNet.
- UNet: the embedded pixel prior's network (diffusers ``UNet2DModel``, 32x32, the DPS/DAPS prior)
  at batch 16. Its FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions,
  matmuls, attention: the ops that carry the arithmetic; elementwise ops, norms and activations are
  not counted, so this is the *useful* FLOP rate). Forward under ``no_grad`` is the headline;
  forward+backward w.r.t. the input (one DPS step's network cost) is reported too.

Matmul and UNet repetitions alternate, so both see the same machine load; the fraction is the ratio
of the medians. Thread counts: every usable core (the machine's peak) and, in full mode, 1 thread
(one sweep actor). A ``torch.profiler`` summary of one forward says where the time goes.
"""
from __future__ import annotations

import time

from benchmarks import common as C

FULL = dict(n=2048, batch=16, reps=7, warmup=2, threads=None, extra_threads=(1,))
#: Profiler op names of the kernels that carry the counted FLOPs.
KERNELS = {
    "convolution": {"aten::mkldnn_convolution", "aten::_slow_conv2d_forward", "aten::thnn_conv2d",
                    "aten::_nnpack_spatial_convolution"},
    "matmul/attention": {"aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm",
                         "aten::_scaled_dot_product_flash_attention_for_cpu"},
}
QUICK = dict(n=512, batch=2, reps=3, warmup=1, threads=1, extra_threads=())


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` (FlopCounterMode: matmul/conv/attention ops)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return int(counter.get_total_flops())


def measure(unet, *, n: int, batch: int, reps: int, warmup: int, threads: int) -> dict:
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen)
    b = torch.randn(n, n, generator=gen)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    t = torch.full((batch,), 500.0)

    def matmul():
        torch.mm(a, b)

    def forward():
        with torch.no_grad():
            unet(x, t)

    def fwd_bwd():
        xi = x.detach().requires_grad_(True)
        out = unet(xi, t)
        out = getattr(out, "sample", out)
        out.sum().backward()  # (autograd.grad on a leaf trips FlopCounterMode's module hooks)

    with C.torch_threads(threads):
        flops_fwd = count_flops(forward)
        flops_fb = count_flops(fwd_bwd)
        load0 = C.load_average()
        times = C.interleave({"matmul": matmul, "forward": forward, "fwd_bwd": fwd_bwd}, reps=reps, warmup=warmup)
        load1 = C.load_average()
    from torch.utils.flop_counter import FlopCounterMode

    with C.torch_threads(threads):
        counter = FlopCounterMode(display=False)
        with counter:
            forward()
    conv_flops = sum(v for op, v in counter.get_flop_counts().get("Global", {}).items() if "convolution" in str(op))
    mm_flops = 2 * n ** 3
    peak = mm_flops / C.median(times["matmul"]) / 1e9
    fwd = flops_fwd / C.median(times["forward"]) / 1e9
    fb = flops_fb / C.median(times["fwd_bwd"]) / 1e9
    return {
        "threads": threads, "matmul_n": n, "matmul_gflops": round(peak, 2),
        "matmul_gflops_best": round(mm_flops / min(times["matmul"]) / 1e9, 2),
        "unet_batch": batch, "unet_forward_gflop": round(flops_fwd / 1e9, 3), "unet_fwd_bwd_gflop": round(flops_fb / 1e9, 3),
        "unet_forward_conv_gflop": round(conv_flops / 1e9, 3),
        "unet_forward_ms": round(1e3 * C.median(times["forward"]), 2), "unet_fwd_bwd_ms": round(1e3 * C.median(times["fwd_bwd"]), 2),
        "unet_forward_gflops": round(fwd, 2), "unet_fwd_bwd_gflops": round(fb, 2),
        "fraction_forward": round(fwd / peak, 4), "fraction_fwd_bwd": round(fb / peak, 4),
        "times_s": {k: C.summary(v) for k, v in times.items()}, "load_average_before_after": [load0, load1],
    }


def run(quick: bool = False, **sizes) -> dict:
    """UNet forward GFLOP/s as a fraction of the measured fp32 matmul GFLOP/s."""
    t0 = time.perf_counter()
    cfg = {**(QUICK if quick else FULL), **sizes}
    threads = cfg["threads"] or C.usable_cores()
    prior, _, weights = C.pixel_world()
    unet = prior.model
    thread_list = [threads] + [t for t in cfg["extra_threads"] if t != threads]
    results = [measure(unet, n=cfg["n"], batch=cfg["batch"], reps=cfg["reps"], warmup=cfg["warmup"], threads=t)
               for t in thread_list]
    head = results[0]
    import torch

    x = torch.randn(cfg["batch"], 3, 32, 32)
    tt = torch.full((cfg["batch"],), 500.0)
    with C.torch_threads(threads), torch.no_grad():
        prof = C.profile_top(lambda: unet(x, tt), top=None)
    share = {k: round(sum(p["share"] for p in prof if p["op"] in ops), 3) for k, ops in KERNELS.items()}
    share["other (norms, activations, copies, elementwise)"] = round(1 - sum(share.values()), 3)
    conv_ms = sum(p["self_cpu_ms"] for p in prof if p["op"] in KERNELS["convolution"])
    conv_gflops = head["unet_forward_conv_gflop"] / (conv_ms / 1e3) if conv_ms else None
    notes = [
        f"fraction = UNet forward GFLOP/s (FlopCounterMode FLOPs / median time, batch {cfg['batch']}) / fp32 "
        f"{cfg['n']}^3 matmul GFLOP/s (median), both at {threads} thread(s), repetitions interleaved; weights: {weights}.",
        "Where one forward's time goes (torch.profiler, self CPU, profiled run): "
        + ", ".join(f"{k} {v:.0%}" for k, v in share.items()) + "."
        + (f" The convolutions alone run at ~{conv_gflops:.0f} GFLOP/s ({conv_gflops / head['matmul_gflops']:.0%} of the "
           "matmul rate; the profiler adds overhead)." if conv_gflops else "")
        + (" Most of the time goes to ops that carry no counted FLOPs (memory-bound norms, SiLU, copies on small "
           "maps): they, not the arithmetic, limit the fraction." if share["other (norms, activations, copies, elementwise)"] >= 0.4
           else " The counted kernels dominate: the 32-64-channel convolutions on 32x32..4x4 maps are small GEMMs "
                "with low arithmetic intensity, which limits the fraction."),
    ]
    measured = []
    for r in results:
        th = r["threads"]
        measured += [
            [f"fp32 matmul {r['matmul_n']}^3, {th} thread(s)", r["matmul_gflops"], "GFLOP/s (median)"],
            [f"UNet forward batch {r['unet_batch']}, {th} thread(s)", r["unet_forward_ms"], "ms"],
            [f"UNet forward FLOPs (FlopCounterMode)", r["unet_forward_gflop"], "GFLOP"],
            [f"UNet forward, {th} thread(s)", r["unet_forward_gflops"], "GFLOP/s"],
            [f"UNet forward / matmul, {th} thread(s)", r["fraction_forward"], "fraction"],
            [f"UNet forward+backward batch {r['unet_batch']}, {th} thread(s)", r["unet_fwd_bwd_ms"], "ms"],
            [f"UNet forward+backward / matmul, {th} thread(s)", r["fraction_fwd_bwd"], "fraction"],
        ]
    return C.result(
        "unet_peak", "UNet throughput vs measured matmul peak",
        metrics={"unet_fraction_of_matmul_peak": head["fraction_forward"], "matmul_peak_gflops": head["matmul_gflops"],
                 "unet_forward_gflops": head["unet_forward_gflops"]},
        checks=[], measured=measured,
        details={"sizes": {**cfg, "threads": threads}, "weights": weights, "by_threads": results,
                 "forward_time_shares": share, "profile_forward_top": prof[:12]},
        notes=notes, seconds=time.perf_counter() - t0, quick=quick)


if __name__ == "__main__":
    raise SystemExit(C.main(run))
