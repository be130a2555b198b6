"""Issue 16: every bad input a clear one-line error before compute, and the store untouched.

The corpus is ``tests/bad_inputs/`` (spec files, and ``cases.py`` by class) plus the older spec
corpus ``tests/bad_specs/``. Each case runs through the real CLI, ``orchestrator.cli.main``,
in-process (Python start-up costs seconds per subprocess on the 2-core box); ``--help`` and
Ctrl-C run as real subprocesses. Every case asserts the exit code, a message naming the problem
on one line, no traceback, and that every file of the store is byte-identical afterwards (so
nothing was computed or written).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orchestrator import cli, grid, run_identity, spec as spec_mod, store
from orchestrator.plugins import ENV as PLUGINS_ENV
from tests.bad_inputs.cases import CASES, as_json, spec_variants
from tests.support import FAKES as FAKE

HERE = Path(__file__).parent
CORPUS = HERE / "bad_inputs"
SPECS = sorted((CORPUS / "specs").glob("*.yaml"))
LEGACY_SPECS = sorted((HERE / "bad_specs").glob("*.yaml"))
REPO = HERE.parent

BASE = {"name": "smoke", "prior": "fake", "plugins": [FAKE], "dataset": {"count": 3},
        "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
        "solvers": [{"name": "fake", "num_steps": [2]}],
        "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1, 0.2]}],
        "batch_size": 4, "metrics": ["psnr"], "save_images": False, "resources": {"num_cpus": 0.25}}


# --------------------------------------------------------------------------------- helpers
def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as exc:  # argparse's own usage errors
            rc = exc.code if isinstance(exc.code, int) else 2
    return rc, out.getvalue(), err.getvalue()


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (hidden ones too): the store must not change."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_clean_error(rc, out, err, expect_rc, expect, where="err"):
    text = out + err
    assert "Traceback" not in text, text[-3000:]
    assert rc == expect_rc, f"exit {rc}, wanted {expect_rc}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    stream = err if where == "err" else out
    assert expect in stream, f"{expect!r} not in:\n{stream[-2000:]}"
    if expect_rc != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert any("error:" in ln for ln in lines), f"no error line in {err!r}"
        if "usage:" in err:  # argparse prints its usage, then one error line
            return
        m = re.search(r"\((\d+) problems\):$", lines[0])
        # one line per problem: a spec with N problems lists them under one head line
        want = 1 + int(m.group(1)) if m else 1
        assert len(lines) == want, f"{len(lines)} lines on stderr, wanted {want}:\n{err}"


# --------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """A store holding the whole grid of BASE (9 rows: 8 ok, 1 diverged) plus a run 'other'."""
    root = tmp_path_factory.mktemp("golden") / "store"
    spec = spec_mod.parse_sweep(BASE)
    configs, samples = grid.expand(spec), grid.sample_ids(spec)
    ghash = run_identity.grid_hash([c.config_id for c in configs], samples)
    for i, cfg in enumerate(configs):
        rows = [{**cfg.store_columns(), "sample_id": s, "status": "diverged" if (i, s) == (2, 0) else "ok",
                 "psnr": None if (i, s) == (2, 0) else 20.0 + s, "wall_s": 0.01} for s in samples]
        store.write_unit(root, "smoke", f"u{i}", rows, grid_hash=ghash)
    store.register_run(root, "smoke", spec.canonical(), len(configs) * len(samples), n_configs=len(configs),
                       n_samples=len(samples), grid_hash=ghash, grid_hashes=[ghash])
    store.write_unit(root, "other", "o1", [dict(config_id="c9", sample_id=0, status="ok", psnr=3.0)], grid_hash="0" * 16)
    store.register_run(root, "other", {"name": "other"}, 1, grid_hash="0" * 16, grid_hashes=["0" * 16])
    return root


@pytest.fixture
def env(golden, tmp_path):
    """A fresh copy of the golden store and the spec files the cases name."""
    st = tmp_path / "store"
    shutil.copytree(golden, st)
    names = {}
    for key, d in spec_variants(BASE).items():
        path = tmp_path / f"{key}.yaml"
        path.write_text(as_json(d))
        names[key] = str(path)
    return {"store": str(st), "tmp": str(tmp_path), **names}


def _fill(argv, env):
    return [a.format(**env) if isinstance(a, str) else a for a in argv]


ALL = [(cls, c) for cls, cases in CASES.items() for c in cases]


@pytest.mark.parametrize("cls,case", ALL, ids=[f"{cls}-{c.id}" for cls, c in ALL])
def test_case(cls, case, env, monkeypatch):
    if case.setup:
        case.setup(env["store"], env["tmp"])
    before = digest(Path(env["store"]))
    if case.patch:
        case.patch(monkeypatch)
    rc, out, err = run_cli(_fill(case.argv, env))
    monkeypatch.undo()
    assert_clean_error(rc, out, err, case.rc, case.expect.format(**env), case.where)
    assert digest(Path(env["store"])) == before, "the store changed"


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_bad_spec(path, env, monkeypatch):
    expect = path.read_text().splitlines()[0].removeprefix("# error:").strip()
    before = digest(Path(env["store"]))
    monkeypatch.setenv(PLUGINS_ENV, FAKE)  # the corpus names the fake's solvers and operators
    rc, out, err = run_cli(["run", path, "--store", env["store"]])
    assert_clean_error(rc, out, err, 2, expect)
    assert digest(Path(env["store"])) == before


@pytest.mark.parametrize("argv_tail,expect", [
    (["{tmp}"], "is a directory; give a spec file"),
    ([str(CORPUS / "files" / "spec.yml.txt")], "does not end in .yaml or .yml"),
    (["{tmp}/missing.yaml"], "spec file not found"),
    (["{tmp}/notes"], "spec file not found"),
], ids=["directory", "yml_txt", "missing_yaml", "missing_no_suffix"])
def test_bad_spec_path(argv_tail, expect, env):
    before = digest(Path(env["store"]))
    rc, out, err = run_cli(["run", *_fill(argv_tail, env), "--store", env["store"]])
    assert_clean_error(rc, out, err, 2, expect)
    assert digest(Path(env["store"])) == before


@pytest.mark.parametrize("path", LEGACY_SPECS, ids=[p.stem for p in LEGACY_SPECS])
def test_legacy_bad_spec(path, env):
    expect = path.read_text().splitlines()[0].removeprefix("# error:").strip()
    before = digest(Path(env["store"]))
    rc, out, err = run_cli(["run", path, "--store", env["store"]])
    assert_clean_error(rc, out, err, 2, expect)
    assert digest(Path(env["store"])) == before


# ------------------------------------------------------------------------- real processes
def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "CI": "1", "PYTHONUNBUFFERED": "1"}


def test_help_subprocess():
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "--help"], capture_output=True, text=True,
                          env=_env(), cwd=REPO, timeout=300)
    took = time.perf_counter() - t0
    assert proc.returncode == 0 and "plan" in proc.stdout and "export" in proc.stdout and "Traceback" not in proc.stderr
    print(f"--help took {took:.2f}s")


@pytest.mark.slow  # a real Ray start in a subprocess: ~20 s on an idle box, minutes on a loaded one
@pytest.mark.timeout(900)
def test_ctrl_c_one_line_exit_130_store_resumable(tmp_path):
    d = {**BASE, "name": "sigint", "dataset": {"count": 6}, "batch_size": 2, "resources": {"num_cpus": 0.5, "num_actors": 1},
         "solvers": [{"name": "fake", "num_steps": [2], "options": {"sleep": 1.0}}]}
    spec_file = tmp_path / "sigint.yaml"
    spec_file.write_text(as_json(d))
    st = tmp_path / "store"
    env = _env()
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "run", str(spec_file), "--store", str(st)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            if list((st / "results" / "run=sigint").glob("unit-*.parquet")) if (st / "results").exists() else []:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()
        before = digest(st)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert "Traceback" not in out + err, err[-3000:]
    line = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert line and "rows stored" in line[0] and "rerun the same command to resume" in line[0], err[-2000:]
    stored = {k: v for k, v in before.items() if k.startswith("results/") and "/." not in k}
    after = digest(st)
    assert all(after.get(k) == v for k, v in stored.items()), "a stored unit changed after Ctrl-C"


def test_help_lists_every_command_without_importing_them():
    full = cli.build_parser()
    names = set(next(a for a in full._actions if a.dest == "command").choices)
    assert names == set(cli.COMMANDS)
    rc, out, err = run_cli(["--help"])
    assert rc == 0 and all(n in out for n in cli.COMMANDS)


# ------------------------------------------------------------------------- the reference
def test_spec_reference_is_current():
    from orchestrator import spec_reference

    assert (REPO / "docs" / "SPEC-REFERENCE.md").read_text() == spec_reference.render("md"), (
        "docs/SPEC-REFERENCE.md is stale: equibench spec --fields --format md > docs/SPEC-REFERENCE.md")


@pytest.mark.parametrize("kind", ["solvers", "operators", "groups", "metrics", "datasets"])
def test_list(kind):
    rc, out, err = run_cli(["list", kind])
    assert rc == 0 and out.strip() and not err


# ------------------------------------------------------------------ resume, identity (Ray)
@pytest.mark.ray
@pytest.mark.timeout(900)
def test_diverged_rows_are_results_and_retry_replaces_them(tmp_path):
    """A rerun of a finished sweep with diverged rows computes and writes nothing; --retry-diverged
    recomputes them, replacing (never doubling); another grid under the name is refused."""
    ray = pytest.importorskip("ray")
    from orchestrator import driver

    d = {**BASE, "name": "div", "solvers": [{"name": "fake", "num_steps": [2], "options": {"nan_above": 0.15}}]}
    spec = spec_mod.parse_sweep(d)
    st = tmp_path / "store"
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        first = driver.run_sweep(spec, st, quiet=True, num_actors=1)
        assert first.rows_diverged == 3 and first.rows_ok == 6
        before = digest(st)
        again = driver.run_sweep(spec, st, quiet=True, num_actors=1)
        assert again.computed_nothing and digest(st) == before  # nothing computed, nothing written
        retried = driver.run_sweep(spec, st, quiet=True, num_actors=1, retry_diverged=True)
        assert retried.units >= 1 and retried.rows_diverged == 3
        raw = store.load(st, run="div", dedupe=False)
        assert len(raw) == 9 and not raw.duplicated(["config_id", "sample_id"]).any()
        other = spec_mod.parse_sweep({**d, "dataset": {"count": 4}})
        with pytest.raises(run_identity.RunIdentityError, match="--extend"):
            driver.run_sweep(other, st, quiet=True, num_actors=1)
        rec = store.read_run(st, "div")
        assert rec["grid_hash"] and rec["grid_hashes"] == [rec["grid_hash"]]
    finally:
        if started:
            ray.shutdown()
