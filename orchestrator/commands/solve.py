"""``equibench solve``: one solver, with and without EquiReg, on a few embedded validation images.

    equibench solve --solver dps --regularizer equi --lam 0.001 --task gaussian_blur --n 4 \\
                    --steps 20 --out DIR [--step-size Z] [--mpe M] [--group G] [--reduction R]
                    [--schedule S] [--sigma-y 0.05] [--seed 0] [--option KEY=VALUE ...]
                    [--weights DIR] [--threads N] [--device auto|cpu|cuda]

Defaults come from ``configs/solvers-table.yaml`` when the repository has it: the solver's step size
for the task (searched on tuning crops by ``configs/tune-steps*.yaml``) and its options (e.g.
ReSample's thinned optimisation, LatentDAPS's 10 Langevin steps); ``--step-size`` and ``--option``
override them, ``--no-tuned`` uses the solver's own defaults (step size 1.0).

Writes ``DIR/solve.png`` (one row per image; titled columns: ground truth, the measurement's naive
inverse, the baseline, the EquiReg variant, each reconstruction's PSNR under it, drawn like the
report's qualitative grids) and ``DIR/metrics.json``, prints a progress line per phase and solver
run on stderr (``[solve] dps equi lam=0.001: 4 images, 20 steps, 12.3 s``), and prints per-image PSNR,
SSIM and LPIPS (``n/a`` when the LPIPS weights file is absent; nothing is downloaded) with seconds
per image. Baseline and EquiReg runs use the same per-row seeds, so they differ only by the
penalty. The prior is the embedded one of the space the solver needs (``--weights`` points at
another weights root, e.g. one written by ``equibench train-embedded --quick --out``); a pixel
solver's MPE function comes from the embedded autoencoder.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

REGULARIZERS = ("none", "equi", "equicon")


def register(subparsers) -> None:
    p = subparsers.add_parser("solve", help="one solver +/- EquiReg on a few embedded images: PNG grid + metrics",
                              description=__doc__.splitlines()[0])
    p.add_argument("--solver", required=True, help="a name in solvers.SOLVERS (dps, psld, resample, daps, latent_daps)")
    p.add_argument("--regularizer", default="equi", choices=REGULARIZERS, help="EquiReg form (default equi)")
    p.add_argument("--lam", type=float, default=0.001, help="EquiReg weight lambda (default 0.001)")
    p.add_argument("--task", required=True, help="an operator name (operators.OPERATORS), embedded defaults")
    p.add_argument("--n", type=int, default=4, help="number of images, the first n of --split (default 4)")
    p.add_argument("--split", default="report", help="embedded split: report (iid, default), report_ood, tune, tune_ood")
    p.add_argument("--steps", type=int, default=20, help="solver steps (default 20)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--step-size", type=float, default=None,
                   help="per-row step size (DPS zeta, PSLD omega, ReSample scale, DAPS lr; default: the tuned "
                        "embedded value from configs/solvers-table.yaml, else 1.0)")
    p.add_argument("--no-tuned", action="store_true",
                   help="ignore configs/solvers-table.yaml: the solver's own defaults and step size 1.0")
    p.add_argument("--mpe", default=None, help="MPE function: decoder, encoder or autoencoder (default: autoencoder for equicon, "
                                               "else encoder for pixel solvers, decoder for latent ones)")
    p.add_argument("--group", default="hflip", help="symmetry group (identity, hflip, rot90, hflip_rot90)")
    p.add_argument("--reduction", default="norm", help="norm, sqnorm or mse")
    p.add_argument("--schedule", default=None, help="lambda schedule (default: the solver's paper default)")
    p.add_argument("--sigma-y", type=float, default=0.05, help="measurement noise std (default 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rows' random streams")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a solver option (value parsed as JSON, else a string); repeatable")
    p.add_argument("--weights", default=None, help="embedded weights root (default: the shipped one)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="torch device: auto (cuda when available), cpu, cuda, cuda:N")
    p.set_defaults(func=run)


def resolve_device(name: str):
    """``auto`` -> cuda when available, else cpu; a named CUDA device that is absent is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return dev


