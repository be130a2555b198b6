"""Tables from small stores with known values: exact text, bold, intervals and paired deltas, mean
(sd; interval), missing metrics, selection (on the same images, or on another split), solver-noise
labels, lambda influence, classical baselines, determinism, every layout x format, and the tune
summary's warnings.

Two stores: ``build_store`` (an old-style store: no cluster, no config_json, so every image is its
own cluster and every row ran with per-config noise) and ``build_rich_store`` (clusters, shared
noise, influence, a classical baseline, a tune and a report split), whose intervals are worked out
by hand: 4 images in 2 clusters of 2, so a cluster resample is (c1, c1), (c1, c2), (c2, c1) or
(c2, c2) and the 95% percentile interval of a mean is exactly [mean of c1, mean of c2].)"""
from __future__ import annotations

import ast
import csv
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import solvers
from orchestrator import report, store
from orchestrator.reporting import entry
from orchestrator.reporting.evidence import noise_paired
from orchestrator.cli import main as cli_main
from tests.support.report_stores import build_rich_store, build_store, unit_rows

@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def data(store_dir):
    return report.load_store(store_dir)


# ------------------------------------------------------------------------------ exact tables
TASKS_BY_METHOD_MD = """\
### dataset toy, sigma_y = 0.05

**Best configurations selected on the same images this table reports: the selected rows are optimistic (select on another split: --select-on).**

| Task            | Method        | λ   |                                        LPIPS |               FID |                                     PSNR |                                         SSIM | n | cl. |
|-----------------|---------------|-----|---------------------------------------------:|------------------:|-----------------------------------------:|---------------------------------------------:|---|-----|
| Gaussian deblur | DPS‡          | -   |                                0.200 ± 0.010 |             30.00 |                             24.00 ± 1.00 |                                0.800 ± 0.010 | 3 | 3   |
|                 | Equi-DPS‡     | 0.1 | **0.190** ± 0.010 [-0.010 (-0.010, -0.010)]† | **28.00** [-2.00] |     24.50 ± 1.00 [+0.50 (+0.50, +0.50)]† | **0.820** ± 0.010 [+0.020 (+0.020, +0.020)]† | 3 | 3   |
|                 | Naive inverse | -   |                                            - |                 - |                         **25.00** ± 0.00 |                                            - | 3 | 3   |
| Box inpainting  | PSLD‡         | -   |                                            - |             60.00 |                             18.00 ± 1.00 |                                0.600 ± 0.010 | 3 | 3   |
|                 | Equi-PSLD‡    | 0.1 |                                            - |     55.00 [-5.00] |     18.50 ± 1.00 [+0.50 (+0.50, +0.50)]† |     0.650 ± 0.010 [+0.050 (+0.050, +0.050)]† | 3 | 3   |
|                 | DPS‡          | -   |                                0.300 ± 0.010 |             50.00 |                             20.00 ± 1.00 |                                0.700 ± 0.010 | 3 | 3   |
|                 | Equi-DPS‡     | 1   | **0.290** ± 0.010 [-0.010 (-0.010, -0.010)]† | **47.00** [-3.00] | **22.00** ± 1.00 [+2.00 (+2.00, +2.00)]† | **0.710** ± 0.010 [+0.010 (+0.010, +0.010)]† | 3 | 3   |
|                 | EquiCon-DPS‡  | 0.1 |     0.310 ± 0.010 [+0.010 (+0.010, +0.010)]† |                 - |     19.50 ± 1.00 [-0.50 (-0.50, -0.50)]† |     0.690 ± 0.010 [-0.010 (-0.010, -0.010)]† | 3 | 3   |
|                 | Naive inverse | -   |                                            - |                 - |                             16.00 ± 1.00 |                                            - | 3 | 3   |

- Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per task and column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Task           | Method        | λ |                                        LPIPS | FID |                                     PSNR |                                         SSIM | n | cl. |
|----------------|---------------|---|---------------------------------------------:|----:|-----------------------------------------:|---------------------------------------------:|---|-----|
| Box inpainting | DPS‡          | - |                                0.400 ± 0.010 |   - |                             17.00 ± 1.00 |                                0.600 ± 0.010 | 3 | 3   |
|                | Equi-DPS‡     | 1 | **0.380** ± 0.010 [-0.020 (-0.020, -0.020)]† |   - | **18.00** ± 1.00 [+1.00 (+1.00, +1.00)]† | **0.620** ± 0.010 [+0.020 (+0.020, +0.020)]† | 3 | 3   |
|                | Naive inverse | - |                                            - |   - |                             16.00 ± 1.00 |                                            - | 3 | 3   |

- Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per task and column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
"""

