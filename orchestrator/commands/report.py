"""``equibench report``: the paper's tables (and, with ``--figures``, its figures) from a store.

    equibench report --store DIR [--run RUN ...] --layout LAYOUT [...] --format md|latex|html|csv
                     [...] --out DIR [--select best|all] [--select-by METRIC] [--metrics M ...]
                     [--select-on DATASET] [--report-on DATASET ...] [--resamples N] [--ci-seed N]
                     [--baseline-only SOLVER ...] [--task T ...] [--solver S ...] [--no-naive]
                     [--figures [NAME ...]] [--sample-ids ID ...]

Writes ``<out>/<layout>.<ext>`` per layout and format (``.md``, ``.tex``, ``.csv``) and prints the
paths; ``html`` writes one self-contained ``<out>/report.html`` over every layout (or ``--layout``'s)
with the runs, sortable and filterable tables, interactive charts and the figures embedded
(``reporting.html_report``). ``all`` as a layout or format means every one. Every mean and delta carries a
95% cluster-bootstrap interval; ``--select-on embedded/tune --report-on embedded/report`` picks each
method's best config on the tuning split and reports it on held-out images (without it, a table
that picks on the images it reports says so in bold). Inert / dominant lambdas are warned about on
stderr, once.
"""
from __future__ import annotations

import argparse
import sys
from typing import Iterable, Sequence

from orchestrator.metrics import registry as _metric_registry

#: What the parser (and so ``report --help``) shows, without importing the report pipeline (pandas,
#: torch via the registries: seconds): the same names as ``report.LAYOUTS`` (with descriptions),
#: ``FORMATS``, ``SELECTIONS``, ``METRICS`` and the ``ReportOptions`` bootstrap defaults, which
#: ``tests/test_cli_lazy.py`` checks against the pipeline's own registries. ``METRICS`` reads the
#: metric registry itself (it imports nothing heavy).
LAYOUTS = {
    "tasks-by-method": "Table 1: rows task x method, columns LPIPS, FID, PSNR, SSIM",
    "methods-by-tasks": "Tables 2-3: rows methods (latent / pixel / classical), column groups per task",
    "mean-std": "Table 7: mean (sd; 95% interval) per task x method",
    "pde": "Table 4: relative L2 per PDE forward / inverse problem",
    "calibration": "posterior calibration per solver x regularizer x step x task: SW vs its floor, coverage, "
                   "mean error, std ratio, mode TV, MMSE gap (exact-posterior datasets)",
}
FORMATS = ("md", "latex", "html", "csv")
SELECTIONS = ("all", "best")
#: + the posterior set metrics the calibration layout shows (``reporting.calibration.COLUMNS``)
METRICS = tuple(_metric_registry.by_column()) + ("wall_s",) + (
    "sw", "sw_floor", "sw_ratio", "mean_err", "std_ratio", "mode_tv", "cov50", "cov90", "mmse_gap")
N_RESAMPLES, CI_SEED = 10000, 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="paper-style tables and figures from a store",
        description="Paper-style tables (and, with --figures, figures) from a results store.",
        epilog="Layouts: " + "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items()),
    )
    p.add_argument("--store", required=True, help="the store directory")
    p.add_argument("--run", nargs="+", default=None, metavar="RUN", help="only these runs (default: all)")
    p.add_argument("--layout", nargs="+", default=None, choices=[*LAYOUTS, "all"], metavar="LAYOUT",
                   help=f"one or more of {', '.join(LAYOUTS)}, or all (default tasks-by-method; for html all)")
    p.add_argument("--format", nargs="+", default=["md"], choices=[*FORMATS, "all"], metavar="FORMAT",
                   help=f"one or more of {', '.join(FORMATS)}, or all (default md)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--select", default="best", choices=list(SELECTIONS),
                   help="best: one row per method, its best config by --select-by (default); all: a row per config")
    p.add_argument("--select-by", default=None, metavar="METRIC",
                   help="metric that picks a method's config (default: psnr, rel_l2 for the pde layout)")
    p.add_argument("--select-on", default=None, metavar="DATASET",
                   help="pick each method's best config (--select best) on this dataset's rows, e.g. embedded/tune, and "
                        "report the same settings on other datasets (default: pick on the images reported, said in bold)")
    p.add_argument("--report-on", nargs="+", default=None, metavar="DATASET",
                   help="datasets the tables show, e.g. embedded/report embedded/report_ood (default: every dataset; "
                        "with --select-on, every dataset but that one)")
    p.add_argument("--resamples", type=int, default=N_RESAMPLES, metavar="N",
                   help="bootstrap resamples per interval (default %(default)s)")
    p.add_argument("--ci-seed", type=int, default=CI_SEED, metavar="N",
                   help="seed of the bootstrap (default %(default)s): the same store always renders the same intervals")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC", help=f"columns to show ({', '.join(METRICS)})")
    p.add_argument("--baseline-only", nargs="+", default=(), metavar="SOLVER",
                   help="solvers shown only as baselines (their Equi/EquiCon rows left out)")
    p.add_argument("--task", nargs="+", default=None, metavar="TASK", help="only these tasks")
    p.add_argument("--solver", nargs="+", default=None, metavar="SOLVER", help="only these solvers")
    p.add_argument("--no-naive", action="store_true", help="leave out the naive-inverse reference row")
    p.add_argument("--figures", nargs="*", default=None, metavar="NAME",
                   help="also draw figures into <out>/figures (no names: all of them)")
    p.add_argument("--figure-metrics", nargs="+", default=["psnr"], metavar="METRIC", help="per-image metrics the figures plot")
    p.add_argument("--sample-ids", nargs="+", type=int, default=None, metavar="ID", help="samples for the qualitative grid")
    p.add_argument("--demo", action="store_true",
                   help="print the comparison table and write OUT/demo.md with every figure (what `make demo` ends with)")
    p.set_defaults(func=run)


