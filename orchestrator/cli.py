"""The ``equibench`` command: one sub-command per module, each registering itself.

Each module named in ``COMMAND_MODULES`` exposes ``register(subparsers)``, adds its parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Adding a command never
touches another command's code.

``main`` is the one place that turns mistakes into messages: flags that mean the same in every
command are range-checked (``FLAG_RULES``), output folders that are files and store paths that
do not exist are refused before the command runs, and the error classes an ordinary mistake
raises print one line, ``equibench CMD: error: ...``, exit 2, never a traceback (set
``EQUIBENCH_TRACEBACK=1`` to see one). Ctrl-C prints what was stored and exits 130.

``-v`` / ``--verbose`` (before or after the command) sets ``EQUIBENCH_VERBOSE=1``: Ray's own
output and every worker line are shown (``orchestrator.cluster``); without it a sweep prints its
progress, each distinct warning once (``equibench CMD: warning: ...``) and its errors.
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

COMMAND_MODULES = (
    "orchestrator.commands.run",  # run, status, query
    "orchestrator.commands.plan",  # plan: what a run would compute, computing nothing
    "orchestrator.commands.export",  # export: a query's result as CSV/Parquet outside the store
    "orchestrator.commands.compact",  # compact: each run's unit files merged into one sorted Parquet file
    "orchestrator.commands.listing",  # list: solvers, operators, groups, metrics, datasets; spec: the field reference
    "orchestrator.commands.solve",  # solve: one solver on a few images, PNG grid + metrics
    "orchestrator.commands.report",  # report: tables and figures
    "orchestrator.commands.tune",  # tune: Ray Tune search
    "orchestrator.commands.calibrate",  # calibrate: per-solver lambda ranges from influence ratios
    "orchestrator.commands.train",  # train-embedded: the embedded world's models
)

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
DESCRIPTION = ("EquiBench: run sweeps of inverse-problem solvers (with and without EquiReg) into a resumable "
               "store, then query, export and report them.")

#: Command -> (module, one-line help) for ``equibench --help``, which imports no command module (so
#: no torch, pandas or Ray: it prints in well under a second); ``equibench CMD ...`` imports CMD's.
COMMANDS = {
    "run": ("orchestrator.commands.run", "run or resume a sweep spec (YAML) into a store"),
    "plan": ("orchestrator.commands.plan", "what `run SPEC` would compute (configs, rows, units, time), computing nothing"),
    "status": ("orchestrator.commands.run", "per-run progress and failures of a store"),
    "query": ("orchestrator.commands.run", "read-only SQL (duckdb) over a store"),
    "export": ("orchestrator.commands.export", "write a query's result to a CSV or Parquet file outside the store"),
    "compact": ("orchestrator.commands.compact", "merge each run's unit files into one sorted Parquet file (atomic)"),
    "report": ("orchestrator.commands.report", "paper-style tables and figures from a store"),
    "solve": ("orchestrator.commands.solve", "one solver, with and without EquiReg, on a few images"),
    "tune": ("orchestrator.commands.tune", "Ray Tune search over a spec's hyperparameters"),
    "list": ("orchestrator.commands.listing", "registry entries: solvers, operators, groups, metrics, datasets"),
    "spec": ("orchestrator.commands.listing", "the sweep spec reference: every field, type, default, allowed values"),
    "train-embedded": ("orchestrator.commands.train", "train the embedded world's models"),
    "calibrate": ("orchestrator.commands.calibrate", "per-solver lambda ranges from influence ratios in a store"),
}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


#: Flags (argparse dests) with one meaning in every command: dest -> (check, what is allowed).
FLAG_RULES = {
    "actors": (lambda v: v >= 1, "an integer >= 1"),
    "sigma_y": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
    "lam": (lambda v: _finite(v) and v >= 0, "a number >= 0"),
    "step_size": (lambda v: _finite(v) and v > 0, "a number > 0"),
    "n": (lambda v: v >= 1, "an integer >= 1"),
    "steps": (lambda v: v >= 1, "an integer >= 1"),
    "threads": (lambda v: v >= 1, "an integer >= 1"),
    "resamples": (lambda v: v >= 1, "an integer >= 1"),
    "max_rows": (lambda v: v >= 1, "an integer >= 1"),
    "sample_ids": (lambda v: all(i >= 0 for i in v), "integers >= 0"),
}
#: Commands whose ``--out`` is a folder they write into (a file there is refused before compute).
OUT_DIR_COMMANDS = ("solve", "report", "tune", "train-embedded")
#: Commands that only read ``--store`` (a mistyped path is an error, never an empty store).
READ_STORE_COMMANDS = ("status", "query", "report", "export")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's module is imported (the others are
    listed from ``COMMANDS``). A missing or broken command module is an error, never skipped."""
    parser = argparse.ArgumentParser(prog="equibench", description=DESCRIPTION,
                                     epilog="`equibench COMMAND --help` for each command; spec fields: "
                                            "`equibench spec --fields` or docs/SPEC-REFERENCE.md")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    if command is None:
        for name in COMMAND_MODULES:
            importlib.import_module(name).register(subparsers)
        return _add_verbose(parser, subparsers)
    importlib.import_module(COMMANDS[command][0]).register(subparsers)
    have = set(subparsers.choices)
    for name, (_, help_) in COMMANDS.items():
        if name not in have:
            subparsers.add_parser(name, help=help_)
    return _add_verbose(parser, subparsers)


