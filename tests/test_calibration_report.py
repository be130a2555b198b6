"""``equibench report --layout calibration``: the posterior rows of a store as a table with 95%
intervals over measurements, SW beside its floor, paired EquiReg deltas and the stated verdict."""
from __future__ import annotations

import csv
import datetime as dt
import io

import numpy as np
import pandas as pd
import pytest

from orchestrator import posterior_sets, stats, store
from orchestrator.reporting.calibration import calibration_tables, calibrated
from orchestrator.reporting.formats import FORMATS, render, render_markdown

M = 6  # measurements


def rows(seed=0):
    """Posterior rows of dps (none / equi), a classical point estimate, two steps, M measurements."""
    rng = np.random.default_rng(seed)
    out = []
    for step in (1.0, 3.0):
        for reg, shift in (("none", 0.0), ("equi", -0.02)):
            for m in range(M):
                floor = 0.07 + 0.01 * rng.random()
                out.append({"config_id": f"c{reg}{step:g}", "measurement": m, "cluster": f"tune:measurement:{m}",
                            "dataset": "mog8/tune", "solver": "dps", "regularizer": reg, "lam": 0.0 if reg == "none" else 0.1,
                            "step_size": step, "task": "random_inpainting", "sigma_y": 0.3, "num_steps": 50, "seed": 0,
                            "estimator": "samples", "n_rows": 128, "n_samples": 128, "sw": 0.1 * step + shift + 0.01 * m,
                            "sw_floor": floor, "mean_err": 0.3 + 0.01 * m, "std_ratio": 0.9, "mode_tv": 0.05,
                            "cov50": 0.45, "cov90": 0.85 if step == 1.0 else 0.6, "mmse_gap": 1.1, "status": "ok"})
    for m in range(M):
        out.append({"config_id": "ctv", "measurement": m, "cluster": f"tune:measurement:{m}", "dataset": "mog8/tune",
                    "solver": "tv_pd", "regularizer": "none", "lam": 0.0, "step_size": 0.01, "task": "random_inpainting",
                    "sigma_y": 0.3, "num_steps": 1, "seed": 0, "estimator": "point", "n_rows": 128, "n_samples": 128,
                    "mean_err": 1.0 + 0.02 * m, "mmse_gap": 3.0, "status": "ok"})
    return out


def test_layout_has_intervals_over_measurements_floor_deltas_and_verdict():
    df = pd.DataFrame(rows())
    (table,) = calibration_tables(df)
    labels = [c.label for c in table.columns]
    assert labels[:3] == ["Task", "Method", "step"] and labels.index("SW") + 1 == labels.index("SW floor")
    by = {(r.cells[1].text, r.cells[2].text): r for r in table.rows}
    assert set(by) == {("DPS", "1"), ("DPS", "3"), ("Equi-DPS", "1"), ("Equi-DPS", "3"), ("TV PD", "0.01")}
    j_sw, j_cov, j_n = labels.index("SW"), labels.index("cov. 90%"), labels.index("n")
    base = df[(df["regularizer"] == "none") & (df["step_size"] == 1.0) & (df["solver"] == "dps")]
    iv = stats.mean_interval(base["sw"].to_numpy(), base["cluster"].tolist())
    cell = by[("DPS", "1")].cells[j_sw]
    assert np.isclose(cell.value, base["sw"].mean()) and (cell.lo, cell.hi) == (iv.lo, iv.hi) and cell.lo < cell.value < cell.hi
    assert by[("DPS", "1")].cells[j_n].text == str(M)
    eq = by[("Equi-DPS", "1")].cells[j_sw]  # constant paired shift: delta -0.02 with a zero-width interval
    assert np.isclose(eq.delta, -0.02) and np.isclose(eq.d_lo, -0.02) and np.isclose(eq.d_hi, -0.02) and eq.significant
    assert by[("DPS", "1")].cells[j_sw].delta is None
    j_cal = labels.index("cal.")
    ratio1 = float((base["sw"] / base["sw_floor"]).mean())
    assert by[("DPS", "1")].cells[j_cal].text == ("yes" if ratio1 <= 2 else "no") == "yes"
    assert by[("DPS", "3")].cells[j_cal].text == "no"  # cov90 60%: 30 points off
    tv = by[("TV PD", "0.01")]
    assert tv.cells[j_sw].value is None and tv.cells[j_cal].text == "-" and tv.cells[labels.index("mean err.")].value is not None
    for fmt in FORMATS:  # every format renders the same table
        assert "SW floor" in render([table], fmt)
    md = render_markdown([table])
    assert "±" in md and "[-0.020 (-0.020, -0.020)]†" in md and "85.0%" in md
    assert calibrated(1.9, 0.81) and not calibrated(2.1, 0.9) and not calibrated(1.0, 0.79) and calibrated(None, 0.9) is None


