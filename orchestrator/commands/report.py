"""``equibench report``: the paper's tables (and, with ``--figures``, its figures) from a store.

    equibench report --store DIR [--run RUN ...] --layout LAYOUT [...] --format md|latex|html|csv
                     [...] --out DIR [--select best|all] [--select-by METRIC] [--metrics M ...]
                     [--select-on DATASET] [--report-on DATASET ...] [--resamples N] [--ci-seed N]
                     [--baseline-only SOLVER ...] [--task T ...] [--solver S ...] [--no-naive]
                     [--figures [NAME ...]] [--sample-ids ID ...]

Writes ``<out>/<layout>.<ext>`` per layout and format (``.md``, ``.tex``, ``.html``, ``.csv``) and
prints the paths. ``all`` as a layout or format means every one. Every mean and delta carries a
95% cluster-bootstrap interval; ``--select-on embedded/tune --report-on embedded/report`` picks each
method's best config on the tuning split and reports it on held-out images (without it, a table
that picks on the images it reports says so in bold). Inert / dominant lambdas are warned about on
stderr, once.
"""
from __future__ import annotations

import argparse
import sys

from orchestrator import report


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="paper-style tables and figures from a store",
        description="Paper-style tables (and, with --figures, figures) from a results store.",
        epilog="Layouts: " + "; ".join(f"{k}: {v.description}" for k, v in report.LAYOUTS.items()),
    )
    p.add_argument("--store", required=True, help="the store directory")
    p.add_argument("--run", nargs="+", default=None, metavar="RUN", help="only these runs (default: all)")
    p.add_argument("--layout", nargs="+", default=["tasks-by-method"], choices=[*report.LAYOUTS, "all"], metavar="LAYOUT",
                   help=f"one or more of {', '.join(report.LAYOUTS)}, or all (default tasks-by-method)")
    p.add_argument("--format", nargs="+", default=["md"], choices=[*report.FORMATS, "all"], metavar="FORMAT",
                   help=f"one or more of {', '.join(report.FORMATS)}, or all (default md)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--select", default="best", choices=sorted(report.SELECTIONS),
                   help="best: one row per method, its best config by --select-by (default); all: a row per config")
    p.add_argument("--select-by", default=None, metavar="METRIC",
                   help="metric that picks a method's config (default: psnr, rel_l2 for the pde layout)")
    p.add_argument("--select-on", default=None, metavar="DATASET",
                   help="pick each method's best config (--select best) on this dataset's rows, e.g. embedded/tune, and "
                        "report the same settings on other datasets (default: pick on the images reported, said in bold)")
    p.add_argument("--report-on", nargs="+", default=None, metavar="DATASET",
                   help="datasets the tables show, e.g. embedded/report embedded/report_ood (default: every dataset; "
                        "with --select-on, every dataset but that one)")
    p.add_argument("--resamples", type=int, default=report.ReportOptions.n_resamples, metavar="N",
                   help="bootstrap resamples per interval (default %(default)s)")
    p.add_argument("--ci-seed", type=int, default=report.ReportOptions.ci_seed, metavar="N",
                   help="seed of the bootstrap (default %(default)s): the same store always renders the same intervals")
    p.add_argument("--metrics", nargs="+", default=None, metavar="METRIC", help=f"columns to show ({', '.join(report.METRICS)})")
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
    if args.demo:
        print(report.print_comparison(results, sets, options))
        print(report.write_demo_report(args.store, args.out, args.run, options))
        return 0
    layouts = _expand(args.layout, report.LAYOUTS)
    paths = report.write_report(results, sets, args.out, layouts, _expand(args.format, report.FORMATS), options)
    for layout in layouts:
        if not any(p.stem == layout for p in paths):
            print(f"{layout}: no rows ({report.LAYOUTS[layout].description}), skipped", file=sys.stderr)
    if args.figures is not None:
        from orchestrator import figures

        paths += figures.write_figures(results, args.store, f"{args.out}/figures", names=args.figures or None,
                                       metrics=args.figure_metrics, primary=args.select_by or "psnr", sample_ids=args.sample_ids)
    for path in paths:
        print(path)
    return 0