VERBOSE_HELP = "show Ray's own output and every worker line (default: progress, each warning once, errors)"


def _add_verbose(parser: argparse.ArgumentParser, subparsers) -> argparse.ArgumentParser:
    """``-v/--verbose`` on the top level and on every command (``equibench -v run ...`` and
    ``equibench run ... -v`` mean the same; a command's copy only sets the flag when given)."""
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    for sub in dict.fromkeys(subparsers.choices.values()):  # aliases map to the same parser
        if not any("--verbose" in a.option_strings for a in sub._actions):
            sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser


def check_args(args) -> None:
    """The checks every command shares, before it runs (ValueError naming the flag)."""
    for dest, (ok, allowed) in FLAG_RULES.items():
        value = getattr(args, dest, None)
        if value is not None and not ok(value):
            flag = "--" + dest.replace("_", "-")
            raise ValueError(f"{flag} {value if not isinstance(value, list) else ' '.join(map(str, value))}: allowed: {allowed}")
    out = getattr(args, "out", None)
    if args.command in OUT_DIR_COMMANDS and out is not None and os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"--out {out} is a file; give a folder to write into (checked before any compute)")
    if args.command in READ_STORE_COMMANDS and getattr(args, "store", None):
        from orchestrator.store_files import check_readable

        check_readable(args.store)


def _message(exc: BaseException) -> str:
    from orchestrator.spec import SpecError

    if isinstance(exc, SpecError) and len(exc.errors) == 1:
        head = str(exc).splitlines()[0].split(" (", 1)[0]
        field, msg = exc.errors[0]
        return f"{head}: {field}: {msg}"
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    if isinstance(exc, ConnectionError):
        return f"cannot connect to Ray: {str(exc).splitlines()[0]}"
    return str(exc) or type(exc).__name__


def _stub_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equibench", description=DESCRIPTION,
                                     epilog="`equibench COMMAND --help` for each command; spec fields: "
                                            "`equibench spec --fields` or docs/SPEC-REFERENCE.md")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        subparsers.add_parser(name, help=help_)
    return _add_verbose(parser, subparsers)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in COMMANDS:
        parser = build_parser(command)
    elif command is None:
        parser = _stub_parser()  # `equibench`, `equibench --help`: no command module imported
    else:
        parser = build_parser()  # a command missing from COMMANDS still works; argparse names typos
    args = parser.parse_args(argv)
    if getattr(args, "verbose", False):
        from orchestrator.cluster import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"  # read where Ray starts (orchestrator.cluster), inherited by subprocesses
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    import warnings

    def one_line(message, category, filename, lineno, file=None, line=None):  # no source line, one line each
        print(f"equibench {args.command}: warning: {message}", file=sys.stderr if file is None else file)

    previous = warnings.showwarning
    warnings.showwarning = one_line
    try:
        check_args(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:  # the rows stored so far stay; a rerun resumes
        msg = str(exc) or "interrupted; nothing stored is lost, rerun the same command to resume"
        print(f"equibench {args.command}: {msg}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as exc:  # bad input (ConnectionError, PermissionError, ... are OSErrors)
        if os.environ.get("EQUIBENCH_TRACEBACK"):
            raise
        print(f"equibench {args.command}: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
