"""Run every benchmark and write ``benchmarks/results/latest.json`` and ``latest.md``.

    python -m benchmarks.run_all            # full sizes (`make bench`; < 20 min on 2 cores)
    python -m benchmarks.run_all --quick    # tiny sizes, seconds each (tests): numbers mean nothing
    python -m benchmarks.run_all --only store,unet_peak

Why one process: the benchmarks share the loaded embedded models (``common.pixel_world``) and, in
quick mode, one local Ray; each benchmark sets its own torch thread count. A benchmark that raises is
recorded (its keys null, its error in both files) and the others still run; the exit status is 1 then.

Quick runs write to ``benchmarks/results/tmp-quick/`` (gitignored) unless ``--out`` is given, so a
test never overwrites the measured results. ``latest.json`` holds the headline keys at the top
level (``grid_batching_speedup``, ``resident_vs_reload_speedup``,
``orchestration_efficiency_1actor``, ``orchestration_efficiency_2actors``,
``store_groupby_seconds_1m``, ``store_files_1m``, ``unet_fraction_of_matmul_peak``, ``machine``),
then ``targets`` (each check: value, target, met) and ``benchmarks`` (every benchmark's full result).
``latest.md`` is the same as tables: every measured number, each target and whether it was met.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

from benchmarks import common as C

#: Run order: no Ray first; the shell-loop benchmark (its own Ray per process) before the one that
#: keeps a Ray running in this process.
BENCHMARKS = ("unet_peak", "grid_batching", "store", "resident_vs_reload", "orchestration")
#: The keys latest.json always has (null when the benchmark that measures it failed).
KEYS = {
    "grid_batching": ["grid_batching_speedup"],
    "resident_vs_reload": ["resident_vs_reload_speedup"],
    "orchestration": ["orchestration_efficiency_1actor", "orchestration_efficiency_2actors"],
    "store": ["store_groupby_seconds_1m", "store_files_1m"],
    "unet_peak": ["unet_fraction_of_matmul_peak"],
}
BUDGET_S = 20 * 60


def run_benchmarks(names, quick: bool) -> dict:
    """Run ``names`` in order; ``{"results": {name: result}, "errors": {name: traceback}}``."""
    results, errors = {}, {}
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"[bench] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            results[name] = module.run(quick=quick)
            print(f"[bench] {name}: {results[name]['metrics']} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - record, keep going: one broken benchmark must not hide the rest
            errors[name] = traceback.format_exc()
            print(f"[bench] {name} FAILED after {time.perf_counter() - t0:.0f} s:\n{errors[name]}", file=sys.stderr, flush=True)
    return {"results": results, "errors": errors}


def assemble(names, outcome: dict, machine: dict, quick: bool, total_s: float) -> dict:
    """The latest.json document (see the module docstring)."""
    doc: dict = {}
    for name in names:
        for key in KEYS.get(name, []):
            doc[key] = None
    for name, res in outcome["results"].items():
        doc.update(res["metrics"])
    doc["machine"] = machine
    doc["quick"] = quick
    doc["total_seconds"] = round(total_s, 1)
    doc["within_budget"] = total_s < BUDGET_S
    doc["targets"] = [c for name in names if name in outcome["results"] for c in outcome["results"][name]["checks"]]
    doc["errors"] = {k: v[-4000:] for k, v in outcome["errors"].items()}
    doc["benchmarks"] = outcome["results"]
    return doc


def _fmt(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0:
            return "0"
        a = abs(v)
        return f"{v:.3g}" if a < 1e-3 else (f"{v:.4f}" if a < 1 else (f"{v:.3f}" if a < 100 else f"{v:,.1f}"))
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(doc: dict, names) -> str:
    """``latest.md``: machine, targets, then each benchmark's measured numbers and notes."""
    m = doc["machine"]
    lines = [
        "# EquiBench benchmarks" + (" (QUICK MODE: tiny sizes, numbers are meaningless)" if doc["quick"] else ""),
        "",
        f"Measured {m['date']} on {m['cores']} cores ({m['cpu_model']}), {m.get('memory_gib')} GiB, torch "
        f"{m['torch_version']}, Python {m['python']}, git {m.get('git')}; load average at start "
        f"{m.get('load_average_1_5_15')}. Total {doc['total_seconds']:.0f} s "
        f"({'within' if doc['within_budget'] else 'OVER'} the {BUDGET_S // 60}-minute budget).",
        "",
        "## Targets",
        "",
        "| metric | value | target | met |",
        "|---|---|---|---|",
    ]
    for c in doc["targets"]:
        met = {True: "met", False: "**missed**", None: "n/a"}[c["met"]]
        lines.append(f"| `{c['metric']}` | {_fmt(c['value'])} | {c['target']} | {met} |")
    lines += ["", "## Headline keys", "", "| key | value |", "|---|---|"]
    for name in names:
        for key in KEYS.get(name, []):
            lines.append(f"| `{key}` | {_fmt(doc.get(key))} |")
    for name in names:
        res = doc["benchmarks"].get(name)
        if res is None:
            err = doc["errors"].get(name, "not run")
            lines += ["", f"## {name}: FAILED", "", "```", err[-2500:].rstrip(), "```"]
            continue
        lines += ["", f"## {res['title']}", "", f"`benchmarks/bench_{name}.py`, {res['seconds']:.0f} s.", "",
                  "| measured | value | unit |", "|---|---|---|"]
        for label, value, unit in res["measured"]:
            lines.append(f"| {label} | {_fmt(value)} | {unit} |")
        if res["checks"]:
            lines.append("")
            for c in res["checks"]:
                met = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
                lines.append(f"Target `{c['metric']}` {c['target']}: {_fmt(c['value'])} — **{met}**.")
        if res["notes"]:
            lines.append("")
            lines += [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run the EquiBench benchmarks; write latest.json and latest.md.")
    p.add_argument("--quick", action="store_true", help="tiny sizes (tests); writes to results/tmp-quick/ by default")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--out", help="output folder (default benchmarks/results, or results/tmp-quick with --quick)")
    args = p.parse_args(argv)
    names = list(BENCHMARKS)
    if args.only:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(names) - set(BENCHMARKS))
        if unknown:
            p.error(f"unknown benchmarks {unknown}; allowed: {', '.join(BENCHMARKS)}")
    out = Path(args.out) if args.out else (C.RESULTS_DIR / "tmp-quick" if args.quick else C.RESULTS_DIR)
    os.environ.setdefault("RAY_ADDRESS", "local")  # local clusters only, never one found in /tmp/ray
    C.KEEP_RAY = True  # one Ray for the in-process benchmarks; shut down below
    machine = C.machine_info()
    t0 = time.perf_counter()
    try:
        outcome = run_benchmarks(names, args.quick)
    finally:
        try:
            import ray

            if ray.is_initialized():
                ray.shutdown()
        except ImportError:
            pass
    doc = assemble(names, outcome, machine, args.quick, time.perf_counter() - t0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    (out / "latest.md").write_text(markdown(doc, names))
    print(f"[bench] wrote {out / 'latest.json'} and {out / 'latest.md'} ({doc['total_seconds']:.0f} s)", file=sys.stderr)
    for c in doc["targets"]:
        print(f"[bench] {c['metric']} = {_fmt(c['value'])} (target {c['target']}): "
              f"{ {True: 'met', False: 'MISSED', None: 'n/a'}[c['met']] }", file=sys.stderr)
    return 1 if outcome["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
