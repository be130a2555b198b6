"""Compaction (``orchestrator.store_compact``): same answers, crash safety, resume, retry, readers."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import warnings
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from orchestrator import driver, grid, plan as plan_mod, run_identity, spec as spec_mod, store, store_compact
from orchestrator.store_manifest import COMPACTION_KEY, ROW_GROUP_ROWS, SORT_KEY
from tests.support import FAKES as FAKE


T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
GROUPED = "SELECT solver, task, avg(psnr) AS p, count(*) AS n FROM results GROUP BY ALL ORDER BY ALL"


class Crash(BaseException):
    """A kill at a chosen point (BaseException: nothing in the store code catches it)."""


def build(root, run="r1", units=12):
    """``units`` unit files of 4 rows over 2 solvers x 2 tasks, a diverged row each, plus a key
    stored twice (failed, then ok in another unit)."""
    for u in range(units):
        store.write_unit(root, run, f"u{u:02d}", [
            dict(config_id=f"c{u % 4}", sample_id=u * 10 + i, status="diverged" if i == 3 else "ok",
                 psnr=None if i == 3 else 20.0 + i + u, solver=("dps", "psld")[u % 2], task=("blur", "box")[u % 4 // 2],
                 started_at=T0 + dt.timedelta(seconds=u)) for i in range(4)])
    store.write_unit(root, run, "u00", [dict(config_id="c0", sample_id=0, status="failed", solver="dps", task="blur",
                                             started_at=T0 - dt.timedelta(seconds=1))] + [
        dict(config_id="c0", sample_id=i, status="diverged" if i == 3 else "ok", psnr=None if i == 3 else 20.0 + i,
             solver="dps", task="blur", started_at=T0) for i in range(1, 4)])
    store.write_unit(root, run, "retry", [dict(config_id="c0", sample_id=0, status="ok", psnr=30.0, solver="dps",
                                               task="blur", started_at=T0 + dt.timedelta(hours=1))])
    return root


def answers(root, run=None):
    con = store.connect(root, run=run)
    try:
        return (con.execute(GROUPED).fetchall(), con.execute("SELECT count(*) FROM results_all").fetchone()[0],
                sorted(store.completed_keys(root, run or "r1")))
    finally:
        con.close()


def folder(root, run="r1") -> Path:
    return store.results_dir(root, run)


def names(root, run="r1") -> list[str]:
    return sorted(p.name for p in folder(root, run).iterdir())


def test_grouped_query_and_rows_equal_after_compaction(tmp_path):
    build(tmp_path)
    build(tmp_path, run="r2", units=3)
    groups, _, done = answers(tmp_path, "r1")
    before = store.load(tmp_path).sort_values(["run_id", "config_id", "sample_id"]).reset_index(drop=True)
    all_before = answers(tmp_path)[0]
    got = store.compact_store(tmp_path)
    assert [(c.run_id, c.compacted, c.units) for c in got] == [("r1", True, 13), ("r2", True, 4)]
    assert names(tmp_path) == ["compact-000001.parquet"]  # units, manifest and temp files gone
    after = store.load(tmp_path).sort_values(["run_id", "config_id", "sample_id"]).reset_index(drop=True)
    assert before.equals(after)
    g2, n_all, done2 = answers(tmp_path, "r1")
    assert (g2, done2) == (groups, done) and answers(tmp_path)[0] == all_before
    assert n_all == len(after[after["run_id"] == "r1"])  # one row per key: the dedupe happened once, on write
    con = store.connect(tmp_path)
    view = con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'results'").fetchone()[0]
    assert "row_number" not in view  # a compacted store is read without the dedupe window
    assert con.execute("SELECT psnr FROM results WHERE config_id = 'c0' AND sample_id = 0").fetchone()[0] == 30.0


def test_compacted_file_sorted_recorded_and_idempotent(tmp_path):
    build(tmp_path)
    store.compact_run(tmp_path, "r1")
    path = folder(tmp_path) / "compact-000001.parquet"
    meta = pq.read_metadata(path)
    info = json.loads(meta.metadata[COMPACTION_KEY])
    assert info["units"] == 13 and info["unique_keys"] and info["row_group_rows"] == ROW_GROUP_ROWS
    assert json.loads(meta.metadata[b"equibench"])["run_id"] == "r1"
    df = pq.read_table(path).to_pandas()
    key = [c for c in SORT_KEY]
    assert df[key].astype(str).values.tolist() == df.sort_values(key)[key].astype(str).values.tolist()
    stamp = path.stat().st_mtime_ns
    again = store.compact_run(tmp_path, "r1")
    assert (again.compacted, again.reason) == (False, "already compact") and path.stat().st_mtime_ns == stamp
    store.write_unit(tmp_path, "r1", "late", [dict(config_id="c9", sample_id=0, status="ok", psnr=1.0, solver="dps")])
    assert store.compact_run(tmp_path, "r1").compacted  # rows added after a compaction: merged by the next one
    assert names(tmp_path) == ["compact-000002.parquet"] and len(store.load(tmp_path)) == len(df) + 1


def _unlink_crash(kind, real):
    calls = []

    def unlink_all(folder, paths):
        paths = list(paths)
        calls.append(paths)
        if kind == "mid_cleanup" and any(p.name.startswith("unit-") for p in paths):
            real(folder, paths[: len(paths) // 2])
            raise Crash(kind)
        if kind == "before_manifest_removal" and paths and all(p.name.startswith(".compact-") for p in paths):
            raise Crash(kind)
        return real(folder, paths)

    return unlink_all


@pytest.mark.parametrize("kind", ["manifest", "compact_write", "before_cleanup", "mid_cleanup", "before_manifest_removal"])
def test_crash_at_any_step_counts_every_row_once(tmp_path, monkeypatch, kind):
    build(tmp_path)
    groups, n_all, done = answers(tmp_path)
    keys_before = Counter(map(tuple, store.load(tmp_path, dedupe=False)[["config_id", "sample_id"]].values.tolist()))
    if kind == "manifest":
        monkeypatch.setattr(store_compact, "atomic_write", lambda *a, **k: (_ for _ in ()).throw(Crash(kind)))
    elif kind == "compact_write":
        def killed(path, *a, **k):  # killed mid-write: a partial hidden temp file is all that is left
            (path.parent / f".tmp-{path.name}.killed").write_bytes(b"PAR1 half")
            raise Crash(kind)
        monkeypatch.setattr(store_compact, "_write_parquet", killed)
    elif kind == "before_cleanup":
        real_cleanup, seen = store_compact.cleanup, []
        monkeypatch.setattr(store_compact, "cleanup", lambda f: seen.append(f) or (
            real_cleanup(f) if len(seen) == 1 else (_ for _ in ()).throw(Crash(kind))))
    else:
        monkeypatch.setattr(store_compact, "_unlink_all", _unlink_crash(kind, store_compact._unlink_all))
    with pytest.raises(Crash):
        store.compact_run(tmp_path, "r1")
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("error", store.StoreWarning)  # leftovers are not problems: nothing is warned
        g, n, d = answers(tmp_path)
        keys = Counter(map(tuple, store.load(tmp_path, dedupe=False)[["config_id", "sample_id"]].values.tolist()))
    assert (g, d) == (groups, done)
    assert n <= n_all and all(keys[k] <= keys_before[k] for k in keys), "a row counted twice"
    assert set(keys) == set(keys_before)
    assert store.problems(tmp_path) == []
    again = store.compact_run(tmp_path, "r1")  # finishes (or redoes) the compaction
    assert again.compacted or again.reason == "already compact"
    assert [n for n in names(tmp_path) if not n.startswith(".tmp-")] == [n for n in names(tmp_path) if n.startswith("compact-")]
    assert len([n for n in names(tmp_path) if n.startswith("compact-")]) == 1
    assert answers(tmp_path)[0::2] == (groups, done)


def test_unit_rewritten_after_an_interrupted_compaction_counts(tmp_path, monkeypatch):
    build(tmp_path)
    real_cleanup, seen = store_compact.cleanup, []
    monkeypatch.setattr(store_compact, "cleanup", lambda f: seen.append(f) or (
        real_cleanup(f) if len(seen) == 1 else (_ for _ in ()).throw(Crash())))
    with pytest.raises(Crash):
        store.compact_run(tmp_path, "r1")
    monkeypatch.undo()
    assert "unit-u05.parquet" in names(tmp_path)  # a leftover, superseded
    store.write_unit(tmp_path, "r1", "u05", [dict(config_id="c1", sample_id=50, status="ok", psnr=99.0, solver="psld",
                                                  task="box", started_at=T0 + dt.timedelta(days=1))])
    got = store.load(tmp_path, filters={"config_id": "c1", "sample_id": 50})
    assert got["psnr"].tolist() == [99.0]  # new bytes: counted, and newest wins over the compacted row
    store.compact_run(tmp_path, "r1")
    assert store.load(tmp_path, filters={"config_id": "c1", "sample_id": 50})["psnr"].tolist() == [99.0]
    assert len(store.load(tmp_path, dedupe=False)) == len(store.load(tmp_path))


def test_drop_rows_keeps_the_compaction_record(tmp_path):
    build(tmp_path)
    store.compact_run(tmp_path, "r1")
    (path, keys), = store.files_with_keys(tmp_path, "r1", "diverged").items()
    assert path.name == "compact-000001.parquet" and len(keys) == 12
    assert store.drop_rows(path, set(sorted(keys)[:2])) == 2
    assert json.loads(pq.read_metadata(path).metadata[COMPACTION_KEY])["unique_keys"]
    assert len(store.files_with_keys(tmp_path, "r1", "diverged")[path]) == 10
    assert "row_number" not in store.connect(tmp_path).execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'results'").fetchone()[0]


# ---------------------------------------------------------------------------- the driver
def fake_spec(name="fk", count=4, **solver_options):
    return spec_mod.parse({
        "name": name, "prior": "fake", "plugins": [FAKE], "dataset": {"count": count},
        "tasks": [{"operator": "fake_mask", "sigma_y": [0.05]}],
        "solvers": [{"name": "fake", "num_steps": [2], "options": solver_options}],
        "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1, 0.2]}],
        "batch_size": 2, "metrics": ["psnr"], "save_images": False, "resources": {"num_cpus": 0.5}})


def stored_as_driver(root, spec, diverged=lambda cfg: False):
    """The store a finished run of ``spec`` leaves (rows per unit, run record), without Ray."""
    configs, samples = grid.expand(spec), grid.sample_ids(spec)
    ghash = run_identity.grid_hash([c.config_id for c in configs], samples)
    store.register_run(root, spec.name, spec.canonical(), len(configs) * len(samples), n_configs=len(configs),
                       n_samples=len(samples), grid_hash=ghash, grid_hashes=[ghash])
    for unit in plan_mod.plan(configs, samples, spec.batch_size):
        store.write_unit(root, spec.name, unit.unit_id, unit_rows(spec, unit, diverged), grid_hash=ghash)
    return configs, samples, ghash


def unit_rows(spec, unit, diverged=lambda cfg: False, psnr=25.0):
    rows = []
    for r in unit.rows:
        cfg = unit.configs[r.config_id]
        bad = diverged(cfg)
        rows.append({**cfg.store_columns(), "run_id": spec.name, "run_kind": "sweep", "unit_id": unit.unit_id,
                     "sample_id": r.sample_id, "lam": r.lam, "step_size": r.step_size, "status": "diverged" if bad else "ok",
                     "psnr": None if bad else psnr, "started_at": dt.datetime.now(dt.timezone.utc)})
    return rows


def digest(root) -> dict:
    return {str(p.relative_to(root)): hashlib.blake2b(p.read_bytes()).hexdigest() for p in sorted(Path(root).rglob("*"))
            if p.is_file()}


def test_resume_of_a_compacted_run_computes_and_writes_nothing(tmp_path):
    spec = fake_spec()
    stored_as_driver(tmp_path, spec)
    store.compact_run(tmp_path, spec.name)
    before = digest(tmp_path)
    again = driver.run_sweep(spec, tmp_path, quiet=True)  # nothing to compute: Ray never starts
    assert again.computed_nothing and again.skipped_rows == 12 and digest(tmp_path) == before


def test_retry_diverged_replaces_rows_of_a_compacted_run(tmp_path):
    """The driver's --retry-diverged path (files_with_keys, plan, _Sweep.store_unit) on a compacted run."""
    spec = fake_spec()
    configs, samples, ghash = stored_as_driver(tmp_path, spec, diverged=lambda c: c.lam > 0.15)
    store.compact_run(tmp_path, spec.name)
    grid_keys = {(c.config_id, s) for c in configs for s in samples}
    retry = {f: k & grid_keys for f, k in store.files_with_keys(tmp_path, spec.name, "diverged").items()}
    assert [f.name for f in retry] == ["compact-000001.parquet"] and len(next(iter(retry.values()))) == 4
    done = store.completed_keys(tmp_path, spec.name, statuses=("ok",))
    units = plan_mod.plan(configs, samples, spec.batch_size, done)
    sweep = driver._Sweep(spec, tmp_path, None, {"grid_hash": ghash}, 3, retry)
    for unit in units:
        sweep.store_unit(unit, {"rows": unit_rows(spec, unit, psnr=31.0), "images": {}})
    raw = store.load(tmp_path, run=spec.name, dedupe=False)
    assert len(raw) == 12 and not raw.duplicated(["config_id", "sample_id"]).any() and set(raw["status"]) == {"ok"}
    assert sorted(raw[raw["psnr"] == 31.0]["lam"].tolist()) == [0.2] * 4
    store.compact_run(tmp_path, spec.name)
    assert names(tmp_path, spec.name) == ["compact-000002.parquet"] and len(store.load(tmp_path, dedupe=False)) == 12


