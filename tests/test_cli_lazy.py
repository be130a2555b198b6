"""The CLI's start-up: ``--help`` of every command imports no heavy library, the help text it shows
without importing a pipeline matches that pipeline, and ``-v/--verbose`` works anywhere."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "pandas", "duckdb", "pyarrow", "matplotlib", "numpy")

PROBE = f"""
import contextlib, io, json, sys
from orchestrator.cli import COMMANDS, main
out = {{}}
for cmd in [None, *COMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["--help"] if cmd is None else [cmd, "--help"])
        except SystemExit:
            pass
    out[str(cmd)] = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps(out))
"""


def test_help_of_every_command_imports_no_heavy_library():
    """``equibench --help`` and ``equibench CMD --help`` print in a fraction of a second: none of
    them imports torch, Ray, pandas, duckdb, pyarrow, matplotlib or numpy."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got and all(not mods for mods in got.values()), got


def test_report_help_names_are_the_pipelines():
    """``commands/report.py`` lists layouts, formats, selections, metrics and bootstrap defaults
    without importing ``orchestrator.report``: they must be the pipeline's own."""
    from orchestrator import report
    from orchestrator.commands import report as cmd

    assert cmd.LAYOUTS == {k: v.description for k, v in report.LAYOUTS.items()}
    assert list(cmd.FORMATS) == list(report.FORMATS)
    assert sorted(cmd.SELECTIONS) == sorted(report.SELECTIONS)
    assert list(cmd.METRICS) == list(report.METRICS)
    assert (cmd.N_RESAMPLES, cmd.CI_SEED) == (report.ReportOptions.n_resamples, report.ReportOptions.ci_seed)


def test_verbose_before_or_after_the_command(monkeypatch):
    from orchestrator import cli
    from orchestrator.cluster import VERBOSE_ENV, verbose

    for argv, want in ((["-v", "plan", "x.yaml"], True), (["plan", "x.yaml", "--verbose"], True),
                       (["plan", "x.yaml"], False), (["--verbose", "status", "--store", "s"], True)):
        cmd = next(a for a in argv if not a.startswith("-"))
        assert cli.build_parser(cmd).parse_args(argv).verbose is want, argv
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert verbose()
    monkeypatch.setenv(VERBOSE_ENV, "0")
    assert not verbose()
    monkeypatch.delenv(VERBOSE_ENV)
    assert not verbose()
