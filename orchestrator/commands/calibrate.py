"""``equibench calibrate``: per-solver lambda ranges from a lambda grid's influence ratios.

    equibench calibrate --store DIR [--run RUN] --out DIR [--lo 1e-2] [--hi 1]

Reads the rows of a lambda grid (e.g. ``configs/calibrate-lambda.yaml``, run on the tune split),
takes per (solver, regularizer, task) the median ``influence_grad`` at each lambda and interpolates
in log-log the lambdas where it crosses ``--lo`` and ``--hi``. Writes ``lambda-ranges.md`` (per task
and per solver), ``lambda-ranges.json`` and ``lambda-ranges.yaml`` (``solver_lambdas`` ready for a
spec's regularizer: the range's geometric midpoint and its two ends).
"""
from __future__ import annotations

import json
import math
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="per-solver lambda ranges from influence ratios in a store")
    p.add_argument("--store", required=True, help="the store directory")
    p.add_argument("--run", default=None, help="the run holding the lambda grid (default: every run)")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--lo", type=float, default=1e-2, help="lower influence ratio of the range (default 1e-2)")
    p.add_argument("--hi", type=float, default=1.0, help="upper influence ratio of the range (default 1)")
    p.set_defaults(func=run)


def _fmt(v, open_end: bool = False) -> str:
    return "-" if v is None else (f"{v:.3g}" + ("+" if open_end else ""))


def run(args) -> int:
    from orchestrator import calibrate, store

    if not 0 < args.lo < args.hi:
        raise ValueError(f"--lo {args.lo} / --hi {args.hi}: need 0 < lo < hi")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out}: is a file, need a directory")
    df = store.load(args.store, run=args.run)
    if df.empty or "influence_grad" not in df or df["influence_grad"].notna().sum() == 0:
        raise ValueError(f"{args.store}: no rows with an influence ratio (run a lambda grid with a regularizer first)")
    cal = calibrate.calibrate(df, target=(args.lo, args.hi))
    per_solver = calibrate.solver_ranges(cal)
    lines = [f"# Lambda ranges: median influence ratio in [{args.lo:g}, {args.hi:g}]", "",
             f"Rows: {int(df['influence_grad'].notna().sum())} with a ratio, from `{args.store}`"
             + (f" run `{args.run}`" if args.run else "") + ". A `+` marks an open end (the grid's edge).", "",
             "| solver | regularizer | task | lambda lo | lambda hi | median ratio per lambda |", "|---|---|---|---|---|---|"]
    for (solver, reg, task), r in sorted(cal.items()):
        ratios = ", ".join(f"{lam:g}: {v:.2g}" for lam, v in zip(r["lambdas"], r["median_ratio"]))
        lines.append(f"| {solver} | {reg} | {task} | {_fmt(r['lo'], r['lo_open'])} | {_fmt(r['hi'], r['hi_open'])} | {ratios} |")
    lines += ["", "Per solver (intersection over tasks; `no` = the tasks' ranges do not overlap, their union is given):", "",
              "| solver | regularizer | lambda lo | lambda hi | common to all tasks |", "|---|---|---|---|---|"]
    spec = {}
    for (solver, reg), r in sorted(per_solver.items()):
        lines.append(f"| {solver} | {reg} | {_fmt(r['lo'])} | {_fmt(r['hi'])} | {'yes' if r['common_to_all_tasks'] else 'no'} |")
        mid = math.sqrt(r["lo"] * r["hi"])
        spec.setdefault(reg, {})[solver] = [float(f"{v:.3g}") for v in (r["lo"], mid, r["hi"])]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lambda-ranges.md").write_text("\n".join(lines) + "\n")
    (args.out / "lambda-ranges.json").write_text(json.dumps(
        {"target": [args.lo, args.hi], "per_task": {"|".join(k): v for k, v in cal.items()},
         "per_solver": {"|".join(k): v for k, v in per_solver.items()}}, indent=1))
    import yaml

    (args.out / "lambda-ranges.yaml").write_text(yaml.safe_dump({"solver_lambdas": spec}, sort_keys=True))
    print("\n".join(lines))
    print(f"wrote {args.out / 'lambda-ranges.md'}, .json, .yaml")
    return 0