def test_compact_after_sweep_only_when_finished(tmp_path, monkeypatch):
    spec = fake_spec()
    stored_as_driver(tmp_path, spec)
    monkeypatch.setattr(store_compact, "COMPACT_MIN_UNIT_FILES", 2)

    def result(**kw):
        base = dict(run_id=spec.name, total_rows=12, skipped_rows=0, units=6, units_done=6, rows_ok=12)
        return driver.SweepResult(**{**base, **kw})

    for res, enabled in ((result(stopped_early=True), None), (result(rows_ok=11, rows_failed=1), None),
                         (result(units=0, units_done=0, skipped_rows=12, rows_ok=0), None), (result(), False)):
        assert not hasattr(store.compact_after_sweep(spec, tmp_path, res, enabled), "compaction")
    off = spec.model_copy(update={"compact": False})
    assert not hasattr(store.compact_after_sweep(off, tmp_path, result()), "compaction")
    assert names(tmp_path, spec.name)[0].startswith("unit-")
    done = store.compact_after_sweep(spec, tmp_path, result())
    assert done.compaction.compacted and names(tmp_path, spec.name) == ["compact-000001.parquet"]


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_real_driver_retry_diverged_then_compacts_at_the_end(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    spec = fake_spec("div", nan_above=0.15)
    monkeypatch.setattr(store_compact, "COMPACT_MIN_UNIT_FILES", 2)
    started = driver.ensure_ray()
    try:
        first = driver.run_sweep(spec, tmp_path, quiet=True, num_actors=1)
        assert first.rows_diverged == 4 and first.compaction.compacted
        assert names(tmp_path, "div") == ["compact-000001.parquet"]
        assert driver.run_sweep(spec, tmp_path, quiet=True, num_actors=1).computed_nothing
        retried = driver.run_sweep(spec, tmp_path, quiet=True, num_actors=1, retry_diverged=True)
        assert retried.units >= 1 and retried.rows_diverged == 4 and retried.compaction.compacted
        assert names(tmp_path, "div") == ["compact-000002.parquet"]
        raw = store.load(tmp_path, run="div", dedupe=False)
        assert len(raw) == 12 and not raw.duplicated(["config_id", "sample_id"]).any()
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------- other readers
def test_status_query_report_export_and_images_read_a_compacted_store(tmp_path, capsys):
    from orchestrator import report
    from orchestrator.cli import main as cli_main
    from orchestrator.commands.run import run_sql, status_table
    from tests.support.report_stores import build_store

    root = build_store(tmp_path / "store")
    sql = "SELECT config_id, status, count(*) n, avg(psnr) p FROM results GROUP BY ALL ORDER BY ALL"

    def views():
        rep = report.make_report(*report.load_store(root), "tasks-by-method", "md")
        images = store.load_images(root, "r1", sorted(set(store.load(root)["unit_id"])))
        assert cli_main(["export", "--store", str(root), sql, "--out", str(tmp_path / "x.csv"), "--overwrite"]) == 0
        return status_table(root), run_sql(root, sql).to_pylist(), rep, (tmp_path / "x.csv").read_text(), \
            {g: sorted(v) for g, v in images.items()}

    before = views()
    assert cli_main(["compact", "--store", str(root)]) == 0
    assert "r1: 17 unit file(s)" in capsys.readouterr().out
    assert names(root) == ["compact-000001.parquet"]
    assert views() == before and before[4]["x_hat"]
    assert cli_main(["compact", "--store", str(root), "--run", "r1"]) == 0
    assert "r1: already compact" in capsys.readouterr().out
    assert cli_main(["compact", "--store", str(root), "--run", "nope"]) == 2
    assert "no such run" in capsys.readouterr().err