MEAN_STD_MD = """\
### dataset toy, sigma_y = 0.05

**Best configurations selected on the same images this table reports: the selected rows are optimistic (select on another split: --select-on).**

| Task           | Method        | λ   |               FID |                                                      PSNR |                                                          SSIM | n | cl. |
|----------------|---------------|-----|------------------:|----------------------------------------------------------:|--------------------------------------------------------------:|---|-----|
| Box inpainting | PSLD‡         | -   |             60.00 |                             18.00 (sd 1.00; 17.00, 19.00) |                                0.600 (sd 0.010; 0.590, 0.610) | 3 | 3   |
|                | Equi-PSLD‡    | 0.1 |     55.00 [-5.00] |     18.50 (sd 1.00; 17.50, 19.50) [+0.50 (+0.50, +0.50)]† |     0.650 (sd 0.010; 0.640, 0.660) [+0.050 (+0.050, +0.050)]† | 3 | 3   |
|                | DPS‡          | -   |             50.00 |                             20.00 (sd 1.00; 19.00, 21.00) |                                0.700 (sd 0.010; 0.690, 0.710) | 3 | 3   |
|                | Equi-DPS‡     | 1   | **47.00** [-3.00] | **22.00** (sd 1.00; 21.00, 23.00) [+2.00 (+2.00, +2.00)]† | **0.710** (sd 0.010; 0.700, 0.720) [+0.010 (+0.010, +0.010)]† | 3 | 3   |
|                | EquiCon-DPS‡  | 0.1 |                 - |     19.50 (sd 1.00; 18.50, 20.50) [-0.50 (-0.50, -0.50)]† |     0.690 (sd 0.010; 0.680, 0.700) [-0.010 (-0.010, -0.010)]† | 3 | 3   |
|                | Naive inverse | -   |                 - |                             16.00 (sd 1.00; 15.00, 17.00) |                                                             - | 3 | 3   |

- Mean over images (all seeds) with status ok (sd = standard deviation over images; 95% interval of the mean); FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per task and column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Task           | Method        | λ | FID |                                                      PSNR |                                                          SSIM | n | cl. |
|----------------|---------------|---|----:|----------------------------------------------------------:|--------------------------------------------------------------:|---|-----|
| Box inpainting | DPS‡          | - |   - |                             17.00 (sd 1.00; 16.00, 18.00) |                                0.600 (sd 0.010; 0.590, 0.610) | 3 | 3   |
|                | Equi-DPS‡     | 1 |   - | **18.00** (sd 1.00; 17.00, 19.00) [+1.00 (+1.00, +1.00)]† | **0.620** (sd 0.010; 0.610, 0.630) [+0.020 (+0.020, +0.020)]† | 3 | 3   |
|                | Naive inverse | - |   - |                             16.00 (sd 1.00; 15.00, 17.00) |                                                             - | 3 | 3   |

- Mean over images (all seeds) with status ok (sd = standard deviation over images; 95% interval of the mean); FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per task and column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
"""