def parse_options(items: list[str]) -> dict:
    """``["a=1", "b=official"]`` -> ``{"a": 1, "b": "official"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _load_models(space: str, weights: str | None, need_autoencoder: bool, device=None):
    from solvers.loaders import load_autoencoder, load_prior

    spec = {"kind": "embedded", "name": space}
    ae_spec = {"kind": "embedded"}
    if weights:
        spec["root"] = ae_spec["root"] = weights
    prior = load_prior(spec, device=device)
    autoencoder = None
    if need_autoencoder:
        autoencoder = getattr(prior, "autoencoder", None) or load_autoencoder(ae_spec, device=device)
    return prior, autoencoder


def _fmt(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def _progress(msg: str) -> None:
    """One progress line on stderr (stdout keeps the metrics table)."""
    print(f"[solve] {msg}", file=sys.stderr, flush=True)


def grid_figure(images: list, titles: list[str], psnr: list, suptitle: str | None = None):
    """The labelled ``solve.png`` figure: one row per image, one column per tensor in ``images``
    ((B, C, H, W) in [-1, 1]) titled ``titles[j]``, with ``psnr[j]`` (per-image values, or None for
    the ground truth) under each tile; drawn by the report's grid drawer (``image_grid``)."""
    from orchestrator import image_grid

    cols = [c.detach().float().cpu().clamp(-1, 1).numpy() for c in images]
    rows = range(cols[0].shape[0])
    cells = [[c[i] for c in cols] for i in rows]
    notes = [[None if v is None else image_grid.psnr_note(v[i]) for v in psnr] for i in rows]
    return image_grid.draw(cells, titles, notes, [f"#{i}" for i in rows], suptitle)


