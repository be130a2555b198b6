"""The store's fixed Parquet schemas: one place that every writer and reader shares.

Every column is nullable so that a metric whose weights are absent is a typed null, and files
written before and after a run union without `union_by_name`.
"""
from __future__ import annotations

import pyarrow as pa

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
        ("psnr", pa.float64()),
        ("ssim", pa.float64()),
        ("lpips", pa.float64()),
        ("rel_l2", pa.float64()),
        ("y_residual", pa.float64()),
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
        ("fid", pa.float64()),
        ("kid_mean", pa.float64()),
        ("kid_std", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("computed_at", pa.timestamp("us", tz="UTC")),
        ("code_version", pa.string()),
        ("config_json", pa.string()),
    ]
)

#: Metrics where lower is better (reports bold the minimum of these, the maximum of the rest).
LOWER_IS_BETTER = frozenset({"lpips", "fid", "kid_mean", "rel_l2", "y_residual", "wall_s"})