METHODS_BY_TASKS_MD = """\
### dataset toy, sigma_y = 0.05

**Best configurations selected on the same images this table reports: the selected rows are optimistic (select on another split: --select-on).**

| Method        | Gaussian deblur FID |                 Gaussian deblur PSNR | Box inpainting FID |                      Box inpainting PSNR |
|---------------|--------------------:|-------------------------------------:|-------------------:|-----------------------------------------:|
| *Latent*      |                     |                                      |                    |                                          |
| PSLD‡         |                   - |                                    - |              60.00 |                             18.00 ± 1.00 |
| Equi-PSLD‡    |                   - |                                    - |      55.00 [-5.00] |     18.50 ± 1.00 [+0.50 (+0.50, +0.50)]† |
| *Pixel-based* |                     |                                      |                    |                                          |
| DPS‡          |               30.00 |                         24.00 ± 1.00 |              50.00 |                             20.00 ± 1.00 |
| Equi-DPS‡     |   **28.00** [-2.00] | 24.50 ± 1.00 [+0.50 (+0.50, +0.50)]† |  **47.00** [-3.00] | **22.00** ± 1.00 [+2.00 (+2.00, +2.00)]† |
| EquiCon-DPS‡  |                   - |                                    - |                  - |     19.50 ± 1.00 [-0.50 (-0.50, -0.50)]† |
| *Reference*   |                     |                                      |                    |                                          |
| Naive inverse |                   - |                     **25.00** ± 0.00 |                  - |                             16.00 ± 1.00 |

- Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
- Chosen for Equi-DPS: Box inpainting: lam=1 (of 2); Gaussian deblur: lam=0.1 (of 2).
- Not in the means, Equi-PSLD: Box inpainting: 1 failed.
- Not in the means, EquiCon-DPS: Box inpainting: 1 diverged.

### dataset toy, sigma_y = 0.1

| Method        | Box inpainting FID |                      Box inpainting PSNR |
|---------------|-------------------:|-----------------------------------------:|
| *Pixel-based* |                    |                                          |
| DPS‡          |                  - |                             17.00 ± 1.00 |
| Equi-DPS‡     |                  - | **18.00** ± 1.00 [+1.00 (+1.00, +1.00)]† |
| *Reference*   |                    |                                          |
| Naive inverse |                  - |                             16.00 ± 1.00 |

- Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the highest mean PSNR over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
"""

PDE_MD = """\
### sigma_y = 0

| Method       | Steps |                         Helmholtz Forward |                          Helmholtz Inverse |                     Navier-Stokes Forward |
|--------------|-------|------------------------------------------:|-------------------------------------------:|------------------------------------------:|
| FunDPS‡      | 500   |                             2.13% ± 0.10% |                             17.16% ± 0.10% |                             3.32% ± 0.10% |
| Equi-FunDPS‡ | 500   | **2.12%** ± 0.10% [-0.01 (-0.01, -0.01)]† | **15.91%** ± 0.10% [-1.25 (-1.25, -1.25)]† | **3.06%** ± 0.10% [-0.26 (-0.26, -0.26)]† |

- Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set table (no per-image values: no interval); '-' = missing.
- [Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the images both ran ok, with its 95% interval; † = the interval excludes 0; bold = best per column.
- Intervals: 95% percentile bootstrap resampling clusters of images (10000 resamples, seed 0); n = 3 images in 3 clusters per cell.
- No cluster recorded for these rows (older store): each image is its own cluster, so the intervals ignore images that share a source.
- Selection: per task and method, the config with the lowest mean Rel. L2 over its hyperparameters (ties: smallest lam, then step size).
- ‡ = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): its deltas are paired on images and measurements, not on sampler noise.
- infl.: not recorded for these rows (older runs).
"""

