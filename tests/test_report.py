"""Tables from a small store with known values: exact text, bold, deltas, mean (std), missing
metrics, selection, determinism, and every layout x format."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from orchestrator import report, store
from orchestrator.cli import main as cli_main

OFFSETS = {"psnr": (-1.0, 0.0, 1.0), "ssim": (-0.01, 0.0, 0.01), "lpips": (0.01, 0.0, -0.01), "rel_l2": (-0.001, 0.0, 0.001)}
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)

#: config_id -> (solver, regularizer, lam, task, sigma_y, means {metric: value}, fid, bad {sample: status})
CONFIGS = {
    "box-dps-none": ("dps", "none", None, "box_inpainting", 0.05, {"psnr": 20.0, "ssim": 0.70, "lpips": 0.30}, 50.0, {}),
    "box-dps-equi-a": ("dps", "equi", 0.1, "box_inpainting", 0.05, {"psnr": 21.0, "ssim": 0.72, "lpips": 0.28}, 45.0, {}),
    "box-dps-equi-b": ("dps", "equi", 1.0, "box_inpainting", 0.05, {"psnr": 22.0, "ssim": 0.71, "lpips": 0.29}, 47.0, {}),
    "box-dps-equicon": ("dps", "equicon", 0.1, "box_inpainting", 0.05, {"psnr": 19.5, "ssim": 0.69, "lpips": 0.31}, None, {3: "diverged"}),
    "box-psld-none": ("psld", "none", None, "box_inpainting", 0.05, {"psnr": 18.0, "ssim": 0.60, "lpips": None}, 60.0, {}),
    "box-psld-equi": ("psld", "equi", 0.1, "box_inpainting", 0.05, {"psnr": 18.5, "ssim": 0.65, "lpips": None}, 55.0, {3: "failed"}),
    "blur-dps-none": ("dps", "none", None, "gaussian_blur", 0.05, {"psnr": 24.0, "ssim": 0.80, "lpips": 0.20}, 30.0, {}),
    "blur-dps-equi-a": ("dps", "equi", 0.1, "gaussian_blur", 0.05, {"psnr": 24.5, "ssim": 0.82, "lpips": 0.19}, 28.0, {}),
    "blur-dps-equi-b": ("dps", "equi", 1.0, "gaussian_blur", 0.05, {"psnr": 23.0, "ssim": 0.78, "lpips": 0.25}, 35.0, {}),
    "noisy-dps-none": ("dps", "none", None, "box_inpainting", 0.1, {"psnr": 17.0, "ssim": 0.60, "lpips": 0.40}, None, {}),
    "noisy-dps-equi": ("dps", "equi", 1.0, "box_inpainting", 0.1, {"psnr": 18.0, "ssim": 0.62, "lpips": 0.38}, None, {}),
    "pde-h-fwd-none": ("fundps", "none", None, "pde_helmholtz_forward", 0.0, {"rel_l2": 0.0213}, None, {}),
    "pde-h-fwd-equi": ("fundps", "equi", 100.0, "pde_helmholtz_forward", 0.0, {"rel_l2": 0.0212}, None, {}),
    "pde-h-inv-none": ("fundps", "none", None, "pde_helmholtz_inverse", 0.0, {"rel_l2": 0.1716}, None, {}),
    "pde-h-inv-equi": ("fundps", "equi", 100.0, "pde_helmholtz_inverse", 0.0, {"rel_l2": 0.1591}, None, {}),
    "pde-ns-fwd-none": ("fundps", "none", None, "pde_navier_stokes_forward", 0.0, {"rel_l2": 0.0332}, None, {}),
    "pde-ns-fwd-equi": ("fundps", "equi", 100.0, "pde_navier_stokes_forward", 0.0, {"rel_l2": 0.0306}, None, {}),
}
NAIVE = {"box_inpainting": (15.0, 16.0, 17.0), "gaussian_blur": (25.0, 25.0, 25.0)}


def _rows(config_id: str, run_id: str = "r1") -> list[dict]:
    solver, reg, lam, task, sigma_y, means, _, bad = CONFIGS[config_id]
    pde = task.startswith("pde_")
    rows = []
    for sample in range(3 + (1 if bad else 0)):
        row = {
            "run_id": run_id, "run_kind": "sweep", "config_id": config_id, "unit_id": config_id,
            "prior": "toy-latent" if solver == "psld" else "toy-pixel", "dataset": "pde" if pde else "toy",
            "solver": solver, "regularizer": reg, "lam": lam, "task": task, "sigma_y": sigma_y,
            "num_steps": 500 if pde else 10, "seed": 0, "sample_id": sample, "wall_s": 0.5,
            "started_at": T0 + dt.timedelta(seconds=sample), "status": bad.get(sample, "ok"),
        }
        if sample < 3:
            for metric, mean in means.items():
                row[metric] = None if mean is None else mean + OFFSETS[metric][sample]
            if task in NAIVE:
                row["naive_psnr"] = NAIVE[task][sample]
        else:
            row["error"] = "boom"
        rows.append(row)
    return rows


def build_store(root, with_images: bool = True, configs=None):
    """Write the CONFIGS store (or only ``configs``) under ``root``: one unit per config, set rows
    where FID is known, and 3x8x8 images for the box-inpainting configs; returns ``root``."""
    rng = np.random.default_rng(0)
    truth = {s: rng.uniform(-1, 1, (3, 8, 8)) for s in range(3)}
    for config_id in configs or CONFIGS:
        spec = CONFIGS[config_id]
        store.write_unit(root, "r1", config_id, _rows(config_id))
        if spec[6] is not None:
            store.write_sets(root, "r1", config_id, [{"config_id": config_id, "solver": spec[0], "regularizer": spec[1], "task": spec[3], "n_images": 3, "fid": spec[6], "status": "ok"}])
        if with_images and spec[3] == "box_inpainting":
            keys = [f"{config_id}:{s}" for s in range(3)]
            store.save_images(root, "r1", config_id, {
                "x_hat": {k: np.clip(truth[s] + rng.normal(0, 0.1, (3, 8, 8)), -1, 1) for k, s in zip(keys, range(3))},
                "naive": {k: truth[s] * 0.5 for k, s in zip(keys, range(3))},
                "x_true": {s: truth[s] for s in range(3)},
            })
    return root


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def data(store_dir):
    return report.load_store(store_dir)


# ------------------------------------------------------------------------------ exact tables
TASKS_BY_METHOD_MD = """\
### dataset toy, sigma_y = 0.05

