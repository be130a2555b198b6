"""Figures from the small known store: every figure is written as non-empty PNG and PDF, the
per-image improvement pairs are right, the lambda figure carries an influence axis when the store
records influence, and a store without images or lambdas still gets figures."""
from __future__ import annotations

import pytest

from orchestrator import figures, report
from orchestrator.cli import main as cli_main
from tests.support.report_stores import build_rich_store, build_store


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def results(store_dir):
    return report.load_store(store_dir)[0]


def _assert_pairs(paths, stems):
    names = {p.name for p in paths}
    for stem in stems:
        for ext in ("png", "pdf"):
            assert f"{stem}.{ext}" in names
    for p in paths:
        assert p.exists() and p.stat().st_size > 0


def test_every_figure_png_and_pdf(results, store_dir, tmp_path):
    paths = figures.write_figures(results, store_dir, tmp_path, metrics=("psnr",))
    _assert_pairs(paths, [
        "metric_vs_sigma_psnr",
        "metric_vs_lambda_psnr",
        "improvement_psnr",
        # images were saved for box inpainting only, at two noise levels for DPS
        "qualitative_box_inpainting_dps_0.05",
        "qualitative_box_inpainting_dps_0.1",
        "qualitative_box_inpainting_psld_0.05",
    ])
    assert not any("gaussian_blur" in p.name for p in paths)  # no images stored for it


def test_improvement_pairs_and_direction(results):
    summary = report.summarize(results)
    psnr = figures.improvements(report.prepare_results(results), summary, "psnr", "psnr")
    box = psnr[(psnr["task"] == "box_inpainting") & (psnr["sigma_y"] == 0.05) & (psnr["solver"] == "dps")]
    by_reg = box.groupby("regularizer")["improvement"]
    assert by_reg.size().to_dict() == {"equi": 3, "equicon": 3}  # the diverged image has no pair
    assert by_reg.mean()["equi"] == pytest.approx(2.0) and by_reg.mean()["equicon"] == pytest.approx(-0.5)
    lpips = figures.improvements(report.prepare_results(results), summary, "lpips", "psnr")
    equi = lpips[(lpips["task"] == "box_inpainting") & (lpips["sigma_y"] == 0.05) & (lpips["regularizer"] == "equi") & (lpips["solver"] == "dps")]
    assert equi["improvement"].tolist() == pytest.approx([0.01, 0.01, 0.01])  # lower LPIPS = better


def test_qualitative_sample_choice_and_placeholders(results, store_dir, tmp_path):
    box = results[(results["task"] == "box_inpainting") & (results["solver"] == "dps") & (results["sigma_y"] == 0.05)]
    paths = figures.write_figures(box, store_dir, tmp_path / "one", names=["qualitative"], sample_ids=[2])
    _assert_pairs(paths, ["qualitative_box_inpainting_dps"])
    baselines = results[results["regularizer"] == "none"]
    paths = figures.write_figures(baselines, None, tmp_path / "none", names=["qualitative", "metric-vs-lambda", "improvement-histogram"])
    _assert_pairs(paths, ["qualitative", "metric_vs_lambda_psnr", "improvement_psnr"])
    with pytest.raises(ValueError, match="allowed"):
        figures.write_figures(results, store_dir, tmp_path, names=["pie-chart"])


def test_cli_report_with_figures(store_dir, tmp_path):
    rc = cli_main(["report", "--store", str(store_dir), "--layout", "pde", "--out", str(tmp_path), "--figures", "metric-vs-sigma", "--figure-metrics", "lpips"])
    assert rc == 0
    assert (tmp_path / "pde.md").stat().st_size > 0
    _assert_pairs(list((tmp_path / "figures").iterdir()), ["metric_vs_sigma_lpips"])


def test_write_demo_report(tmp_path):
    small = build_store(tmp_path / "store", configs=["box-dps-none", "box-dps-equi-a", "box-dps-equi-b"])
    md = report.write_demo_report(small, tmp_path / "report")
    text = md.read_text()
    assert md.name == "demo.md" and "## Comparison" in text and "| Equi-DPS‡ " in text and "**22.00** ± 1.00 [+2.00 (+2.00, +2.00)]†" in text
    for stem in ("metric_vs_sigma_psnr", "metric_vs_lambda_psnr", "qualitative_box_inpainting_dps", "improvement_psnr"):
        assert f"![{stem}](figures/{stem}.png)" in text and (md.parent / "figures" / f"{stem}.pdf").stat().st_size > 0
    for line in text.splitlines():
        if line.startswith("!["):
            assert (md.parent / line.split("(")[1].rstrip(")")).exists()


def test_lambda_figure_has_an_influence_axis(tmp_path, monkeypatch):
    """The rich store records influence_grad: each lambda panel gets a right-hand log axis with it
    (and the old store, without influence, none)."""
    drawn = []
    real = figures.save_figure
    monkeypatch.setattr(figures, "save_figure", lambda fig, out, stem: drawn.append(fig) or real(fig, out, stem))
    rich = report.load_store(build_rich_store(tmp_path / "rich"))[0]
    figures.write_figures(rich, None, tmp_path / "a", names=["metric-vs-lambda"])
    old = report.load_store(build_store(tmp_path / "old", with_images=False, configs=["box-dps-none", "box-dps-equi-b"]))[0]
    figures.write_figures(old, None, tmp_path / "b", names=["metric-vs-lambda"])
    rich_fig, old_fig = drawn
    logs = [ax for ax in rich_fig.axes if ax.get_yscale() == "log"]
    assert len(logs) == 2 and all("influence" in ax.get_ylabel() for ax in logs)  # one per split panel
    assert not any(ax.get_yscale() == "log" for ax in old_fig.axes)