PDE_CSV = """\
section,selection,group,Method,Steps,Helmholtz Forward,Helmholtz Forward lo,Helmholtz Forward hi,Helmholtz Forward delta,Helmholtz Forward delta lo,Helmholtz Forward delta hi,Helmholtz Forward delta sig,Helmholtz Inverse,Helmholtz Inverse lo,Helmholtz Inverse hi,Helmholtz Inverse delta,Helmholtz Inverse delta lo,Helmholtz Inverse delta hi,Helmholtz Inverse delta sig,Navier-Stokes Forward,Navier-Stokes Forward lo,Navier-Stokes Forward hi,Navier-Stokes Forward delta,Navier-Stokes Forward delta lo,Navier-Stokes Forward delta hi,Navier-Stokes Forward delta sig
sigma_y = 0,,,FunDPS‡,500,0.0213,0.0203,0.0223,,,,,0.1716,0.1706,0.1726,,,,,0.0332,0.0322,0.0342,,,,
sigma_y = 0,,,Equi-FunDPS‡,500,0.0212,0.0202,0.0222,-0.0001,-0.0001,-0.0001,1,0.1591,0.1581,0.1601,-0.0125,-0.0125,-0.0125,1,0.0306,0.0296,0.0316,-0.0026,-0.0026,-0.0026,1
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
FunDPS$^\ddagger$ & 500 & 2.13\% $\pm$ 0.10\% & 17.16\% $\pm$ 0.10\% & 3.32\% $\pm$ 0.10\% \\
Equi-FunDPS$^\ddagger$ & 500 & \textbf{2.12\%} $\pm$ 0.10\% {\scriptsize[-0.01 (-0.01, -0.01)]}$^\dagger$ & \textbf{15.91\%} $\pm$ 0.10\% {\scriptsize[-1.25 (-1.25, -1.25)]}$^\dagger$ & \textbf{3.06\%} $\pm$ 0.10\% {\scriptsize[-0.26 (-0.26, -0.26)]}$^\dagger$ \\
\bottomrule
\end{tabular}
"""



def test_tasks_by_method_markdown_exact(data):
    """Table 1: best lambda per method by PSNR (Equi-DPS: 1 on box, 0.1 on blur), bold per task
    (the naive inverse wins blur PSNR); means ± half the interval ([m-1, m+1] for 3 values m-1, m,
    m+1: P(all three m-1) = 1/27 > 2.5%); paired deltas with zero-width intervals (the offsets are
    the same per image) marked †; FID deltas without interval; '-' for missing LPIPS/FID; the
    bold selection headline where a lambda was chosen; ‡ on every row (no config_json: the old
    per-config noise); diverged and failed images in the notes and out of n."""
    assert report.make_report(*data, "tasks-by-method", "md") == TASKS_BY_METHOD_MD


def test_mean_std_markdown_exact(data):
    """Table 7: mean (sd, ddof=1; interval) per cell; FID (a set metric) has neither."""
    opts = report.ReportOptions(tasks=("box_inpainting",), metrics=("fid", "psnr", "ssim"))
    assert report.make_report(*data, "mean-std", "md", opts) == MEAN_STD_MD


def test_methods_by_tasks_markdown_exact(data):
    """Tables 2-3: latent then pixel rows, a column group per task, '-' where a method did not run
    a task, the chosen lambdas in the notes."""
    opts = report.ReportOptions(metrics=("fid", "psnr"))
    assert report.make_report(*data, "methods-by-tasks", "md", opts) == METHODS_BY_TASKS_MD


def test_pde_markdown_latex_csv_exact(data):
    """Table 4: relative L2 in percent, lowest bold, deltas in percentage points; CSV keeps raw
    fractions with lo/hi columns for means and deltas."""
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
    assert set(s["solver_noise"]) == {"per_config"}  # no config_json: the old default


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
    assert "| Equi-DPS‡ (lam=0.1) |" in text and "| Equi-DPS‡ (lam=1)   |" in text
    text = report.make_report(*data, "tasks-by-method", "md", report.ReportOptions(baseline_only=("psld",)))
    assert "| PSLD‡ " in text and "Equi-PSLD" not in text


def test_rows_stored_in_two_runs_count_once(tmp_path):
    for run in ("r1", "r2"):
        store.write_unit(tmp_path, run, "u", unit_rows("box-dps-none", run) + unit_rows("box-dps-equi-b", run))
    results, sets = report.load_store(tmp_path)
    assert len(results) == 12
    summary = report.summarize(results, sets)
    assert list(summary["n_ok"]) == [3, 3]