| Task            | Method        | λ   |              LPIPS |               FID |              PSNR |               SSIM | n |
|-----------------|---------------|-----|-------------------:|------------------:|------------------:|-------------------:|---|
| Gaussian deblur | DPS           | -   |              0.200 |             30.00 |             24.00 |              0.800 | 3 |
|                 | Equi-DPS      | 0.1 | **0.190** [-0.010] | **28.00** [-2.00] |     24.50 [+0.50] | **0.820** [+0.020] | 3 |
|                 | Naive inverse | -   |                  - |                 - |         **25.00** |                  - | 3 |
| Box inpainting  | PSLD          | -   |                  - |             60.00 |             18.00 |              0.600 | 3 |
|                 | Equi-PSLD     | 0.1 |                  - |     55.00 [-5.00] |     18.50 [+0.50] |     0.650 [+0.050] | 3 |
|                 | DPS           | -   |              0.300 |             50.00 |             20.00 |              0.700 | 3 |
|                 | Equi-DPS      | 1   | **0.290** [-0.010] | **47.00** [-3.00] | **22.00** [+2.00] | **0.710** [+0.010] | 3 |
|                 | EquiCon-DPS   | 0.1 |     0.310 [+0.010] |                 - |     19.50 [-0.50] |     0.690 [-0.010] | 3 |
|                 | Naive inverse | -   |                  - |                 - |             16.00 |                  - | 3 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per task and column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Task           | Method        | λ |              LPIPS | FID |              PSNR |               SSIM | n |
|----------------|---------------|---|-------------------:|----:|------------------:|-------------------:|---|
| Box inpainting | DPS           | - |              0.400 |   - |             17.00 |              0.600 | 3 |
|                | Equi-DPS      | 1 | **0.380** [-0.020] |   - | **18.00** [+1.00] | **0.620** [+0.020] | 3 |
|                | Naive inverse | - |                  - |   - |             16.00 |                  - | 3 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per task and column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
"""

MEAN_STD_MD = """\
### dataset toy, sigma_y = 0.05

