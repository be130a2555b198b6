"""The bad-input cases that are not spec files, by class (see README.md).

A case is ``Case(id, argv, expect, rc=2, setup=None, patch=None, where="err")``. ``argv`` may use
``{store}``, ``{tmp}``, ``{good}`` (a spec matching the stored run), ``{other_grid}`` (same name,
another grid), ``{big}`` / ``{huge}`` (grids of 1.2e5 / 1.02e6 configs), ``{gpu}``, ``{cpus64}``
and ``{work}`` (the stored run with one unit missing). ``setup(store, tmp)`` damages the store
first; ``patch(monkeypatch)`` simulates what a test cannot make real (a read-only file system
for root, a cluster without GPUs). ``expect``: text the message must contain (stderr, or
stdout for ``where="out"``); ``rc`` the exit code.
"""
from __future__ import annotations

import errno
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq



@dataclass
class Case:
    id: str
    argv: list
    expect: str
    rc: int = 2
    setup: Optional[Callable] = None
    patch: Optional[Callable] = None
    where: str = "err"


def _unit_dir(store) -> Path:
    return Path(store) / "results" / "run=smoke"


def foreign_schema(store, tmp):
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), _unit_dir(store) / "unit-foreign.parquet")


def wrong_type(store, tmp):
    pq.write_table(pa.table({"config_id": ["c"], "sample_id": [0], "status": ["ok"], "psnr": ["high"]}),
                   _unit_dir(store) / "unit-wrongtype.parquet")