def test_deterministic_bytes_and_row_order(data, tmp_path):
    """Same store -> byte-identical md/latex (intervals included), also from shuffled rows and a
    second store copy."""
    results, sets = data
    shuffled = results.sample(frac=1.0, random_state=1).reset_index(drop=True)
    other_results, other_sets = report.load_store(build_store(tmp_path, with_images=False))
    for layout in report.LAYOUTS:
        builds = [report.build_tables(r, s, layout) for r, s in ((results, sets), (shuffled, sets), (other_results, other_sets))]
        for fmt in ("md", "latex"):
            texts = [report.render(tables, fmt).encode() for tables in builds]
            assert texts[1:] == texts[:1] * 2


@pytest.mark.parametrize("layout", sorted(k for k, v in report.LAYOUTS.items() if v.source == "results"))  # calibration:
@pytest.mark.parametrize("fmt", sorted(report.FORMATS))  # from the posterior part, tests/test_calibration_report.py
def test_every_layout_and_format_renders(data, layout, fmt):
    text = report.make_report(*data, layout, fmt)
    assert text.endswith("\n") and len(text.splitlines()) >= 3
    if fmt == "csv":
        assert text.startswith("section,selection,group,")
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
    assert [c.strip() for c in header.strip("|").split("|")] == ["Task", "Method", "λ", "PSNR", "SSIM", "LPIPS", "s/img", "n", "cl."]
    assert "| Equi-DPS‡     | 1   | **22.00** ± 1.00 [+2.00 (+2.00, +2.00)]† |" in text
    assert "0.50 ± 0.00 [+0.00 (+0.00, +0.00)] |" in text  # a zero-width interval at 0 is not marked


# ------------------------------------------------------------------------------ the command
def test_cli_writes_every_layout_and_format(store_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["report", "--store", str(store_dir), "--layout", "all", "--format", "all", "--out", str(out)])
    assert rc == 0
    files = sorted(p.name for p in out.iterdir())
    results_layouts = [k for k, v in report.LAYOUTS.items() if v.source == "results"]  # this store has no posterior rows
    assert files == sorted([f"{layout}.{ext}" for layout in results_layouts for ext in ("md", "tex", "csv")] + ["report.html"])
    assert all((out / f).stat().st_size > 0 for f in files)
    assert (out / "pde.md").read_text() == PDE_MD
    assert str(out / "tasks-by-method.md") in capsys.readouterr().out


def test_cli_errors_are_clear(store_dir, tmp_path, capsys):
    rc = cli_main(["report", "--store", str(store_dir), "--run", "nope", "--out", str(tmp_path)])
    assert rc == 2 and "runs in the store: ['r1']" in capsys.readouterr().err
    rc = cli_main(["report", "--store", str(tmp_path / "missing"), "--out", str(tmp_path)])
    assert rc == 2 and "does not exist" in capsys.readouterr().err
    rc = cli_main(["report", "--store", str(store_dir), "--out", str(tmp_path), "--select-on", "embedded/tune"])
    assert rc == 2 and "datasets: ['pde', 'toy']" in capsys.readouterr().err


def test_cli_all_layouts_skips_empty_ones(tmp_path, capsys):
    small = build_store(tmp_path / "store", with_images=False, configs=["box-dps-none", "box-dps-equi-b"])
    rc = cli_main(["report", "--store", str(small), "--layout", "all", "--format", "md", "--out", str(tmp_path / "out")])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mean-std.md", "methods-by-tasks.md", "tasks-by-method.md"]
    assert "pde: no rows" in capsys.readouterr().err
    rc = cli_main(["report", "--store", str(small), "--layout", "pde", "--out", str(tmp_path / "out")])
    assert rc == 2 and "no rows" in capsys.readouterr().err


