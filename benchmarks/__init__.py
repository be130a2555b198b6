"""EquiBench benchmarks: the orchestrator's speed, measured against the naive way on this machine.

Each ``bench_*`` module has ``run(quick=False, **sizes) -> dict`` (the shape is documented in
``benchmarks.common.result``) and a ``__main__`` that prints its JSON. ``python -m
benchmarks.run_all [--quick]`` runs them all and writes ``benchmarks/results/latest.json`` and
``latest.md``. Ratios are computed inside one process from interleaved repetitions (medians), so
both sides of a ratio see the same machine load.

| module | question |
|---|---|
| ``bench_grid_batching`` | one solve() over k lambdas x b images vs one config (b images) per pass |
| ``bench_resident_vs_reload`` | one resident sweep vs reloading models per config (shell loop / in-process) |
| ``bench_orchestration`` | bare compute loop vs the Ray sweep's wall time, 1 and 2 actors |
| ``bench_store`` | 1 M rows written in units, grouped mean through duckdb and pandas |
| ``bench_unet_peak`` | UNet forward GFLOP/s against this machine's fp32 matmul GFLOP/s |
"""