| Task           | Method        | λ   |               FID |                     PSNR |                       SSIM | n |
|----------------|---------------|-----|------------------:|-------------------------:|---------------------------:|---|
| Box inpainting | PSLD          | -   |             60.00 |             18.00 (1.00) |              0.600 (0.010) | 3 |
|                | Equi-PSLD     | 0.1 |     55.00 [-5.00] |     18.50 (1.00) [+0.50] |     0.650 (0.010) [+0.050] | 3 |
|                | DPS           | -   |             50.00 |             20.00 (1.00) |              0.700 (0.010) | 3 |
|                | Equi-DPS      | 1   | **47.00** [-3.00] | **22.00** (1.00) [+2.00] | **0.710** (0.010) [+0.010] | 3 |
|                | EquiCon-DPS   | 0.1 |                 - |     19.50 (1.00) [-0.50] |     0.690 (0.010) [-0.010] | 3 |
|                | Naive inverse | -   |                 - |             16.00 (1.00) |                          - | 3 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per task and column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Task           | Method        | λ | FID |                     PSNR |                       SSIM | n |
|----------------|---------------|---|----:|-------------------------:|---------------------------:|---|
| Box inpainting | DPS           | - |   - |             17.00 (1.00) |              0.600 (0.010) | 3 |
|                | Equi-DPS      | 1 |   - | **18.00** (1.00) [+1.00] | **0.620** (0.010) [+0.020] | 3 |
|                | Naive inverse | - |   - |             16.00 (1.00) |                          - | 3 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per task and column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
"""

METHODS_BY_TASKS_MD = """\
### dataset toy, sigma_y = 0.05

| Method        | Gaussian deblur FID | Gaussian deblur PSNR | Box inpainting FID | Box inpainting PSNR |
|---------------|--------------------:|---------------------:|-------------------:|--------------------:|
| *Latent*      |                     |                      |                    |                     |
| PSLD          |                   - |                    - |              60.00 |               18.00 |
| Equi-PSLD     |                   - |                    - |      55.00 [-5.00] |       18.50 [+0.50] |
| *Pixel-based* |                     |                      |                    |                     |
| DPS           |               30.00 |                24.00 |              50.00 |               20.00 |
| Equi-DPS      |   **28.00** [-2.00] |        24.50 [+0.50] |  **47.00** [-3.00] |   **22.00** [+2.00] |
| EquiCon-DPS   |                   - |                    - |                  - |       19.50 [-0.50] |
| *Reference*   |                     |                      |                    |                     |
| Naive inverse |                   - |            **25.00** |                  - |               16.00 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- Chosen for Equi-DPS: Box inpainting: lam=1 (of 2); Gaussian deblur: lam=0.1 (of 2).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Method        | Box inpainting FID | Box inpainting PSNR |
|---------------|-------------------:|--------------------:|
| *Pixel-based* |                    |                     |
| DPS           |                  - |               17.00 |
| Equi-DPS      |                  - |   **18.00** [+1.00] |
| *Reference*   |                    |                     |
| Naive inverse |                  - |               16.00 |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per column.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
"""

PDE_MD = """\
### sigma_y = 0

| Method      | Steps | Helmholtz Forward |  Helmholtz Inverse | Navier-Stokes Forward |
|-------------|-------|------------------:|-------------------:|----------------------:|
| FunDPS      | 500   |             2.13% |             17.16% |                 3.32% |
| Equi-FunDPS | 500   | **2.12%** [-0.01] | **15.91%** [-1.25] |     **3.06%** [-0.26] |

- Mean over images (all seeds) with status ok; FID/KID from the set table; '-' = missing.
- [+x] = difference to the same solver without EquiReg (same task, sigma_y, steps); bold = best per column.
- Selection: per task and method, the config with the lowest mean Rel. L2 over its hyperparameters (ties: smallest lam, then step size).
"""

PDE_LATEX = r"""\begin{table}[t]
\centering
\caption{sigma\_y = 0}
\begin{tabular}{llrrr}
\toprule
 &  & \multicolumn{2}{c}{Helmholtz} & \multicolumn{1}{c}{Navier-Stokes} \\