def test_seeds_pool_into_one_row_not_variants(tmp_path):
    """The seed is part of config_id: two seeds of one setting are one row of 6 images (never a
    'best seed' pick), the per-image pairing keeps seeds apart, and the seeds of one image stay in
    its cluster (3 clusters, not 6: cluster means 20, 21, 22 -> ± 1)."""
    for seed, shift in ((0, 0.0), (1, 2.0)):
        for config_id in ("box-dps-none", "box-dps-equi-b"):
            rows = [{**r, "config_id": f"{config_id}-s{seed}", "seed": seed, "psnr": r["psnr"] + shift} for r in unit_rows(config_id)]
            store.write_unit(tmp_path, "r1", f"{config_id}-s{seed}", rows)
    results, sets = report.load_store(tmp_path)
    summary = report.summarize(results, sets)
    assert sorted(summary["config_id"]) == ["box-dps-equi-b-s0", "box-dps-none-s0"]
    assert list(summary["n_ok"]) == [6, 6] and list(summary["n_seeds"]) == [2, 2]
    assert summary.set_index("config_id").loc["box-dps-none-s0", "mean:psnr"] == pytest.approx(21.0)
    text = report.make_report(results, sets, "tasks-by-method", "md", report.ReportOptions(metrics=("psnr",)))
    assert "| Equi-DPS‡     | 1 | **23.00** ± 1.00 [+2.00 (+2.00, +2.00)]† | 6 | 3   |" in text and "Chosen" not in text
    assert "n = 3 images in 3 clusters per cell" in text


# ------------------------------------------------------------------ the rich store (new runs)
@pytest.fixture
def classical(monkeypatch):
    """``wiener`` registered as a classical baseline (the registry's ``family`` field)."""
    monkeypatch.setitem(solvers.SOLVERS, "wiener", SimpleNamespace(space="pixel", family="classical", label=None))


@pytest.fixture(scope="module")
def rich_dir(tmp_path_factory):
    return build_rich_store(tmp_path_factory.mktemp("rich"))


@pytest.fixture(scope="module")
def rich(rich_dir):
    return report.load_store(rich_dir)


REPORT_ONLY = report.ReportOptions(metrics=("psnr",), report_on=("embedded/report",))
SELECT_ON_TUNE = report.ReportOptions(metrics=("psnr",), select_on="embedded/tune", report_on=("embedded/report",))

RICH_SAME_IMAGES_MD = """\
### dataset embedded/report, sigma_y = 0.05

**Best configurations selected on the same images this table reports: the selected rows are optimistic (select on another split: --select-on).**

| Task           | Method        | λ | infl. |                                     PSNR |          vs classical | n | cl. |
|----------------|---------------|---|------:|-----------------------------------------:|----------------------:|---|-----|
| Box inpainting | DPS           | - |     - |                             23.00 ± 2.00 |  +2.00 (+0.00, +4.00) | 4 | 2   |
|                | Equi-DPS      | 1 |   0.2 | **24.00** ± 2.50 [+1.00 (+0.50, +1.50)]† | +3.00 (+0.50, +5.50)† | 4 | 2   |
|                | Wiener        | - |     - |                             21.00 ± 0.00 |                     - | 4 | 2   |
|                | Naive inverse | - |     - |                             15.00 ± 0.00 |                     - | 4 | 2   |
"""


def test_rich_intervals_clusters_and_classical_by_hand(rich, classical):
    """DPS: cluster means 21, 25 -> 23 ± 2; Equi-DPS (lam 1): 21.5, 26.5 -> 24 ± 2.5, its delta
    per cluster 0.5, 1.5 -> (+0.5, +1.5)†; against Wiener (21 flat): DPS (0, 4) touches 0 (no
    mark), Equi-DPS (0.5, 5.5)†; shared noise: no ‡; n = 4 images in 2 clusters."""
    text = report.make_report(*rich, "tasks-by-method", "md", REPORT_ONLY)
    assert text.startswith(RICH_SAME_IMAGES_MD)
    assert "n = 4 images in 2 clusters per cell" in text and "‡" not in text and "older store" not in text
    assert "- Beat Wiener on Box inpainting (PSNR interval above 0): Equi-DPS +3.00 (+0.50, +5.50)." in text
    grouped = report.make_report(*rich, "methods-by-tasks", "md", REPORT_ONLY)
    assert "| *Classical*   |" in grouped and "| Wiener        |" in grouped and "Beat Wiener" in grouped


