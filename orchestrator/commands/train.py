"""``equibench train-embedded``: reproduce the embedded world's models and their model card."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

QUICK = {"pixel": {"steps": 300}, "autoencoder": {"steps": 200, "batch": 32}, "latent": {"steps": 300, "batch": 64},
         "blur": {"steps": 100}}


def register(subparsers) -> None:
    p = subparsers.add_parser("train-embedded", help="train the embedded world's tiny models and write the model card")
    p.add_argument("--stages", nargs="+", default=["autoencoder", "latent", "blur", "pixel", "card"],
                   help="stages to run, in order (autoencoder latent blur pixel card)")
    p.add_argument("--out", type=Path, default=None, help="weights directory (default: the shipped one)")
    p.add_argument("--quick", action="store_true", help="a few hundred steps per model: checks the pipeline, not quality")
    p.add_argument("--parallel", action="store_true",
                   help="train the pixel prior in a second process beside the autoencoder/latent chain (1 thread each)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--device", default="cpu",
                   help="torch device for the autoencoder, latent and pixel stages (e.g. cuda; default cpu)")
    p.set_defaults(func=run)


DEVICE_STAGES = ("autoencoder", "latent", "pixel")


def _stage(name: str, out: Path | None, quick: bool, device: str = "cpu") -> dict:
    from solvers.embedded import train

    kwargs = dict(QUICK.get(name, {})) if quick else {}
    if out is not None:
        kwargs["out"] = out
    if name in DEVICE_STAGES:
        kwargs["device"] = device
    return train.STAGES[name](**kwargs)


def run(args) -> int:
    import torch

    from solvers.embedded import train

    allowed = set(train.STAGES) | {"card"}
    bad = [s for s in args.stages if s not in allowed]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; allowed: {sorted(allowed)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    t0, info, side = time.time(), {}, None
    stages = list(args.stages)
    if args.parallel and "pixel" in stages:
        stages.remove("pixel")
        cmd = [sys.executable, "-m", "orchestrator.cli", "train-embedded", "--stages", "pixel", "--threads", "1"]
        cmd += (["--quick"] if args.quick else []) + (["--out", str(args.out)] if args.out else [])
        cmd += ["--device", args.device]
        side = subprocess.Popen(cmd)
        torch.set_num_threads(1)
    for name in [s for s in stages if s != "card"]:
        info.update(_stage(name, args.out, args.quick, args.device))
        print(json.dumps(info), flush=True)
    if side is not None and side.wait() != 0:
        raise RuntimeError("pixel-prior training process failed")
    info["total_minutes"] = round((time.time() - t0) / 60, 1)
    if "card" in stages:
        from solvers.embedded.card import write_card

        path = write_card(args.out or train.WEIGHTS_DIR, train_info=info)
        print(f"model card: {path}")
    return 0