def truncated(store, tmp):
    src = sorted(_unit_dir(store).glob("unit-*.parquet"))[0]
    data = src.read_bytes()
    (_unit_dir(store) / "unit-trunc.parquet").write_bytes(data[: len(data) // 2])


def copied_from_other(store, tmp):
    src = sorted((Path(store) / "results" / "run=other").glob("unit-*.parquet"))[0]
    shutil.copy(src, _unit_dir(store) / "unit-copied.parquet")


def other_grid_file(store, tmp):
    from orchestrator import store as st

    st.write_unit(store, "smoke", "stranger", [dict(config_id="zz", sample_id=0, status="ok", psnr=1.0)],
                  grid_hash="deadbeefdeadbeef")


def drop_one_unit(store, tmp):
    sorted(_unit_dir(store).glob("unit-*.parquet"))[-1].unlink()


def store_is_file(store, tmp):
    (Path(tmp) / "afile").write_text("not a store")


def not_a_store(store, tmp):
    (Path(tmp) / "notstore").mkdir()
    (Path(tmp) / "notstore" / "holiday.jpg").write_text("x")


def broken_link(store, tmp):
    (Path(tmp) / "dangling").symlink_to(Path(tmp) / "nowhere")


def corrupt_record(store, tmp):
    (Path(store) / "runs" / "other.json").write_text("{not json")


def existing_out(store, tmp):
    (Path(tmp) / "exists.csv").write_text("old")


def some_images(store, tmp):
    """Saved reconstructions of samples 0-2 for the stored run (the golden store has none)."""
    import numpy as np

    from orchestrator import store as st

    rows = st.load(store, run="smoke", columns=["config_id", "sample_id"])
    cid = sorted(rows["config_id"])[0]
    img = np.zeros((3, 4, 4), dtype=np.float32)
    st.save_images(store, "smoke", "u0", {"x_hat": {f"{cid}:{s}": img for s in (0, 1, 2)}, "x_true": {s: img for s in (0, 1, 2)}})


def read_only(monkeypatch):
    """Root ignores permission bits: simulate a read-only file system for the store's writers."""
    import orchestrator.store_files as sf

    def refuse(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(sf.tempfile, "mkstemp", refuse)


def cpu_cluster(monkeypatch):
    """A 2-CPU cluster without GPUs, and no Ray start (the guard must refuse before any actor)."""
    import ray

    from orchestrator import driver

    monkeypatch.setattr(driver, "ensure_ray", lambda address=None: False)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "memory": 8e9})
    monkeypatch.setattr(ray, "shutdown", lambda: None)


RUN = ["run", "{good}", "--store", "{store}"]
SOLVE = ["solve", "--solver", "dps", "--task", "box_inpainting", "--out", "{tmp}/solve-out"]
SQL_READONLY = "read-only and confined to the store"

CASES: dict[str, list[Case]] = {
    "flags": [
        Case("actors_zero", RUN + ["--actors", "0"], "--actors 0: allowed: an integer >= 1"),
        Case("actors_negative", RUN + ["--actors", "-3"], "--actors -3: allowed: an integer >= 1"),
        Case("plan_actors_zero", ["plan", "{good}", "--actors", "0"], "--actors 0"),
        Case("solve_sigma_negative", SOLVE + ["--sigma-y", "-0.1"], "--sigma-y -0.1: allowed: a number >= 0"),
        Case("solve_sigma_nan", SOLVE + ["--sigma-y", "nan"], "--sigma-y nan: allowed"),
        Case("solve_n_zero", SOLVE + ["--n", "0"], "--n 0: allowed: an integer >= 1"),
        Case("solve_steps_zero", SOLVE + ["--steps", "0"], "--steps 0: allowed"),
        Case("solve_lam_negative", SOLVE + ["--lam", "-1"], "--lam -1.0: allowed: a number >= 0"),
        Case("solve_step_size_zero", SOLVE + ["--step-size", "0"], "--step-size 0.0: allowed: a number > 0"),
        Case("solve_threads_zero", SOLVE + ["--threads", "0"], "--threads 0: allowed"),
        Case("solve_out_is_file", ["solve", "--solver", "dps", "--task", "box_inpainting", "--out", "{tmp}/afile"],
             "is a file; give a folder", setup=store_is_file),
        Case("report_out_is_file", ["report", "--store", "{store}", "--out", "{tmp}/afile"], "is a file; give a folder",
             setup=store_is_file),
        Case("report_resamples_zero", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--resamples", "0"],
             "--resamples 0: allowed"),
        Case("report_sample_ids_negative", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--sample-ids", "-1"],
             "--sample-ids -1: allowed: integers >= 0"),
        Case("query_max_rows_zero", ["query", "--store", "{store}", "select 1", "--max-rows", "0"], "--max-rows 0"),
        Case("address_unreachable", ["run", "{work}", "--store", "{store}", "--address", "127.0.0.1:9"],
             "cannot reach a Ray cluster there", setup=drop_one_unit),
        Case("address_malformed", ["run", "{work}", "--store", "{store}", "--address", "my-cluster"],
             "expected auto, HOST:PORT", setup=drop_one_unit),
        Case("list_unknown_kind", ["list", "widgets"], "invalid choice: 'widgets'"),
        Case("unknown_command", ["frobnicate"], "invalid choice: 'frobnicate'"),
        Case("run_no_store", ["run", "{good}"], "no store: pass --store DIR"),
        Case("export_no_out", ["export", "--store", "{store}", "select 1"], "the following arguments are required: --out"),
    ],
    "store": [
        Case("status_missing", ["status", "--store", "{tmp}/typo"], "does not exist"),
        Case("query_missing", ["query", "--store", "{tmp}/typo", "select 1"], "does not exist"),
        Case("report_missing", ["report", "--store", "{tmp}/typo", "--out", "{tmp}/rep"], "does not exist"),
        Case("export_missing", ["export", "--store", "{tmp}/typo", "select 1", "--out", "{tmp}/x.csv"], "does not exist"),
        Case("status_store_is_file", ["status", "--store", "{tmp}/afile"], "is a file, not a directory", setup=store_is_file),
        Case("query_store_is_file", ["query", "--store", "{tmp}/afile", "select 1"], "is a file", setup=store_is_file),
        Case("run_store_is_file", ["run", "{good}", "--store", "{tmp}/afile"], "is a file",
             setup=store_is_file),
        Case("status_not_a_store", ["status", "--store", "{tmp}/notstore"], "is not an EquiBench store", setup=not_a_store),
        Case("run_broken_link", ["run", "{good}", "--store", "{tmp}/dangling"], "broken link",
             setup=broken_link),
        Case("status_names_foreign_schema", ["status", "--store", "{store}"], "unit-foreign.parquet: foreign schema", rc=0,
             setup=foreign_schema, where="out"),
        Case("query_skips_foreign_schema", ["query", "--store", "{store}", "select count(*) n from results_all"],
             "unit-foreign.parquet: foreign schema", rc=0, setup=foreign_schema),
        Case("status_names_wrong_type", ["status", "--store", "{store}"], "column 'psnr' is string", rc=0,
             setup=wrong_type, where="out"),
        Case("status_names_truncated", ["status", "--store", "{store}"], "not a complete Parquet file", rc=0,
             setup=truncated, where="out"),
        Case("query_skips_truncated", ["query", "--store", "{store}", "select count(*) n from results"],
             "unit-trunc.parquet: not a complete Parquet file", rc=0, setup=truncated),
        Case("status_corrupt_record", ["status", "--store", "{store}"], "unreadable run record", rc=0, setup=corrupt_record,
             where="out"),
        Case("resume_nothing_to_do", RUN, "nothing to compute", rc=0, where="out"),
        Case("resume_nothing_to_do_read_only", RUN, "nothing to compute", rc=0, patch=read_only, where="out"),
        Case("run_read_only_store", ["run", "{work}", "--store", "{store}"], "is not writable (read-only)",
             setup=drop_one_unit, patch=read_only),
        Case("export_into_store", ["export", "--store", "{store}", "select 1", "--out", "{store}/x.csv"],
             "is inside the store"),
        Case("export_out_is_dir", ["export", "--store", "{store}", "select 1", "--out", "{tmp}"], "unknown extract format"),
        Case("export_out_dir_named_csv", ["export", "--store", "{store}", "select 1", "--out", "{store}/results"],
             "unknown extract format"),
        Case("export_bad_suffix", ["export", "--store", "{store}", "select 1", "--out", "{tmp}/x.xlsx"],
             "unknown extract format '.xlsx'; allowed: .csv, .parquet"),
        Case("export_exists", ["export", "--store", "{store}", "select 1", "--out", "{tmp}/exists.csv"],
             "exists; pass --overwrite", setup=existing_out),
        Case("export_missing_folder", ["export", "--store", "{store}", "select 1", "--out", "{tmp}/no/such/x.csv"],
             "does not exist"),
    ],
    "sql": [
        Case(f"sql_{name}", ["query", "--store", "{store}", sql], expect)
        for name, sql, expect in [
            ("copy_over_unit", "copy (select * from results where false) to '{store}/results/run=smoke/unit-x.parquet'",
             SQL_READONLY),
            ("copy_over_record", "copy (select 1) to '{store}/runs/smoke.json'", SQL_READONLY),
            ("copy_outside", "copy (select 1) to '{tmp}/out.csv'", SQL_READONLY),
            ("copy_view_to", "copy results to '{tmp}/out.parquet' (format parquet)", SQL_READONLY),
            ("copy_from", "create table t (a int); copy t from '/etc/hostname'", SQL_READONLY),
            ("attach", "attach '{tmp}/x.duckdb' as x", SQL_READONLY),
            ("read_csv_passwd", "select * from read_csv('/etc/passwd')", SQL_READONLY),
            ("read_parquet_outside", "select * from read_parquet('{store}/../outside.parquet')", SQL_READONLY),
            ("replacement_scan_path", "select * from '/etc/passwd'", "Table with name /etc/passwd does not exist"),
            ("read_text", "select * from read_text('/etc/hostname')", SQL_READONLY),
            ("glob", "select * from glob('/*')", SQL_READONLY),
            ("install", "install httpfs", SQL_READONLY),
            ("load", "load httpfs", SQL_READONLY),
            ("set_external_access", "set enable_external_access = true", "the configuration has been locked"),
            ("export_database", "export database '{tmp}/dump'", SQL_READONLY),
            ("syntax_error", "selec * from results", "syntax error at or near \"selec\""),
            ("unknown_column_hint", "select psnrr from results", "Candidate bindings: \"psnr\""),
            ("unknown_table", "select * from resultz", "Table with name resultz does not exist"),
            ("empty", "", "empty query"),
            ("blank", "   ;  ", "empty query"),
            ("comment_only", "-- nothing here", "empty query"),
        ]
    ] + [
        Case("export_blocks_copy", ["export", "--store", "{store}", "copy (select 1) to '{tmp}/y.csv'", "--out", "{tmp}/x.csv"],
             SQL_READONLY),
        Case("export_csv_works", ["export", "--store", "{store}", "select * from results", "--out", "{tmp}/x.csv"],
             "wrote 10 rows", rc=0, where="out"),
        Case("export_parquet_works", ["export", "--store", "{store}", "select solver, psnr from results", "--out",
                                      "{tmp}/x.parquet"], "wrote 10 rows x 2 columns", rc=0, where="out"),
        Case("query_works", ["query", "--store", "{store}", "select count(*) as n from results where run_id = 'smoke'"], " 9", rc=0, where="out"),
    ],
    "identity": [
        Case("same_name_other_grid", ["run", "{other_grid}", "--store", "{store}"],
             "holds another grid", ),
        Case("same_name_other_grid_hint", ["run", "{other_grid}", "--store", "{store}"],
             "give the spec a new name: (e.g. name: smoke-2) for a new run, or rerun with --extend"),
        Case("extend_dry_run_plans", ["run", "{other_grid}", "--store", "{store}", "--extend",
                                      "--dry-run"], "to compute: 3 rows", rc=0, where="out"),
        Case("status_names_copied_unit", ["status", "--store", "{store}"], "belong to run 'other', not 'smoke'", rc=0,
             setup=copied_from_other, where="out"),
        Case("query_ignores_copied_unit", ["query", "--store", "{store}", "select count(*) n from results_all where run_id='smoke'"],
             "belong to run 'other'", rc=0, setup=copied_from_other),
        Case("status_names_other_grid_file", ["status", "--store", "{store}"], "written for another grid", rc=0,
             setup=other_grid_file, where="out"),
    ],
    "guards": [
        Case("grid_too_big", ["run", "{big}", "--store", "{store}"], "above the 100,000-config limit"),
        Case("plan_huge_grid", ["plan", "{huge}"], "by arithmetic, not expanded", rc=0, where="out"),
        Case("dry_run_plans", RUN + ["--dry-run"], "already stored: 9 rows; to compute: 0 rows", rc=0, where="out"),
        Case("dry_run_estimate", ["run", "{work}", "--store", "{store}", "--dry-run"],
             "from stored per-row timings", rc=0, setup=drop_one_unit, where="out"),
        Case("gpu_on_cpu_cluster", ["run", "{gpu}", "--store", "{store}"],
             "resources.num_gpus: 1 per actor but the cluster has CPU 2, GPU 0", setup=drop_one_unit, patch=cpu_cluster),
        Case("cpus_64", ["run", "{cpus64}", "--store", "{store}"],
             "resources.num_cpus: 64 per actor but the cluster has CPU 2", setup=drop_one_unit, patch=cpu_cluster),
        Case("too_many_actors", ["run", "{work}", "--store", "{store}", "--actors", "10"],
             "allowed: at most 8 actors", setup=drop_one_unit, patch=cpu_cluster),
    ],
    "resume": [
        Case("diverged_is_a_result", RUN + ["--dry-run"], "to compute: 0 rows", rc=0, where="out"),
        Case("retry_diverged_plans_them", RUN + ["--dry-run", "--retry-diverged"], "to compute: 1 rows", rc=0, where="out"),
        Case("status_counts_diverged_done", ["status", "--store", "{store}"], "9/9 (100%)", rc=0, where="out"),
    ],
    "overrides": [  # KEY=VALUE after the spec, or --set KEY=VALUE (orchestrator/overrides.py)
        Case("override_unknown_key", RUN + ["nosuchkey=1"],
             "override 'nosuchkey=1': unknown key 'nosuchkey' in the spec; allowed: batch_size, "),
        Case("override_unknown_nested_key", RUN + ["dataset.cout=4"],
             "unknown key 'cout' in dataset; allowed: count, ids, name, samples_per_measurement, split"),
        Case("override_index_out_of_range", RUN + ["solvers.3.num_steps=2"],
             "index 3 out of range: solvers has 1 entry (indices 0..0)"),
        Case("override_no_equals", RUN + ["solvers.0.num_steps"], "override 'solvers.0.num_steps': no '='"),
        Case("override_through_scalar", RUN + ["batch_size.size=2"],
             "batch_size is 4 (an int), not a mapping or a list"),
        Case("override_list_by_name", RUN + ["--set", "solvers.num_steps=2"],
             "solvers is a list of 1: index it by number (e.g. solvers.0)"),
        Case("override_bad_yaml", ["plan", "{good}", "tasks=[{{operator: fake_mask"],
             "is not valid YAML"),
        Case("override_twice", RUN + ["seeds=[0]", "--set", "seeds=[1]"], "seeds is set twice (also by 'seeds=[0]')"),
        Case("override_invalid_value", RUN + ["batch_size=0"], "+ overrides: batch_size: Input should be greater"),
        Case("override_spec_after_override", ["plan", "seeds=[1]", "{good}"],
             "the spec comes first"),
        Case("override_changes_grid_same_name", RUN + ["dataset.count=4"],
             "with the overrides dataset.count=4 gives 3 configs x 4 samples"),
        Case("override_changes_grid_hint", RUN + ["dataset.count=4"], "add the override name=smoke-2 for a new run"),
        Case("override_plan_warns_identity", ["plan", "{good}", "dataset.count=4", "--store", "{store}"],
             "`equibench run` would refuse it", rc=0, where="out"),
        Case("override_tune_section_key", ["tune", "{good}", "tune.nope=1", "--out", "{tmp}/t"],
             "unknown key 'nope' in tune; allowed:"),
    ],
    "report": [
        Case("report_sample_ids_not_stored", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--figures",
                                              "qualitative", "--sample-ids", "999"],
             "--sample-ids 999: no saved images for sample id 999; stored: 0-2", setup=some_images),
        Case("report_sample_ids_some_missing", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--figures",
                                                "--sample-ids", "1", "7", "8"],
             "no saved images for sample ids 7-8; stored: 0-2", setup=some_images),
        Case("report_sample_ids_no_images", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--figures",
                                             "qualitative", "--sample-ids", "0"], "the store holds no saved images"),
        Case("report_sample_ids_without_figure", ["report", "--store", "{store}", "--out", "{tmp}/rep", "--sample-ids", "0"],
             "add --figures qualitative"),
    ],
}


def spec_variants(base: dict) -> dict[str, dict]:
    """The specs the cases name, from the stored run's spec ``base``."""
    import copy

    def v(**changes):
        d = copy.deepcopy(base)
        for k, val in changes.items():
            if k == "resources":
                d["resources"] = {**d["resources"], **val}
            elif k == "dataset":
                d["dataset"] = {**d["dataset"], **val}
            else:
                d[k] = val
        return d

    return {
        "good": base, "work": base, "other_grid": v(dataset={"count": 4}),
        "big": v(seeds=list(range(40_000))), "huge": v(seeds=list(range(340_000))),
        "gpu": v(resources={"num_gpus": 1}), "cpus64": v(resources={"num_cpus": 64}),
    }


def as_json(d: dict) -> str:  # JSON is YAML: big grids write and parse fast
    return json.dumps(d)