def _expand(values, registry) -> list[str]:
    return list(registry) if "all" in values else list(dict.fromkeys(values))


def run(args: argparse.Namespace) -> int:
    from orchestrator import report

    for metric in (args.metrics or []) + ([args.select_by] if args.select_by else []):
        if metric not in report.METRICS:
            raise ValueError(f"unknown metric {metric!r}; allowed: {sorted(report.METRICS)}")
    options = report.ReportOptions(
        metrics=tuple(args.metrics) if args.metrics else None,
        select=args.select,
        select_by=args.select_by,
        baseline_only=tuple(args.baseline_only),
        naive=not args.no_naive,
        tasks=tuple(args.task) if args.task else None,
        solvers=tuple(args.solver) if args.solver else None,
        select_on=args.select_on,
        report_on=tuple(args.report_on) if args.report_on else None,
        n_resamples=args.resamples,
        ci_seed=args.ci_seed,
    )
    if args.resamples < 1:
        raise ValueError(f"--resamples must be >= 1, got {args.resamples}")
    results, sets = report.load_store(args.store, args.run)
    if args.sample_ids:  # before anything is written
        check_sample_ids(results, args.store, args.sample_ids, args.figures, args.demo)
    if args.demo:
        print(report.print_comparison(results, sets, options))
        print(report.write_demo_report(args.store, args.out, args.run, options))
        return 0
    formats = _expand(args.format, report.FORMATS)
    text_formats = [f for f in formats if f != "html"]
    layouts = _expand(args.layout or ["tasks-by-method"], report.LAYOUTS)
    posterior = None
    if any(report.LAYOUTS[name].source == "posterior" for name in layouts):  # the calibration layout's rows
        from orchestrator.reporting.calibration import load_posterior

        posterior = load_posterior(args.store, args.run)
    paths = report.write_report(results, sets, args.out, layouts, text_formats, options, posterior) if text_formats else []
    for layout in layouts if text_formats else []:
        if not any(p.stem == layout for p in paths):
            print(f"{layout}: no rows ({report.LAYOUTS[layout].description}), skipped", file=sys.stderr)
    figure_paths = None
    if args.figures is not None:
        from orchestrator import figures

        figure_paths = figures.write_figures(results, args.store, f"{args.out}/figures", names=args.figures or None,
                                             metrics=args.figure_metrics, primary=args.select_by or "psnr", sample_ids=args.sample_ids)
        paths += figure_paths
    if "html" in formats:
        from orchestrator.reporting.html_report import write_html_report

        paths.append(write_html_report(results, sets, args.store, args.out, _expand(args.layout, report.LAYOUTS) if args.layout else None,
                                       options, figure_metrics=args.figure_metrics, sample_ids=args.sample_ids, figure_paths=figure_paths))
    for path in paths:
        print(path)
    return 0


def stored_image_samples(store_dir, run_ids: Iterable[str]) -> set[int]:
    """Sample ids with a saved reconstruction in the runs ``run_ids`` (reads only the image files'
    key lists; an unreadable file is left to the figure's own reader, which names it)."""
    import numpy as np

    from orchestrator import store

    out: set[int] = set()
    for run_id in run_ids:
        folder = store.images_dir(store_dir, run_id)
        for f in sorted(folder.glob("unit-*.npz")) if folder.is_dir() else []:
            if store._is_hidden(f.name):
                continue
            try:
                with np.load(f, allow_pickle=False) as z:
                    keys = z["x_hat__keys"].tolist() if "x_hat__keys" in z.files else []
            except Exception:  # noqa: BLE001
                continue
            out |= {int(str(k).rsplit(":", 1)[1]) for k in keys if str(k).rsplit(":", 1)[-1].isdigit()}
    return out


def _id_ranges(ids: Sequence[int]) -> str:
    """``[0, 1, 2, 3, 7]`` -> ``"0-3, 7"``."""
    parts: list[str] = []
    for i in sorted(set(ids)):
        if parts and parts[-1].split("-")[-1] == str(i - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ", ".join(parts)


def check_sample_ids(results, store_dir, sample_ids: Sequence[int], figure_names=None, demo: bool = False) -> None:
    """``ValueError`` unless ``--sample-ids`` has a use (the qualitative figure is drawn: ``--figures``
    with no names or naming it) and every id has a saved reconstruction in the store's runs of
    ``results``; the message names the missing ids and the stored ones."""
    flag = "--sample-ids " + " ".join(str(s) for s in sample_ids)
    if demo:
        raise ValueError(f"{flag}: --demo draws every figure with its default samples; pick samples with "
                         "--figures qualitative --sample-ids ... instead")
    if figure_names is None or (figure_names and "qualitative" not in figure_names):
        raise ValueError(f"{flag}: picks the rows of the qualitative figure, which this command does not draw; "
                         "add --figures qualitative (or --figures for every figure)")
    runs = sorted(set(results["run_id"].dropna().astype(str))) if "run_id" in results else []
    have = stored_image_samples(store_dir, runs)
    missing = [s for s in dict.fromkeys(int(s) for s in sample_ids) if s not in have]
    if not missing:
        return
    if not have:
        raise ValueError(f"{flag}: the store holds no saved images for run(s) {', '.join(runs) or '-'} (they ran "
                         "with save_images: false?); the qualitative figure needs them")
    raise ValueError(f"{flag}: no saved images for sample id{'s' * (len(missing) > 1)} {_id_ranges(missing)}; "
                     f"stored: {_id_ranges(sorted(have))}")
