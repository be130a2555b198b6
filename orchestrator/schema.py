"""The store's fixed Parquet schemas: one place that every writer and reader shares.

Every column is nullable so that a metric whose weights are absent is a typed null, and files
written before and after a run union without `union_by_name`.
"""
from __future__ import annotations

import pyarrow as pa

from orchestrator.metrics import registry as _metrics


def metric_fields(kind: str) -> list[tuple[str, pa.DataType]]:
    """The float64 store columns the registered metrics of ``kind`` write (``MetricInfo.columns``)."""
    return [(c, pa.float64()) for c in _metrics.columns(kind)]


#: Per-image rows, one per (config, sample).
RESULTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run_kind", pa.string()),  # "sweep" | "tune" | "solve"
        ("trial_id", pa.string()),
        ("unit_id", pa.string()),
        ("config_id", pa.string()),
        ("prior", pa.string()),
        ("dataset", pa.string()),
        ("solver", pa.string()),
        ("regularizer", pa.string()),  # "none" | "equi" | "equicon"
        ("mpe", pa.string()),
        ("group", pa.string()),
        ("lam", pa.float64()),
        ("lam_schedule", pa.string()),
        ("step_size", pa.float64()),
        ("task", pa.string()),
        ("sigma_y", pa.float64()),
        ("num_steps", pa.int64()),
        ("seed", pa.int64()),
        ("sample_id", pa.int64()),
        ("cluster", pa.string()),  # the image's source cluster (photo or seed block): bootstrap unit
        ("row_seed", pa.int64()),
        *metric_fields("image"),  # psnr, ssim, lpips, rel_l2, y_residual, ... (the metric registry)
        ("naive_psnr", pa.float64()),
        # lambda influence: mean over steps of ||grad(lam_t R)|| / ||grad(data term)|| w.r.t. the variable the
        # solver updates; influence_obj: ratio of objective values (ReSample's inner optimisation); null = no penalty
        ("influence_grad", pa.float64()),
        ("influence_obj", pa.float64()),
        ("status", pa.string()),  # "ok" | "diverged" | "failed"
        ("error", pa.string()),
        ("wall_s", pa.float64()),
        ("worker", pa.string()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("code_version", pa.string()),
        ("config_json", pa.string()),
    ]
)

#: Set-level metrics, one row per config once all its rows are stored.
SETS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run_kind", pa.string()),
        ("trial_id", pa.string()),
        ("config_id", pa.string()),
        ("solver", pa.string()),
        ("regularizer", pa.string()),
        ("lam", pa.float64()),
        ("step_size", pa.float64()),
        ("task", pa.string()),
        ("sigma_y", pa.float64()),
        ("num_steps", pa.int64()),
        ("n_images", pa.int64()),
        *metric_fields("set"),  # fid, kid_mean, kid_std, ...
        ("status", pa.string()),
        ("error", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
        ("code_version", pa.string()),
        ("config_json", pa.string()),
    ]
)

#: Posterior set metrics (``orchestrator.posterior_sets``), one row per (config, measurement) of a dataset
#: with an exact posterior: the samples of one measurement scored against it (``solvers.mixture.metrics``).
POSTERIOR_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("run_kind", pa.string()),
        ("trial_id", pa.string()),
        ("config_id", pa.string()),
        ("measurement", pa.int64()),
        ("cluster", pa.string()),  # the measurement's bootstrap cluster
        ("dataset", pa.string()),
        ("solver", pa.string()),
        ("regularizer", pa.string()),
        ("lam", pa.float64()),
        ("step_size", pa.float64()),
        ("task", pa.string()),
        ("sigma_y", pa.float64()),
        ("num_steps", pa.int64()),
        ("seed", pa.int64()),
        ("estimator", pa.string()),  # "samples" (a sampler) | "point" (a classical baseline: mean metrics only)
        ("n_rows", pa.int64()),  # the measurement's rows in the grid
        ("n_samples", pa.int64()),  # rows stored ok with a finite reconstruction (the sample set)
        ("sw", pa.float64()),  # sliced Wasserstein-2 to an exact posterior set of n_samples
        ("sw_floor", pa.float64()),  # the same distance between two exact sets of n_samples
        ("mean_err", pa.float64()),
        ("std_ratio", pa.float64()),
        ("mode_tv", pa.float64()),
        ("cov50", pa.float64()),
        ("cov90", pa.float64()),
        ("mmse_gap", pa.float64()),  # mean over the rows of ||x - E[x|y]||^2 / tr Cov[x|y]
        ("status", pa.string()),  # "ok" | "partial" (some rows not ok) | "failed"
        ("error", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
        ("code_version", pa.string()),
        ("config_json", pa.string()),
    ]
)

#: Metrics where lower is better (reports bold the minimum of these, the maximum of the rest): the
#: registry's (``MetricInfo.direction``), seconds per image and the posterior set columns.
LOWER_IS_BETTER = _metrics.lower_is_better_columns() | frozenset({"wall_s", "sw", "mean_err", "mode_tv"})