def test_select_on_tune_report_on_report(rich, rich_dir, classical, tmp_path, capsys, monkeypatch):
    """Selecting on the tune split picks lam 0.1 (not the report split's lam 1); the header says
    where, not in bold; the inert lambda is warned about in the notes and once on stderr."""
    text = report.make_report(*rich, "tasks-by-method", "md", SELECT_ON_TUNE)
    assert "\nConfigurations selected on embedded/tune (best mean PSNR per task and method), reported on these other images.\n" in text
    assert "**" not in text.split("\n\n")[1]
    assert "| Equi-DPS      | 0.1 | 0.0005 | **23.10** ± 2.00 [+0.10 (+0.10, +0.10)]† |" in text
    assert "- λ inert: Equi-DPS on Box inpainting (λ=0.1) (infl. 0.0005 < 0.001): the regularizer barely acts; its delta is noise." in text
    monkeypatch.setattr(entry, "_EMITTED", set())
    capsys.readouterr()
    args = ["report", "--store", str(rich_dir), "--layout", "all", "--format", "md", "csv", "--select-on", "embedded/tune",
            "--report-on", "embedded/report", "--out", str(tmp_path / "o")]
    assert cli_main(args) == 0
    err = capsys.readouterr().err
    assert err.count("λ inert: Equi-DPS") == 1
    rows = list(csv.DictReader(io.StringIO((tmp_path / "o" / "tasks-by-method.csv").read_text())))
    assert {r["selection"] for r in rows} == {"embedded/tune"}


def test_same_numbers_in_every_format(rich, classical):
    """The DPS mean 23 with interval (21, 25) and the Equi-DPS delta +1 (0.5, 1.5)† in md, LaTeX,
    HTML and CSV (separate lo / hi columns)."""
    tables = report.build_tables(*rich, "tasks-by-method", REPORT_ONLY)
    md, tex, htm, csv_text = (report.render(tables, f) for f in ("md", "latex", "html", "csv"))
    assert "23.00 ± 2.00" in md and r"23.00 $\pm$ 2.00" in tex and "23.00 ± 2.00" in htm
    assert "[+1.00 (+0.50, +1.50)]†" in md and r"{\scriptsize[+1.00 (+0.50, +1.50)]}$^\dagger$" in tex
    assert "<small>[+1.00 (+0.50, +1.50)]</small>†" in htm and r"\textbf{Best configurations" in tex and "<p><b>Best" in htm
    rows = {r["Method"]: r for r in csv.DictReader(io.StringIO(csv_text))}
    assert (rows["DPS"]["PSNR"], rows["DPS"]["PSNR lo"], rows["DPS"]["PSNR hi"]) == ("23", "21", "25")
    equi = rows["Equi-DPS"]
    assert (equi["PSNR delta"], equi["PSNR delta lo"], equi["PSNR delta hi"], equi["PSNR delta sig"]) == ("1", "0.5", "1.5", "1")
    assert (equi["infl"], equi["vs_classical lo"], equi["n"], equi["clusters"], equi["selection"]) == ("0.2", "0.5", "4", "2", "same images")


def test_registry_facts_are_derived(classical):
    """Space, family and task kind come from the registries, not from tables in the report."""
    assert report.solver_group("psld") == "latent" and report.solver_group("dps") == "pixel"
    assert report.solver_group("wiener") == "classical" and report.solver_family("wiener") == "classical"
    assert report.solver_group("fundps") == "other" and report.solver_family("dps") == "diffusion"
    assert report.task_kind("box_inpainting") == "Linear" and report.task_kind("phase_retrieval") == "Nonlinear"
    assert report.task_kind("my_box", operator="box_inpainting") == "Linear" and report.task_kind("pde_darcy") == "Other"
    assert report.solver_label("tikhonov_sr") == "Tikhonov SR" and report.solver_label("latent_daps") == "LatentDAPS"
    assert not hasattr(report, "SOLVER_SPACE") and not hasattr(report, "TASK_KIND")