def test_a_setting_whose_every_measurement_failed_is_shown_failed_with_its_error():
    bad = [{**r, "config_id": "cfail", "step_size": 9.0, "status": "failed", "n_samples": 0, "sw": None, "sw_floor": None,
            "error": "ValueError: every stored reconstruction of measurement 0 is non-finite"} for r in rows()[:M]]
    (table,) = calibration_tables(pd.DataFrame(rows() + bad))
    labels = [c.label for c in table.columns]
    row = next(r for r in table.rows if r.cells[2].text == "9")
    assert row.cells[labels.index("cal.")].text == "failed" and row.cells[labels.index("n")].text == "0"
    assert any("every measurement failed" in n and "non-finite" in n for n in table.notes)


def test_cli_writes_the_calibration_report_from_a_store(tmp_path, capsys):
    from orchestrator.cli import main

    store_dir = tmp_path / "store"
    now = dt.datetime.now(dt.timezone.utc)
    store.write_unit(store_dir, "cal", "u0", [{"config_id": "cnone1", "sample_id": 0, "status": "ok", "task": "random_inpainting",
                                               "solver": "dps", "regularizer": "none", "dataset": "mog8/tune", "sigma_y": 0.3,
                                               "num_steps": 50, "step_size": 1.0, "lam": 0.0, "started_at": now}])
    for r in rows():
        posterior_sets.write_row(store_dir, "cal", {**r, "computed_at": now})
    assert main(["report", "--store", str(store_dir), "--layout", "calibration", "--format", "md", "csv",
                 "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "calibration.md").read_text()
    assert "dataset mog8/tune, sigma_y = 0.3" in md and "SW floor" in md and "n = measurements" in md
    got = list(csv.DictReader(io.StringIO((tmp_path / "out" / "calibration.csv").read_text())))
    dps = [g for g in got if g["Method"] == "DPS" and g["step_size"] == "1"][0]
    assert float(dps["SW lo"]) < float(dps["SW"]) < float(dps["SW hi"])
    # a store without posterior rows has no calibration table: said, not an empty file
    bare = tmp_path / "bare"
    store.write_unit(bare, "cal", "u0", [{"config_id": "c", "sample_id": 0, "status": "ok", "task": "random_inpainting",
                                          "solver": "dps", "regularizer": "none", "dataset": "mog8/tune", "sigma_y": 0.3,
                                          "num_steps": 50, "step_size": 1.0, "lam": 0.0, "psnr": 20.0, "started_at": now}])
    assert main(["report", "--store", str(bare), "--layout", "calibration", "tasks-by-method", "--out", str(tmp_path / "o2")]) == 0
    assert not (tmp_path / "o2" / "calibration.md").exists() and "calibration: no rows" in capsys.readouterr().err


def test_posterior_part_is_verified_on_read(tmp_path):
    """A file in posterior/ that is not the schema's is skipped with a warning, the rest read."""
    now = dt.datetime.now(dt.timezone.utc)
    for r in rows()[:2]:
        posterior_sets.write_row(tmp_path, "cal", {**r, "computed_at": now})
    bad = posterior_sets.posterior_dir(tmp_path, "cal") / "config-x-m0.parquet"
    bad.write_bytes(b"PAR1 not parquet PAR1")
    with pytest.warns(store.StoreWarning, match="not a complete Parquet file"):
        got = posterior_sets.load(tmp_path, run="cal")
    assert len(got) == 2
    with pytest.raises(ValueError, match="columns not in the store schema"):
        posterior_sets.write_row(tmp_path, "cal", {**rows()[0], "psnr": 1.0})