\cmidrule(lr){3-4} \cmidrule(lr){5-5}
Method & Steps & Forward & Inverse & Forward \\
\midrule
FunDPS & 500 & 2.13\% & 17.16\% & 3.32\% \\
Equi-FunDPS & 500 & \textbf{2.12\%} {\scriptsize[-0.01]} & \textbf{15.91\%} {\scriptsize[-1.25]} & \textbf{3.06\%} {\scriptsize[-0.26]} \\
\bottomrule
\end{tabular}
"""

PDE_CSV = """\
section,group,Method,Steps,Helmholtz Forward,Helmholtz Forward delta,Helmholtz Inverse,Helmholtz Inverse delta,Navier-Stokes Forward,Navier-Stokes Forward delta
sigma_y = 0,,FunDPS,500,0.0213,,0.1716,,0.0332,
sigma_y = 0,,Equi-FunDPS,500,0.0212,-0.0001,0.1591,-0.0125,0.0306,-0.0026
"""


def test_tasks_by_method_markdown_exact(data):
    """Table 1: best lambda per method by PSNR (Equi-DPS: 1 on box, 0.1 on blur), bold per task
    (the naive inverse wins blur PSNR), deltas against DPS/PSLD, '-' for missing LPIPS/FID, the
    diverged and failed images counted in the notes and left out of n."""
    assert report.make_report(*data, "tasks-by-method", "md") == TASKS_BY_METHOD_MD


def test_mean_std_markdown_exact(data):
    """Table 7: mean (std, ddof=1) per cell; FID (a set metric) has no std."""
    opts = report.ReportOptions(tasks=("box_inpainting",), metrics=("fid", "psnr", "ssim"))
    assert report.make_report(*data, "mean-std", "md", opts) == MEAN_STD_MD


def test_methods_by_tasks_markdown_exact(data):
    """Tables 2-3: latent then pixel rows, a column group per task, '-' where a method did not run
    a task, the chosen lambdas in the notes."""
    opts = report.ReportOptions(metrics=("fid", "psnr"))
    assert report.make_report(*data, "methods-by-tasks", "md", opts) == METHODS_BY_TASKS_MD


def test_pde_markdown_latex_csv_exact(data):
    """Table 4: relative L2 in percent, lowest bold, deltas in percentage points; CSV keeps raw
    fractions."""
    assert report.make_report(*data, "pde", "md") == PDE_MD
    assert report.make_report(*data, "pde", "latex").startswith(PDE_LATEX)
    assert report.make_report(*data, "pde", "csv") == PDE_CSV


# ------------------------------------------------------------------------- pipeline pieces
def test_summarize_counts_and_stats(data):
    results, sets = data
    s = report.summarize(results, sets).set_index("config_id")
    row = s.loc["box-dps-equicon"]
    assert (row["n_ok"], row["n_diverged"], row["n_failed"]) == (3, 1, 0)
    assert row["mean:psnr"] == pytest.approx(19.5) and row["std:psnr"] == pytest.approx(1.0)
    assert np.isnan(row["mean:fid"])  # no set row
    assert s.loc["box-psld-equi", "n_failed"] == 1 and np.isnan(s.loc["box-psld-equi", "mean:lpips"])
    assert s.loc["box-dps-none", "mean:fid"] == 50.0


def test_select_best_and_all(data):
    summary = report.summarize(*data)
    best = report.select(summary, "best", "psnr")
    equi = best[(best["solver"] == "dps") & (best["regularizer"] == "equi") & (best["sigma_y"] == 0.05)].set_index("task")
    assert equi.loc["box_inpainting", "lam"] == 1.0 and equi.loc["gaussian_blur", "lam"] == 0.1
    by_lpips = report.select(summary, "best", "lpips")  # lower is better: lam 0.1 on box
    equi = by_lpips[(by_lpips["config_id"].str.startswith("box-dps-equi-"))]
    assert list(equi["lam"]) == [0.1]
    assert len(report.select(summary, "all")) == len(summary)
    with pytest.raises(ValueError, match="allowed"):
        report.select(summary, "median")


def test_rule_all_shows_every_lambda_and_baseline_only_drops_equi(data):
    text = report.make_report(*data, "methods-by-tasks", "md", report.ReportOptions(select="all", metrics=("psnr",)))
    assert "| Equi-DPS (lam=0.1) |" in text and "| Equi-DPS (lam=1)   |" in text
    text = report.make_report(*data, "tasks-by-method", "md", report.ReportOptions(baseline_only=("psld",)))
    assert "| PSLD " in text and "Equi-PSLD" not in text


def test_rows_stored_in_two_runs_count_once(tmp_path):
    for run in ("r1", "r2"):
        store.write_unit(tmp_path, run, "u", _rows("box-dps-none", run) + _rows("box-dps-equi-b", run))
    results, sets = report.load_store(tmp_path)
    assert len(results) == 12
    summary = report.summarize(results, sets)
    assert list(summary["n_ok"]) == [3, 3]


def test_deterministic_bytes_and_row_order(data, tmp_path):
    """Same store -> byte-identical md/latex, also from shuffled rows and a second store copy."""
    results, sets = data
    shuffled = results.sample(frac=1.0, random_state=1).reset_index(drop=True)
    other_results, other_sets = report.load_store(build_store(tmp_path, with_images=False))
    for layout in report.LAYOUTS:
        builds = [report.build_tables(r, s, layout) for r, s in ((results, sets), (results, sets), (shuffled, sets), (other_results, other_sets))]
        for fmt in ("md", "latex"):
            texts = [report.render(tables, fmt).encode() for tables in builds]
            assert texts[1:] == texts[:1] * 3


@pytest.mark.parametrize("layout", sorted(report.LAYOUTS))
@pytest.mark.parametrize("fmt", sorted(report.FORMATS))
def test_every_layout_and_format_renders(data, layout, fmt):
    text = report.make_report(*data, layout, fmt)
    assert text.endswith("\n") and len(text.splitlines()) >= 3
    if fmt == "csv":
        assert text.startswith("section,group,")
    if fmt == "html":
        assert text.startswith("<!DOCTYPE html>") and "<table>" in text


def test_unknown_names_fail_with_allowed_values(data):
    with pytest.raises(ValueError, match="allowed"):
        report.make_report(*data, "wide", "md")
    with pytest.raises(ValueError, match="allowed"):
        report.make_report(*data, "pde", "docx")
    with pytest.raises(ValueError, match="allowed"):
        report.make_report(*data, "pde", "md", report.ReportOptions(metrics=("psnr", "bleu")))


def test_print_comparison_has_seconds_and_deltas(data):
    text = report.print_comparison(data[0])
    header = next(line for line in text.splitlines() if line.startswith("| Task"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["Task", "Method", "λ", "PSNR", "SSIM", "LPIPS", "s/img", "n"]
    assert "| Equi-DPS      | 1   | **22.00** [+2.00] |" in text
    assert "0.50 [+0.00]" in text


# ------------------------------------------------------------------------------ the command
def test_cli_writes_every_layout_and_format(store_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["report", "--store", str(store_dir), "--layout", "all", "--format", "all", "--out", str(out)])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{layout}.{ext}" for layout in report.LAYOUTS for ext in ("md", "tex", "html", "csv"))
    assert all((out / f).stat().st_size > 0 for f in files)
    assert (out / "pde.md").read_text() == PDE_MD
    assert str(out / "tasks-by-method.md") in capsys.readouterr().out


def test_cli_errors_are_clear(store_dir, tmp_path, capsys):
    rc = cli_main(["report", "--store", str(store_dir), "--run", "nope", "--out", str(tmp_path)])
    assert rc == 2 and "runs in the store: ['r1']" in capsys.readouterr().err
    rc = cli_main(["report", "--store", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert rc == 2 and "no store" in capsys.readouterr().err


def test_cli_all_layouts_skips_empty_ones(tmp_path, capsys):
    small = build_store(tmp_path / "store", with_images=False, configs=["box-dps-none", "box-dps-equi-b"])
    rc = cli_main(["report", "--store", str(small), "--layout", "all", "--format", "md", "--out", str(tmp_path / "out")])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mean-std.md", "methods-by-tasks.md", "tasks-by-method.md"]
    assert "pde: no rows" in capsys.readouterr().err
    rc = cli_main(["report", "--store", str(small), "--layout", "pde", "--out", str(tmp_path / "out")])
    assert rc == 2 and "no rows" in capsys.readouterr().err


def test_seeds_pool_into_one_row_not_variants(tmp_path):
    """The seed is part of config_id: two seeds of one setting are one row of 6 images (never a
    'best seed' pick), and the per-image pairing keeps seeds apart."""
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for config_id in ("box-dps-none", "box-dps-equi-b"):
            rows = [{**r, "config_id": f"{config_id}-s{seed}", "seed": seed, "psnr": r["psnr"] + shift} for r in _rows(config_id)]
            store.write_unit(tmp_path, "r1", f"{config_id}-s{seed}", rows)
    results, sets = report.load_store(tmp_path)
    summary = report.summarize(results, sets)
    assert sorted(summary["config_id"]) == ["box-dps-equi-b-s0", "box-dps-none-s0"]
    assert list(summary["n_ok"]) == [6, 6] and list(summary["n_seeds"]) == [2, 2]
    assert summary.set_index("config_id").loc["box-dps-none-s0", "mean:psnr"] == pytest.approx(21.0)
    text = report.make_report(results, sets, "tasks-by-method", "md", report.ReportOptions(metrics=("psnr",)))
    assert "| Equi-DPS      | 1 | **23.00** [+2.00] | 6 |" in text and "Chosen" not in text
