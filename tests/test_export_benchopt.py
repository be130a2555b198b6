"""``equibench export --format benchopt``: benchopt's result columns, the store's values, a round trip
through Parquet and CSV, and the command's checks."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from orchestrator import export_benchopt, store
from orchestrator.cli import main as cli_main
from tests.support.report_stores import build_rich_store, build_store

#: what benchopt writes for every run (benchopt/_generate_runs.py, runner.py; see the module docstring)
BENCHOPT_COLUMNS = ("objective_name", "obj_description", "solver_name", "solver_description", "data_name", "idx_rep",
                    "sampling_strategy", "stop_val", "time", "run_date", "benchmark-git-tag")
PARAMETERS = ("p_solver_regularizer", "p_solver_lam", "p_solver_step_size", "p_solver_num_steps", "p_solver_prior",
              "p_solver_solver_noise", "p_obj_task", "p_obj_sigma_y", "p_obj_operator", "p_dataset_split")
OBJECTIVES = ("objective_psnr", "objective_ssim", "objective_lpips", "objective_rel_l2", "objective_naive_psnr",
              "objective_influence_grad", "objective_fid", "objective_kid_mean")
PROVENANCE = ("run_id", "config_id", "sample_id", "code_version", "unit_id", "cluster", "started_at")


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory):
    return build_rich_store(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def old_dir(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("old"), with_images=False)


def _export(store_dir, out, *extra) -> pd.DataFrame:
    assert cli_main(["export", "--store", str(store_dir), "--format", "benchopt", "--out", str(out), *extra]) == 0
    return pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)


def test_columns_and_values_are_the_stores(rich_dir, tmp_path):
    frame = _export(rich_dir, tmp_path / "b.parquet")
    rows = store.load(rich_dir)
    assert set(BENCHOPT_COLUMNS + PARAMETERS + OBJECTIVES + PROVENANCE) <= set(frame.columns)
    assert len(frame) == len(rows) == 32
    merged = frame.merge(rows, on=["config_id", "sample_id"], suffixes=("", "_store"), validate="one_to_one")
    pd.testing.assert_series_equal(merged["objective_psnr"], merged["psnr"], check_names=False)
    pd.testing.assert_series_equal(merged["objective_ssim"], merged["ssim"], check_names=False)
    pd.testing.assert_series_equal(merged["time"], merged["wall_s"], check_names=False)
    assert (merged["idx_rep"] == merged["seed"]).all() and (merged["stop_val"] == merged["num_steps"]).all()
    assert (merged["p_solver_lam"] == merged["lam"]).all() and (merged["p_obj_sigma_y"] == merged["sigma_y"]).all()
    assert (merged["p_solver_regularizer"] == merged["regularizer"]).all() and (merged["p_obj_task"] == merged["task"]).all()
    equi = frame[frame["config_id"] == "dps-equi-b-report"].iloc[0]
    # benchopt's parametrized name: name[k=v,...], keys sorted (parametrized_name_mixin.__repr__)
    assert equi["solver_name"] == "dps[lam=1.0,num_steps=20,prior=pixel:embedded,regularizer=equi,solver_noise=shared,step_size=1.0]"
    assert equi["solver_description"] == "Equi-DPS" and equi["obj_description"] == "Box inpainting"
    assert equi["objective_name"] == "EquiBench[operator=box_inpainting,sigma_y=0.05,task=box_inpainting]"
    assert equi["data_name"] == "embedded[split=report]" and equi["p_dataset_split"] == "report"
    assert equi["sampling_strategy"] == "Run_once" and equi["objective_influence_grad"] == 0.2
    assert set(frame["p_dataset_split"]) == {"tune", "report"}


def test_only_ok_rows_and_set_metrics_per_config(old_dir, tmp_path, capsys):
    frame = _export(old_dir, tmp_path / "b.parquet")
    rows = store.load(old_dir)
    assert len(frame) == int((rows["status"] == "ok").sum()) == len(rows) - 2
    assert "2 rows not ok left out" in capsys.readouterr().out
    fid = frame.groupby("config_id")["objective_fid"].agg(["min", "max"])
    assert fid.loc["box-dps-none"].tolist() == [50.0, 50.0] and fid.loc["blur-dps-equi-b"].tolist() == [35.0, 35.0]
    assert frame.loc[frame["config_id"] == "noisy-dps-none", "objective_fid"].isna().all()
    pde = frame[frame["config_id"] == "pde-h-inv-equi"]
    assert pde["objective_rel_l2"].round(6).tolist() == [0.1581, 0.1591, 0.1601] and pde["data_name"].iloc[0] == "pde"
    assert pde["solver_name"].iloc[0] == "fundps[lam=100.0,num_steps=500,prior=toy-pixel,regularizer=equi]"  # missing values: no parameter


def test_round_trip_parquet_and_csv(rich_dir, tmp_path):
    expected = export_benchopt.benchopt_frame(store.load(rich_dir), store.load_sets(rich_dir))
    parquet = _export(rich_dir, tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(parquet, expected, check_dtype=False)
    csv = _export(rich_dir, tmp_path / "b.csv")
    assert list(csv.columns) == list(expected.columns)
    for col in ("solver_name", "objective_name", "data_name", "config_id"):
        assert csv[col].tolist() == expected[col].tolist()
    for col in ("objective_psnr", "time", "p_solver_lam", "idx_rep", "sample_id"):
        assert csv[col].astype(float).tolist() == expected[col].astype(float).tolist()
    only = _export(rich_dir, tmp_path / "r.parquet", "--run", "r")
    assert len(only) == len(expected)


def test_solver_options_and_operator_params_become_parameters():
    doc = {"solver_noise": "shared", "operator": "super_resolution", "op_params": {"factor": 2, "kernel": [1, 2]},
           "solver_options": {"eta": 0.5, "table": {"a": 1}}, "reduction": "norm", "freq": 1, "cutoff_frac": 0.1, "schedule": None}
    rec = {"run_id": "r", "config_id": "c", "sample_id": 3, "seed": 7, "status": "ok", "solver": "dps", "regularizer": "equi",
           "lam": 0.1, "step_size": 12.0, "num_steps": 20, "task": "super_resolution", "sigma_y": 0.05, "dataset": "embedded/report",
           "prior": "pixel:embedded", "mpe": "encoder", "group": "hflip", "lam_schedule": None, "psnr": 25.0, "wall_s": 0.4,
           "code_version": "abc1234", "config_json": json.dumps(doc)}
    frame = export_benchopt.benchopt_frame(pd.DataFrame([rec]))
    row = frame.iloc[0]
    assert (row["p_solver_eta"], row["p_solver_mpe"], row["p_solver_group"], row["p_solver_reduction"]) == (0.5, "encoder", "hflip", "norm")
    assert "p_solver_table" not in frame and "p_solver_lam_schedule" not in frame
    assert (row["p_obj_factor"], row["p_obj_kernel"], row["p_obj_operator"]) == (2, "[1,2]", "super_resolution")
    assert (row["idx_rep"], row["sample_id"], row["benchmark-git-tag"], row["objective_psnr"]) == (7, 3, "abc1234", 25.0)
    assert row["solver_name"].startswith("dps[cutoff_frac=0.1,eta=0.5,freq=1,group=hflip,lam=0.1,mpe=encoder,num_steps=20,")


def test_command_checks(rich_dir, tmp_path, capsys):
    base = ["export", "--store", str(rich_dir), "--out"]
    assert cli_main(base + [str(tmp_path / "x.parquet"), "--format", "benchopt", "select 1"]) == 2
    assert "not a query" in capsys.readouterr().err
    assert cli_main(base + [str(rich_dir / "in.parquet"), "--format", "benchopt"]) == 2
    assert "inside the store" in capsys.readouterr().err
    assert cli_main(base + [str(tmp_path / "x.json"), "--format", "benchopt"]) == 2
    assert cli_main(base + [str(tmp_path / "y.parquet")]) == 2
    assert "give the SQL" in capsys.readouterr().err
    assert cli_main(base + [str(tmp_path / "z.csv"), "select count(*) as n from results"]) == 0  # the query export is unchanged
    assert pd.read_csv(tmp_path / "z.csv")["n"].tolist() == [32]
