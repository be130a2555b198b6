"""The ``equibench`` command: one sub-command per module, each registering itself.

Each module named in ``COMMAND_MODULES`` exposes ``register(subparsers)``, adds its parser and sets
``func`` (a callable taking the parsed args and returning an exit code). Adding a command never
touches another command's code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES = (
    "orchestrator.commands.run",  # run, status, query
    "orchestrator.commands.solve",  # solve: one solver on a few images, PNG grid + metrics
    "orchestrator.commands.report",  # report: tables and figures
    "orchestrator.commands.tune",  # tune: Ray Tune search
    "orchestrator.commands.train",  # train-embedded: the embedded world's models
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="equibench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not built yet: leave it out
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # bad input: a clear message, no traceback
        print(f"equibench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
