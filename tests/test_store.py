"""The Parquet store: atomic unit files, fixed schema, verified reads, resume keys, images, duckdb."""
from __future__ import annotations

import datetime as dt
import os
import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest

from orchestrator import store
from orchestrator.schema import RESULTS_SCHEMA, SETS_SCHEMA


def _rows(config_id="c1", samples=(0, 1, 2), status="ok", **kw):
    return [dict(config_id=config_id, sample_id=s, status=status, psnr=20.0 + s, solver="dps", **kw) for s in samples]


def test_write_unit_fixed_schema_and_missing_columns_null(tmp_path):
    path = store.write_unit(tmp_path, "r1", "u1", _rows(lam=np.float32(0.5), num_steps=np.int64(3)))
    assert path == tmp_path / "results" / "run=r1" / "unit-u1.parquet"
    table = pq.read_table(path)
    assert table.schema.equals(RESULTS_SCHEMA)
    df = store.load(tmp_path)
    assert len(df) == 3 and set(df["run_id"]) == {"r1"} and set(df["unit_id"]) == {"u1"}
    assert df["ssim"].isna().all()  # a missing metric is a typed null
    assert df["lam"].tolist() == [0.5] * 3 and df["num_steps"].tolist() == [3] * 3


def test_nan_metric_stored_as_null_and_unknown_column_rejected(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", [dict(config_id="c", sample_id=0, status="diverged", psnr=float("nan"))])
    assert store.load(tmp_path)["psnr"].isna().all()
    with pytest.raises(ValueError, match="not in the store schema.*psnrr"):
        store.write_unit(tmp_path, "r1", "u2", [dict(config_id="c", sample_id=0, psnrr=1.0)])
    assert not (tmp_path / "results" / "run=r1" / "unit-u2.parquet").exists()


def test_rewrite_same_unit_is_idempotent(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", _rows())
    store.write_unit(tmp_path, "r1", "u1", _rows())
    assert len(store.load(tmp_path, dedupe=False)) == 3
    assert [f.name for f in (tmp_path / "results" / "run=r1").iterdir()] == ["unit-u1.parquet"]


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    store.write_unit(tmp_path, "r1", "u1", _rows())

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(store.pq, "write_table", boom)
    with pytest.raises(OSError):
        store.write_unit(tmp_path, "r1", "u2", _rows(config_id="c2"))
    monkeypatch.undo()
    names = sorted(os.listdir(tmp_path / "results" / "run=r1"))
    assert names == ["unit-u1.parquet"]  # no temp file left behind, the earlier unit intact
    assert len(store.load(tmp_path)) == 3


def test_corrupt_and_temp_files_skipped_with_warning(tmp_path):
    good = store.write_unit(tmp_path, "r1", "u1", _rows())
    folder = good.parent
    data = good.read_bytes()
    (folder / "unit-trunc.parquet").write_bytes(data[: len(data) // 2])  # a crash mid-write
    (folder / ".tmp-unit-x.parquet.123").write_bytes(data[:10])  # a writer's temp file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = store.load(tmp_path)
    assert len(df) == 3
    msgs = [str(w.message) for w in caught if issubclass(w.category, store.StoreWarning)]
    assert len(msgs) == 1 and "unit-trunc.parquet" in msgs[0]
    good_files, bad_files = store.scan(tmp_path)
    assert [f.name for f in bad_files] == ["unit-trunc.parquet"] and [f.name for f in good_files] == ["unit-u1.parquet"]
    con = store.connect(tmp_path)  # duckdb over the verified list: the corrupt file cannot break it
    assert con.execute("select count(*) from results").fetchone()[0] == 3


def test_completed_keys_only_ok_rows_of_the_run(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", _rows(samples=(0, 1)))
    store.write_unit(tmp_path, "r1", "u2", _rows(samples=(2,), status="failed", error="boom"))
    store.write_unit(tmp_path, "r1", "u3", _rows(samples=(3,), status="diverged"))
    store.write_unit(tmp_path, "r2", "u1", _rows(samples=(9,)))
    assert store.completed_keys(tmp_path, "r1") == {("c1", 0), ("c1", 1)}
    assert store.completed_keys(tmp_path, "r2") == {("c1", 9)}
    assert store.completed_keys(tmp_path, "nope") == set()


def test_dedupe_prefers_ok_then_newest(tmp_path):
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    store.write_unit(tmp_path, "r1", "old", _rows(samples=(0,), status="failed", started_at=t0 + dt.timedelta(hours=1)))
    store.write_unit(tmp_path, "r1", "new", _rows(samples=(0,), status="ok", started_at=t0))
    df = store.load(tmp_path)
    assert len(df) == 1 and df["status"].iloc[0] == "ok"
    assert len(store.load(tmp_path, dedupe=False)) == 2
    con = store.connect(tmp_path)
    assert con.execute("select status from results").fetchall() == [("ok",)]
    assert con.execute("select count(*) from results_all").fetchone()[0] == 2


def test_load_filters_and_columns(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", _rows(config_id="a"))
    store.write_unit(tmp_path, "r2", "u1", _rows(config_id="b"))
    assert set(store.load(tmp_path, run="r2")["config_id"]) == {"b"}
    df = store.load(tmp_path, filters={"config_id": ["a"], "sample_id": 1}, columns=["psnr"])
    assert list(df.columns) == ["psnr"] and df["psnr"].tolist() == [21.0]
    assert len(store.load(tmp_path, filters=[("psnr", ">", 20.5)])) == 4
    with pytest.raises(ValueError, match="unknown filter column 'nope'"):
        store.load(tmp_path, filters={"nope": 1})


def test_empty_store_reads_empty_typed(tmp_path):
    df = store.load(tmp_path)
    assert df.empty and list(df.columns) == RESULTS_SCHEMA.names
    assert store.load_sets(tmp_path).empty
    con = store.connect(tmp_path)
    assert con.execute("select count(*) from results where status = 'ok'").fetchone()[0] == 0


def test_sets_roundtrip(tmp_path):
    store.write_sets(tmp_path, "r1", "c1", [dict(n_images=4, fid=None, status="ok", solver="dps")])
    df = store.load_sets(tmp_path, run="r1")
    assert list(df.columns) == SETS_SCHEMA.names and df["n_images"].tolist() == [4] and df["fid"].isna().all()


def test_images_roundtrip(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    store.save_images(tmp_path, "r1", "u1", {"x_hat": {"c1:0": x}, "naive": {"c1:0": -x}, "x_true": {0: x * 0}})
    store.save_images(tmp_path, "r1", "u2", {"x_hat": {"c2:0": x}})
    imgs = store.load_images(tmp_path, "r1")
    assert set(imgs["x_hat"]) == {"c1:0", "c2:0"} and set(imgs["x_true"]) == {"0"}
    assert imgs["x_hat"]["c1:0"].dtype == np.float16
    np.testing.assert_allclose(imgs["naive"]["c1:0"], -x, atol=1e-2)
    assert set(store.load_images(tmp_path, "r1", "u2")["x_hat"]) == {"c2:0"}


def test_register_run_keeps_history(tmp_path):
    store.register_run(tmp_path, "r1", {"name": "r1"}, 8)
    store.register_run(tmp_path, "r1", {"name": "r1"}, 12)
    rec = store.read_run(tmp_path, "r1")
    assert rec["n_rows"] == 12 and rec["history"][0]["n_rows"] == 8
    assert store.list_runs(tmp_path) == ["r1"]


def test_bad_ids_rejected(tmp_path):
    with pytest.raises(ValueError, match="run_id '../x'"):
        store.write_unit(tmp_path, "../x", "u1", _rows())


# ------------------------------------------------------------------ issue 16: robustness
import pyarrow as pa  # noqa: E402


def test_foreign_schema_file_named_once_and_skipped(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", _rows())
    pq.write_table(pa.table({"a": [1]}), tmp_path / "results" / "run=r1" / "unit-foreign.parquet")
    pq.write_table(pa.table({"config_id": ["c"], "sample_id": [0], "status": ["ok"], "psnr": ["x"]}),
                   tmp_path / "results" / "run=r1" / "unit-typed.parquet")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(store.load(tmp_path)) == 3
        assert len(store.load(tmp_path)) == 3  # named once per process, not per read
        assert store.connect(tmp_path).execute("select count(*) from results_all").fetchone()[0] == 3
    msgs = [str(w.message) for w in caught if issubclass(w.category, store.StoreWarning)]
    assert len(msgs) == 2 and any("unit-foreign.parquet: foreign schema" in m for m in msgs)
    assert any("column 'psnr' is string" in m for m in msgs)


def test_files_of_another_run_or_grid_ignored(tmp_path):
    store.write_unit(tmp_path, "r1", "u1", _rows(), grid_hash="g1")
    store.register_run(tmp_path, "r1", {"name": "r1"}, 3, grid_hash="g1", grid_hashes=["g1"])
    other = store.write_unit(tmp_path, "r2", "u9", _rows(config_id="c9"))
    (tmp_path / "results" / "run=r1" / "unit-u9.parquet").write_bytes(other.read_bytes())  # copied across runs
    store.write_unit(tmp_path, "r1", "stale", _rows(config_id="c7"), grid_hash="g0")  # written for another grid
    with pytest.warns(store.StoreWarning):
        df = store.load(tmp_path, run="r1")
    assert set(df["config_id"]) == {"c1"}
    why = dict((p.name, w) for p, w in store.problems(tmp_path, run="r1"))
    assert "belong to run 'r2'" in why["unit-u9.parquet"] and "another grid" in why["unit-stale.parquet"]


def test_missing_store_is_an_error_not_empty(tmp_path):
    with pytest.raises(store.StoreError, match="does not exist"):
        store.load(tmp_path / "typo")
    (tmp_path / "f").write_text("x")
    with pytest.raises(store.StoreError, match="is a file"):
        store.connect(tmp_path / "f")
    assert store.completed_keys(tmp_path / "typo", "r1") == set()  # a store about to be created: nothing done


def test_diverged_keys_and_drop_rows(tmp_path):
    path = store.write_unit(tmp_path, "r1", "u1", _rows(samples=(0, 1)) + _rows(samples=(2,), status="diverged"),
                            grid_hash="g")
    assert store.completed_keys(tmp_path, "r1", statuses=("ok", "diverged")) == {("c1", 0), ("c1", 1), ("c1", 2)}
    assert store.files_with_keys(tmp_path, "r1", "diverged") == {path: {("c1", 2)}}
    assert store.drop_rows(path, {("c1", 2)}) == 1
    assert sorted(store.load(tmp_path)["sample_id"]) == [0, 1]
    assert store.drop_rows(path, {("c1", 0), ("c1", 1)}) == 2 and not path.exists()


@pytest.mark.parametrize("sql", [
    "copy (select 1) to '{s}/results/run=r1/unit-u1.parquet'", "copy (select 1) to '{s}/runs/r1.json'",
    "copy results to '{s}/../out.csv'", "attach '{s}/../x.db'", "select * from read_csv('/etc/passwd')",
    "select * from read_parquet('{s}/results/run=r1/unit-u1.parquet')", "install httpfs", "load httpfs",
    "set enable_external_access = true",
])
def test_query_cannot_write_or_read_outside(tmp_path, sql):
    import duckdb

    s = tmp_path / "s"
    store.write_unit(s, "r1", "u1", _rows())
    store.register_run(s, "r1", {"name": "r1"}, 3)
    before = {p: p.read_bytes() for p in s.rglob("*") if p.is_file()}
    con = store.connect(s)
    with pytest.raises(duckdb.Error):
        con.execute(sql.format(s=s))
    assert {p: p.read_bytes() for p in s.rglob("*") if p.is_file()} == before
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.db").exists()
    assert con.execute("select count(*) from results").fetchone()[0] == 3


def test_export_writes_outside_the_store(tmp_path):
    s = tmp_path / "s"
    store.write_unit(s, "r1", "u1", _rows())
    path, fmt = store.check_export_path(tmp_path / "x.parquet", s)
    table = store.connect(s).sql("select config_id, psnr from results").to_arrow_table()
    store.write_extract(table, path, fmt)
    assert pq.read_table(path).num_rows == 3
    with pytest.raises(ValueError, match="inside the store"):
        store.check_export_path(s / "x.csv", s)