def test_noise_pairing_rule():
    base = {"solver": "dps", "num_steps": 20, "step_size": 1.0, "solver_noise": "shared"}
    assert noise_paired({**base, "lam": 0.3}, base)
    assert not noise_paired({**base, "step_size": 2.0}, base)
    assert not noise_paired({**base, "solver_noise": "per_config"}, base)


def test_no_import_cycle_between_report_and_figures():
    """figures and the reporting modules never import orchestrator.report (its facade); only the two
    composition roots (``entry``: the text report, ``html_report``: the one-file page) import figures,
    and figures imports neither of them."""
    root = Path(report.__file__).parent
    for path in [root / "figures.py", *sorted((root / "reporting").glob("*.py"))]:
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module for a in n.names}
        assert "orchestrator.report" not in names, path
        if path.name not in ("entry.py", "html_report.py"):
            assert "orchestrator.figures" not in names, path
        if path.name == "figures.py":
            assert not any(n.startswith(("orchestrator.reporting.entry", "orchestrator.reporting.html_report")) for n in names)
    for path in [*sorted((root / "reporting").glob("*.py")), root / "stats.py", root / "figures.py", root / "report.py"]:
        assert len(path.read_text().splitlines()) <= 400, path


# ------------------------------------------------------------------------ the tune summary
def _tune_entry(best_params, influence, ranges):
    cell = {"solver": "dps", "regularizer": "equi", "task": "box", "label": "dps/equi/box", "searched": sorted(ranges), "ranges": ranges}
    best = {"trial_key": "t1", "params": best_params, "mean": 21.0, "n_images": 4, "influence": influence}
    return {"cell": cell, "fixed": False, "trials": [best], "best": best, "baseline": {"mean": 20.0},
            "counts": {"complete": 1, "stopped": 0, "diverged": 0, "failed": 0, "errored": 0, "empty": 0}}


def test_tune_summary_flags_edges_and_influence():
    from orchestrator import tune

    log = {"lam": {"lo": 0.01, "hi": 1.0, "log": True}, "step_size": {"lo": 0.5, "hi": 2.0, "log": False}}
    edge = _tune_entry({"lam": 1.0, "step_size": 1.2}, 5e-4, log)
    flags = tune.cell_flags(edge)
    assert flags[0] == "best lam=1 is on the upper edge of its search range [0.01, 1]: widen the range"
    assert flags[1].startswith("λ inert: dps/equi/box (λ=1) (infl. 0.0005 < 0.001)") and len(flags) == 2
    assert tune.cell_flags(_tune_entry({"lam": 0.1, "step_size": 0.5}, 20.0, log))[0].startswith("best step_size=0.5 is on the lower edge")
    assert "λ dominant" in tune.cell_flags(_tune_entry({"lam": 0.1, "step_size": 1.2}, 20.0, log))[0]
    assert tune.cell_flags(_tune_entry({"lam": 0.1, "step_size": 1.2}, 0.3, log)) == []
    summary = {"objective": {"metric": "psnr", "mode": "max"}, "tuning_images": {"dataset": "embedded", "split": "tune"},
               "variants_run": ["none"], "primary": "none", "fixed_evaluations": 4, "model_loads": {},
               "variants": {"none": {"cells": {"dps-equi-box": edge}, "trials": 1, "evaluations": 4, "full_budget": 4}}}
    ts = SimpleNamespace(run_id="t", tuning_ids=[10, 11, 12, 13], chunk_size=2, tune=SimpleNamespace(searcher="grid"))
    md = tune.summary_markdown(ts, summary)
    assert "| dps | equi | box | lam=1, step_size=1.2 | 21 | 20 | 1 | 0.0005 | 1/0/0 |" in md
    assert "- **dps/equi/box**: best lam=1 is on the upper edge of its search range [0.01, 1]: widen the range" in md
    assert "- **dps/equi/box**: λ inert" in md