def run(args) -> int:
    import torch

    from operators import OPERATORS
    from orchestrator.metrics import Metrics
    from solvers import SOLVERS, RegularizerSpec, RowBatch, solve
    from orchestrator.defaults import default_mpe, default_step_size, tuned_settings
    from orchestrator.problem import make_measurement, task_params
    from solvers.rng import make_generators, row_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.solver not in SOLVERS:
        raise ValueError(f"unknown solver {args.solver!r}; allowed: {sorted(SOLVERS)}")
    if args.task not in OPERATORS:
        raise ValueError(f"unknown task {args.task!r}; allowed: {sorted(OPERATORS)}")
    if args.lam < 0:
        raise ValueError("--lam must be >= 0")
    from orchestrator import data as _data

    sizes = _data.info("embedded").sizes
    if args.split not in sizes or args.split == "train":
        raise ValueError(f"--split {args.split!r}: allowed: {sorted(s for s in sizes if s != 'train')}")
    if not 1 <= args.n <= sizes[args.split]:
        raise ValueError(f"--n {args.n}: allowed 1..{sizes[args.split]} for split {args.split!r}")
    dev = resolve_device(args.device)
    info = SOLVERS[args.solver]
    tuned_step, tuned_options = (None, {}) if args.no_tuned else tuned_settings(args.solver, args.task)
    options = {**tuned_options, **parse_options(args.option)}
    step_size = args.step_size if args.step_size is not None else (
        tuned_step if tuned_step is not None else default_step_size(args.solver, SOLVERS[args.solver], args.task, embedded=False))
    space = "latent" if info.space == "latent" else "pixel"
    reg_on = args.regularizer != "none"
    mpe = args.mpe or default_mpe(space, args.regularizer)

    split = args.split
    t0 = time.perf_counter()
    m = make_measurement("embedded", split, range(args.n), args.task, task_params("embedded", args.task),
                         args.sigma_y, seed=args.seed, device=dev)
    x_true, op, y, naive = m.x_true, m.operator, m.y, m.naive
    _progress(f"measurements: {args.n} images of embedded/{split}, {args.task}, sigma_y {args.sigma_y:g}, "
              f"{time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    prior, autoencoder = _load_models(space, args.weights, reg_on and space == "pixel", dev)
    _progress(f"models: embedded {space} prior" + (" + autoencoder (MPE)" if autoencoder is not None and space == "pixel"
                                                    else "") + f" on {dev}, {time.perf_counter() - t0:.1f} s")
    B = x_true.shape[0]
    seeds = [row_seed("solve-cli", args.task, i, args.seed) for i in range(B)]

    params = {}
    if step_size is not None or "step_size" in info.row_params:
        params["step_size"] = torch.full((B,), 1.0 if step_size is None else step_size, dtype=torch.float64, device=dev)
    spec = None
    if reg_on:
        spec = RegularizerSpec(kind=args.regularizer, mpe=mpe, group=args.group, reduction=args.reduction,
                               schedule=args.schedule, autoencoder=autoencoder)
    runs = {}
    variants = [("baseline", None, 0.0)] + ([(f"{args.regularizer}", spec, args.lam)] if reg_on else [])
    for label, reg, lam in variants:
        lam_row = {"lam": torch.full((B,), lam, dtype=torch.float64, device=dev)} if reg else {}
        batch = RowBatch(y=y, operator=op, generators=make_generators(seeds, dev), x_true=x_true,
                         params={**params, **lam_row})
        t0 = time.perf_counter()
        out = solve(args.solver, prior, batch, args.steps, regularizer=reg, options=options)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        took = time.perf_counter() - t0
        runs[label] = (out, took / B)
        bad = sum(st != "ok" for st in out.status)
        _progress(f"{args.solver} {args.regularizer if reg else 'none'}" + (f" lam={lam:g}" if reg else "")
                  + f": {B} images, {args.steps} steps, {took:.1f} s" + (f" ({bad} diverged)" if bad else ""))

    t0 = time.perf_counter()
    metrics = Metrics(dev, names=("psnr", "ssim", "lpips"), set_names=())
    table = {}
    for label, x in [("naive", naive)] + [(k, v[0].x) for k, v in runs.items()]:
        m = metrics.per_image(x.float(), x_true.float())
        table[label] = {k: (None if v is None else [float(t) for t in v]) for k, v in m.items()}
    _progress(f"metrics (psnr, ssim, lpips): {time.perf_counter() - t0:.1f} s")

    from orchestrator.image_grid import save_png
    from orchestrator.reporting.labels import method_label

    args.out.mkdir(parents=True, exist_ok=True)
    titles = ["Ground truth", "Naive inverse", f"{method_label(args.solver, 'none')}\n(baseline)"]
    titles += [f"{method_label(args.solver, args.regularizer)}\nλ={args.lam:g}"] if reg_on else []
    fig = grid_figure([x_true, naive] + [v[0].x for v in runs.values()], titles, [None] + [table[k]["psnr"] for k in table],
                      f"{args.task}, sigma_y {args.sigma_y:g}, {args.steps} steps (PSNR under each image)")
    save_png(fig, args.out / "solve.png")
    record = {
        "solver": args.solver, "task": args.task, "steps": args.steps, "n": B, "sigma_y": args.sigma_y,
        "device": str(dev), "regularizer": args.regularizer, "lam": args.lam, "mpe": mpe if reg_on else None, "group": args.group,
        "options": options, "step_size": None if "step_size" not in params else float(params["step_size"][0]),
        "columns": ["ground_truth", "naive"] + list(runs),
        "metrics": table,
        "status": {k: v[0].status for k, v in runs.items()},
        "seconds_per_image": {k: v[1] for k, v in runs.items()},
        "meta": {k: {kk: vv for kk, vv in v[0].meta.items() if kk != "options"} for k, v in runs.items()},
    }
    (args.out / "metrics.json").write_text(json.dumps(record, indent=2, default=str))

    print(f"{args.solver} on {args.task}, {B} images, {args.steps} steps"
          + (f", {args.regularizer} lam={args.lam} mpe={mpe} group={args.group}" if reg_on else ""))
    header = f"{'image':>5} {'method':>9} {'PSNR':>8} {'SSIM':>7} {'LPIPS':>7} {'status':>9}"
    print(header)
    for i in range(B):
        for label, vals in table.items():
            status = runs[label][0].status[i] if label in runs else ""
            lp = vals.get("lpips")
            print(f"{i:>5} {label:>9} {vals['psnr'][i]:>8.2f} {vals['ssim'][i]:>7.4f} "
                  f"{_fmt(None if lp is None else lp[i]):>7} {status:>9}")
    for label, vals in table.items():
        lp = vals.get("lpips")
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        sec = f"  {runs[label][1]:.2f} s/image" if label in runs else ""
        print(f" mean {label:>9} {mean(vals['psnr']):>8.2f} {mean(vals['ssim']):>7.4f} "
              f"{_fmt(None if lp is None else mean(lp)):>7}{sec}")
    print(f"wrote {args.out / 'solve.png'} and {args.out / 'metrics.json'}")
    return 0
