"""Lambda calibration from influence ratios: hand-computed log-log interpolation."""
from __future__ import annotations

import math

import pandas as pd
import pytest

from orchestrator import calibrate


def test_range_interpolates_log_linearly_between_grid_points():
    """ratio = 1e-3 * lam: ratio 1e-2 at lam 10 and ratio 1 at lam 1000, exactly (a line in log-log)."""
    lams = [1, 100, 10_000]
    r = calibrate.lambda_range(lams, [1e-3 * v for v in lams])
    assert r["lo"] == pytest.approx(10.0, rel=1e-9) and r["hi"] == pytest.approx(1000.0, rel=1e-9)
    assert not r["lo_open"] and not r["hi_open"]


def test_open_ends_are_flagged():
    r = calibrate.lambda_range([0.1, 1.0], [0.05, 0.5])  # never inert enough, never reaches 1
    assert r["lo"] == 0.1 and r["lo_open"] and r["hi"] == 1.0 and r["hi_open"]


def test_labels_and_calibrate_from_rows():
    assert calibrate.influence_label(1e-4) == "inert" and calibrate.influence_label(20) == "dominant"
    assert calibrate.influence_label(0.1) == "ok" and calibrate.influence_label(float("nan")) == "-"
    rows = [{"solver": "dps", "regularizer": "equi", "task": t, "lam": lam, "status": "ok",
             "influence_grad": k * lam * (1 + 0.1 * i)} for t, k in (("a", 1e-2), ("b", 1e-1))
            for lam in (0.01, 1.0, 100.0) for i in range(3)]
    cal = calibrate.calibrate(pd.DataFrame(rows))
    a, b = cal[("dps", "equi", "a")], cal[("dps", "equi", "b")]
    # medians: 1.1 * k * lam -> level 1e-2 at lam = 1e-2 / (1.1 k)
    assert a["lo"] == pytest.approx(1e-2 / (1.1 * 1e-2), rel=1e-6) and b["hi"] == pytest.approx(1 / 0.11, rel=1e-6)
    both = calibrate.solver_ranges(cal)[("dps", "equi")]
    assert both["common_to_all_tasks"] and both["lo"] == pytest.approx(a["lo"]) and both["hi"] == pytest.approx(b["hi"])
    assert math.isclose(both["lo"], 1 / 1.1)
