"""The metric registry is the single source: the store schema, spec validation, worker lists, report
labels and a search's direction all derive from it; it imports no heavy library; PSNR exists once."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from orchestrator.metrics import Metrics, registry

REPO = Path(__file__).resolve().parents[1]

#: The store's columns as ``orchestrator/schema.py`` spelled them before the registry (issue 17).
RESULTS_BEFORE = [
    "run_id", "run_kind", "trial_id", "unit_id", "config_id", "prior", "dataset", "solver", "regularizer", "mpe",
    "group", "lam", "lam_schedule", "step_size", "task", "sigma_y", "num_steps", "seed", "sample_id", "cluster",
    "row_seed", "psnr", "ssim", "lpips", "rel_l2", "y_residual", "naive_psnr", "influence_grad", "influence_obj",
    "status", "error", "wall_s", "worker", "started_at", "code_version", "config_json"]
SETS_BEFORE = [
    "run_id", "run_kind", "trial_id", "config_id", "solver", "regularizer", "lam", "step_size", "task", "sigma_y",
    "num_steps", "n_images", "fid", "kid_mean", "kid_std", "status", "error", "computed_at", "code_version", "config_json"]


def test_derived_schema_equals_the_one_spelled_out_before():
    import pyarrow as pa

    from orchestrator.schema import RESULTS_SCHEMA, SETS_SCHEMA

    assert RESULTS_SCHEMA.names == RESULTS_BEFORE and SETS_SCHEMA.names == SETS_BEFORE
    assert registry.columns("image") == ("psnr", "ssim", "lpips", "rel_l2", "y_residual")
    assert registry.columns("set") == ("fid", "kid_mean", "kid_std")
    for c in registry.columns("image") + ("naive_psnr",):
        assert RESULTS_SCHEMA.field(c).type == pa.float64()
    for c in registry.columns("set"):
        assert SETS_SCHEMA.field(c).type == pa.float64()


def test_the_registry_imports_no_heavy_library():
    """Spec parsing, the schema and ``--help`` read the registry: no metric module imports torch."""
    probe = ("import sys, json; import orchestrator.metrics, orchestrator.spec_models, orchestrator.commands.report; "
             "print(json.dumps([m for m in ('torch', 'torchvision', 'lpips', 'torch_fidelity', 'numpy', 'pandas') "
             "if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_weights_file_names_are_the_upstream_download_names():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torchvision.models import AlexNet_Weights

    files = {k: wf.filename for k, wf in registry.weights_files().items()}
    assert files == {"lpips": AlexNet_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1],
                     "inception": URL_INCEPTION_V3.rsplit("/", 1)[-1]}
    assert registry.needing("inception") == ("fid", "kid") and registry.needing("lpips") == ("lpips",)


def test_spec_lists_tune_direction_and_labels_come_from_the_registry():
    from orchestrator import worker
    from orchestrator.commands import report as report_cmd
    from orchestrator.reporting import labels
    from orchestrator.schema import LOWER_IS_BETTER
    from orchestrator.spec import METRICS, ROW_METRICS, SET_METRICS
    from orchestrator.tune.section import OBJECTIVE_METRICS, ObjectiveSpec

    assert ROW_METRICS == worker.ROW_METRICS == ("psnr", "ssim", "lpips", "rel_l2")  # y_residual: the solver's own
    assert SET_METRICS == worker.SET_METRICS == ("fid", "kid") and METRICS == ROW_METRICS + SET_METRICS
    assert worker.EXTRA_COLUMNS == ("y_residual", "influence_grad", "influence_obj")
    assert OBJECTIVE_METRICS == ROW_METRICS + ("y_residual",)
    assert [ObjectiveSpec(metric=m).direction for m in ("psnr", "ssim", "lpips", "rel_l2", "y_residual")] == \
        ["max", "max", "min", "min", "min"]
    assert {"lpips", "fid", "kid_mean", "rel_l2", "y_residual", "wall_s"} <= LOWER_IS_BETTER
    assert not {"psnr", "ssim", "kid_std"} & LOWER_IS_BETTER
    assert list(labels.METRICS) == list(report_cmd.METRICS)
    assert list(labels.METRICS)[:len(registry.METRICS) + 1] == [*registry.by_column(), "wall_s"]  # then posterior columns
    kid = labels.METRICS["kid_mean"]
    assert (kid.label, kid.decimals, kid.source, kid.std_column) == ("KID", 4, "set", "kid_std")
    assert labels.METRICS["rel_l2"].percent and labels.METRICS["psnr"].decimals == 2


def test_unknown_spec_metric_is_one_line_naming_the_allowed_values():
    from orchestrator.spec import SpecError, parse

    spec = {"name": "t", "prior": "embedded", "tasks": [{"operator": "super_resolution"}], "solvers": [{"name": "dps"}],
            "metrics": ["psnr", "nope"]}
    with pytest.raises(SpecError) as err:
        parse(spec)
    (line,) = [ln for ln in str(err.value).splitlines() if "nope" in ln]
    assert "unknown metrics ['nope']" in line and all(repr(m) in line for m in ("psnr", "ssim", "lpips", "rel_l2", "fid", "kid"))


def test_register_metric_checks_its_fields_and_a_new_metric_runs_everywhere():
    with pytest.raises(ValueError, match="direction"):
        registry.register_metric("t_bad", label="B", direction="up", kind="image", fn=lambda m, c: None)
    with pytest.raises(ValueError, match="kind"):
        registry.register_metric("t_bad", label="B", direction="lower", kind="row", fn=lambda m, c: None)
    with pytest.raises(ValueError, match="already belong to"):
        registry.register_metric("t_bad", label="B", direction="lower", kind="image", columns=("psnr",), fn=lambda m, c: None)
    assert "t_bad" not in registry.METRICS

    def mae(m, c):
        return (c["x_hat"] - c["x_true"]).abs().flatten(1).mean(1).double()

    registry.register_metric("t_mae", label="MAE", direction="lower", kind="image", fn=mae)
    try:
        m = Metrics(names=("psnr", "t_mae"), set_names=())
        x = torch.zeros(2, 1, 4, 4)
        assert m.per_image(x + 0.5, x)["t_mae"].tolist() == [0.5, 0.5]
        assert "t_mae" in registry.lower_is_better_columns() and registry.columns("image")[-1] == "t_mae"
    finally:
        registry.METRICS.pop("t_mae")


def test_psnr_is_implemented_once():
    import solvers.embedded.quality as quality
    import solvers.embedded.train as train
    import solvers.restarts as restarts
    from orchestrator.metrics import psnr
    from solvers.psnr import psnr as the_psnr

    assert restarts.psnr is the_psnr and quality._psnr is the_psnr and train.psnr is the_psnr
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 3, 8, 8, generator=g) * 2 - 1, torch.rand(3, 3, 8, 8, generator=g) * 2 - 1
    assert torch.equal(psnr(a, b), the_psnr(a, b))
    mse = ((a - b) / 2).pow(2).flatten(1).mean(1).double()  # the formulas the copies used: peak-to-peak 2
    assert torch.allclose(the_psnr(a, b), 10 * torch.log10(4 / (a - b).double().pow(2).flatten(1).mean(1)))
    assert torch.allclose(the_psnr(a, b), -10 * torch.log10(mse))
