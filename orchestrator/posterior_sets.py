"""Posterior set metrics: the samples of one (config, measurement) scored against the exact posterior.

A dataset with an exact posterior (``DatasetInfo.exact_posterior``: the mixture worlds) under a linear
task with Gaussian noise (``sigma_y > 0``) knows ``p(x | y)`` for every measurement. With
``dataset.samples_per_measurement: S`` each measurement has S rows per config (one ``y``, S solver
streams: ``grid``'s seed rule), and once all of them are stored their reconstructions form a sample
set that ``solvers.mixture.metrics.summary`` scores: sliced Wasserstein to an exact set of the same
size with its floor beside it, mean-error ratio, std ratio, mode-weight TV, 50/90% coverage, and
the MMSE gap (per row ``||x - E[x|y]||^2 / tr Cov[x|y]``, averaged over the rows). A classical
baseline (family ``classical``) returns a point, not samples: only ``POINT_METRICS``.

**When.** The driver, the single writer, tells ``PosteriorSets`` each unit it stored; when the last
row of a (config, measurement) arrives its row is computed in the driver (no model is needed, only
float64 linear algebra on at most 768 values: milliseconds) and written. At start the rows already
stored are read once: a (config, measurement) whose rows are all stored is (re)computed only when it
has no posterior row, a failed one, or one over another number of ok rows (``--retry-diverged``
replaced some), so a rerun computes only what is missing.

**Reconstructions: the stored images**, not a copy returned by the worker: they are on disk before
the last row of a measurement arrives, whichever run stored them, so an interrupted run resumes
without recomputing rows, and FID/KID already read them the same way. A run on such a dataset
therefore keeps every image (``store_images.image_context`` forces ``save_images: all``) and refuses
``png8`` (8 bits are 0.008 on [-1, 1], a sixth of the smallest posterior std of mog8); float16's
rounding (<= 5e-4 below 1) is far below it.

**The measurement** is rebuilt by ``orchestrator.problem`` with the plan's seeds on the workers'
device kind (CPU and CUDA generators draw differently) and checked against the stored naive inverse
of the same row: a mismatch is a failed row naming it, never a posterior of another ``y``.

**Reference sets** are exact posterior draws seeded by the measurement (dataset, split, task,
sigma_y, seed), not the config: every config of a measurement meets the same reference, so paired
differences carry no reference noise; the floor is the distance between two such sets of the
sample set's size, on the same ``N_DIRECTIONS`` fixed directions.

Store: ``STORE/posterior/run=<run>/config-<config_id>-m<measurement>.parquet`` (``POSTERIOR_SCHEMA``),
atomic, with the run's identity in the footer, verified on read like results and sets.
"""
from __future__ import annotations

import datetime as _dt
import math
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

import pandas as pd

from orchestrator.schema import POSTERIOR_SCHEMA
from orchestrator.store_files import check_id

__all__ = ["POSTERIOR_KEY", "METRICS", "POINT_METRICS", "PosteriorSets", "posterior_dir", "write_row", "load",
           "qualifies", "wanted", "spec_problems"]

POSTERIOR_KEY = ("run_id", "trial_id", "config_id", "measurement")
METRICS = ("sw", "sw_floor", "mean_err", "std_ratio", "mode_tv", "cov50", "cov90", "mmse_gap")
#: what a point estimate (a classical baseline) is scored on
POINT_METRICS = ("mean_err", "mmse_gap")
N_DIRECTIONS = 256
#: largest |stored naive - rebuilt naive| of a matching measurement (float16 rounding is <= 1e-3 below 2)
NAIVE_TOL = 1e-2


# ------------------------------------------------------------------------------ store part
def posterior_dir(store_dir, run_id: str | None = None) -> Path:
    base = Path(store_dir) / "posterior"
    return base if run_id is None else base / f"run={check_id('run_id', run_id)}"


def write_row(store_dir, run_id: str, row: dict, grid_hash: str | None = None) -> Path:
    """One (config, measurement)'s row, coerced to ``POSTERIOR_SCHEMA``, written atomically."""
    from orchestrator.store_write import _write_parquet, coerce_table

    row = {**row, "run_id": row.get("run_id") or run_id}
    name = f"config-{check_id('config_id', row['config_id'])}-m{int(row['measurement'])}.parquet"
    return _write_parquet(posterior_dir(store_dir, run_id) / name, coerce_table([row], POSTERIOR_SCHEMA), run_id, grid_hash)


def load(store_dir, run=None, filters=None, columns=None, dedupe: bool = True) -> pd.DataFrame:
    """Posterior rows (``POSTERIOR_SCHEMA`` columns) of the store; arguments as ``store.load``."""
    from orchestrator.store_read import _load

    return _load(store_dir, "posterior", POSTERIOR_KEY, "computed_at", run, filters, columns, dedupe)


# ------------------------------------------------------------------------------ which configs
def _hook(dataset: str):
    from orchestrator import data

    return data.info(dataset).exact_posterior if dataset in data.DATASETS else None


def wanted(spec) -> bool:
    """Whether a run of ``spec`` computes posterior sets (its dataset has an exact posterior)."""
    return _hook(spec.dataset.name) is not None


def qualifies(cfg) -> bool:
    """A config has an exact posterior: such a dataset, a linear operator, Gaussian noise."""
    if _hook(cfg.dataset) is None or not cfg.sigma_y > 0:
        return False
    from operators import OPERATORS

    return bool(getattr(OPERATORS.get(cfg.operator), "linear", False))


def spec_problems(spec, info) -> list[tuple[str, str]]:
    """``(field, message)`` for ``dataset.samples_per_measurement`` and the image format (spec_check)."""
    errors: list[tuple[str, str]] = []
    ds, n = spec.dataset, spec.dataset.samples_per_measurement
    if info.exact_posterior is not None and spec.image_format == "png8":
        errors.append(("image_format", f"'png8' rounds reconstructions to 8 bits, too coarse for the posterior metrics of "
                                       f"{info.name!r} (computed from stored images); allowed for this dataset: 'float16'"))
    if n == 1:
        return errors
    if info.replica_ids is None:
        from orchestrator import data

        with_replicas = sorted(k for k in data.DATASETS if k != "embedded")
        errors.append(("dataset.samples_per_measurement", f"{n}: dataset {info.name!r} has one sample per measurement; "
                                                           f"allowed: 1 (values > 1 need a dataset with replicas: {', '.join(with_replicas)})"))
    elif ds.count is None and ds.ids is None:
        errors.append(("dataset.count", f"samples_per_measurement: {n} replicates measurements: give dataset.count (or "
                                        "dataset.ids), the measurements to replicate"))
    elif ds.split in info.sizes:
        base = list(ds.ids) if ds.ids is not None else list(range(ds.count))
        first_replica = next((i for i in range(max(base) + 1) if info.measurement_of(ds.split, i) != i), None)
        if first_replica is not None and max(base) >= first_replica:
            field = "dataset.ids" if ds.ids is not None else "dataset.count"
            got = [i for i in base if i >= first_replica][:5] if ds.ids is not None else ds.count
            errors.append((field, f"{got}: {info.name}/{ds.split} has {first_replica} measurements; allowed: "
                                  f"{'ids 0..' + str(first_replica - 1) if ds.ids is not None else '1..' + str(first_replica)}"))
        else:
            try:
                info.replica_ids(ds.split, base, n)
            except ValueError as exc:
                errors.append(("dataset.samples_per_measurement", str(exc)))
    return errors


# ------------------------------------------------------------------------------ the driver's side
def _device(spec) -> str:
    """The device kind the workers draw measurement noise on (``WorkerCore``: CUDA when given GPUs)."""
    import torch

    return "cuda" if spec.resources.num_gpus > 0 and torch.cuda.is_available() else "cpu"


class PosteriorSets:
    """What is owed per (config, measurement), counted down as units are stored (module docstring).

    ``todo``: keys whose rows are all stored already and whose posterior row is missing or stale;
    ``write_ready()`` writes them; ``unit_stored(unit, rows)`` after each stored unit writes those it
    completed. Both return how many rows they wrote.
    """

    def __init__(self, spec, store_dir, configs, samples, units, context: dict | None = None, grid_hash=None):
        from orchestrator import data

        self.spec, self.store_dir, self.run_id = spec, Path(store_dir), spec.name
        self.context, self.grid_hash = dict(context or {}), grid_hash
        self.configs = {c.config_id: c for c in configs if qualifies(c)}
        ds, split = spec.dataset.name, spec.dataset.split
        self._m = {int(s): data.measurement_of(ds, split, s) for s in samples} if self.configs else {}
        by_m: dict[int, list[int]] = defaultdict(list)
        for s, m in self._m.items():
            by_m[m].append(s)
        self.keys = {(cid, m): ss for cid in self.configs for m, ss in by_m.items()}
        self.pending: Counter = Counter()
        for u in units:
            for r in u.rows:
                key = (r.config_id, self._m.get(int(r.sample_id)))
                if key in self.keys:
                    self.pending[key] += 1
        self.stored: dict[tuple, dict[int, tuple[str, str]]] = defaultdict(dict)  # key -> sample -> (unit, status)
        self.todo: list[tuple] = self._resumed() if self.keys and self.store_dir.is_dir() else []
        self._posteriors: OrderedDict = OrderedDict()
        self._images: OrderedDict = OrderedDict()
        self._theta: dict[int, object] = {}

    # -- bookkeeping
    def _trial_rows(self, df: pd.DataFrame) -> pd.DataFrame:
        trial = self.context.get("trial_id")
        return df[df["trial_id"].isna()] if trial is None else df[df["trial_id"] == trial]

    def _resumed(self) -> list[tuple]:
        from orchestrator import store

        rows = self._trial_rows(store.load(self.store_dir, run=self.run_id,
                                           columns=["config_id", "sample_id", "unit_id", "status", "trial_id"]))
        for cid, s, u, st in zip(rows["config_id"], rows["sample_id"], rows["unit_id"], rows["status"]):
            key = (cid, self._m.get(int(s)))
            if key in self.keys:
                self.stored[key][int(s)] = (str(u), str(st))
        have = {}
        if posterior_dir(self.store_dir, self.run_id).is_dir():
            got = self._trial_rows(load(self.store_dir, run=self.run_id,
                                        columns=["config_id", "measurement", "n_samples", "status", "trial_id"]))
            have = {(c, int(m)): (n, st) for c, m, n, st in zip(got["config_id"], got["measurement"], got["n_samples"], got["status"])}
        todo = []
        for key in self.keys:
            if self.pending[key] or not self.stored[key]:
                continue
            n_ok = sum(st == "ok" for _, st in self.stored[key].values())
            prev = have.get(key)
            if prev is None or prev[1] == "failed" or pd.isna(prev[0]) or int(prev[0]) != n_ok:
                todo.append(key)
        return todo

    def write_ready(self) -> int:
        todo, self.todo = self.todo, []
        return self._write(todo)

    def unit_stored(self, unit, rows) -> int:
        done = []
        for row in rows:
            key = (row["config_id"], self._m.get(int(row["sample_id"])))
            if key not in self.keys:
                continue
            self.stored[key][int(row["sample_id"])] = (unit.unit_id, str(row["status"]))
            self.pending[key] -= 1
            if self.pending[key] == 0:
                done.append(key)
        return self._write(done)

    def _write(self, keys) -> int:
        for key in keys:
            write_row(self.store_dir, self.run_id, self.row(key), self.grid_hash)
        return len(keys)

    # -- one row
    def row(self, key) -> dict:
        """The posterior row of ``key`` = (config_id, measurement); errors become a failed row."""
        from orchestrator import data
        from solvers.api import SOLVERS

        cid, m = key
        cfg = self.configs[cid]
        cols = cfg.store_columns()
        point = getattr(SOLVERS.get(cfg.solver), "family", "diffusion") == "classical"
        base = {k: cols[k] for k in ("config_id", "dataset", "solver", "regularizer", "lam", "step_size", "task", "sigma_y",
                                     "num_steps", "seed", "config_json")}
        base.update(run_id=self.run_id, run_kind=self.context.get("run_kind", "sweep"), trial_id=self.context.get("trial_id"),
                    measurement=int(m), cluster=data.cluster(cfg.dataset, cfg.split, m), n_rows=len(self.keys[key]),
                    estimator="point" if point else "samples", computed_at=_dt.datetime.now(_dt.timezone.utc),
                    code_version=self.context.get("code_version"))
        try:
            metrics, n = self._metrics(cfg, key, point)
        except Exception as exc:  # noqa: BLE001 - a failing set is a failed row, never a dead sweep
            return {**base, "n_samples": 0, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[-2000:]}
        return {**base, **metrics, "n_samples": n, "status": "ok" if n == len(self.keys[key]) else "partial"}

    def _metrics(self, cfg, key, point: bool) -> tuple[dict, int]:
        import numpy as np
        import torch

        from solvers.mixture import metrics as M
        from solvers.mixture.world import world

        cid, m = key
        ok = sorted((s, u) for s, (u, st) in self.stored[key].items() if st == "ok")
        if not ok:
            counts = Counter(st for _, st in self.stored[key].values())
            raise ValueError(f"no row of measurement {m} is stored ok ("
                             + ", ".join(f"{n} {st}" for st, n in sorted(counts.items())) + ")")
        x_hat, naive = {}, {}
        for unit in sorted({u for _, u in ok}):
            imgs = self._unit_images(unit)
            x_hat.update(imgs["x_hat"])
            naive.update(imgs["naive"])
        keys = [f"{cid}:{s}" for s, _ in ok if f"{cid}:{s}" in x_hat]
        if not keys:
            raise ValueError(f"no stored reconstruction of measurement {m} (images of units {sorted({u for _, u in ok})})")
        X = torch.as_tensor(np.stack([x_hat[k] for k in keys]).astype(np.float64)).reshape(len(keys), -1)
        X = X[torch.isfinite(X).all(1)]
        if X.shape[0] == 0:
            raise ValueError(f"every stored reconstruction of measurement {m} is non-finite")
        post, naive_ref = self._posterior(cfg, m, ok[0][0])
        stored_naive = naive.get(keys[0])
        if stored_naive is not None:
            gap = float(np.abs(stored_naive.astype(np.float64) - naive_ref).max())
            if gap > NAIVE_TOL:
                raise ValueError(f"the measurement rebuilt on {_device(self.spec)} differs from the one the row ran on (naive "
                                 f"inverse off by {gap:.3g} > {NAIVE_TOL}): did the workers run on another device kind?")
        n = int(X.shape[0])
        out = {name: math.nan for name in METRICS}
        out["mmse_gap"] = float(M.mmse_gap(X, post).mean())
        if point:
            out["mean_err"] = M.mean_error(X, post)
            return out, n
        ref, floor = self._reference(cfg, m, post, n)
        out.update(M.summary(X, post, world(cfg.dataset).mixture, ref, self._directions(post.dim)))
        out["sw_floor"] = floor
        return out, n

    def _directions(self, d: int):
        from solvers.mixture.metrics import directions

        if d not in self._theta:
            self._theta[d] = directions(d, N_DIRECTIONS, seed=0)
        return self._theta[d]

    def _measurement_key(self, cfg, m: int) -> tuple:
        from orchestrator.grid import canonical_json

        return (cfg.dataset, cfg.split, int(m), cfg.operator, canonical_json(cfg.op_params), float(cfg.sigma_y), int(cfg.seed))

    def _posterior(self, cfg, m: int, sample_id: int):
        """(exact posterior, rebuilt naive inverse (C, H, W) float64) of measurement ``m`` (LRU cached)."""
        key = self._measurement_key(cfg, m)
        if key in self._posteriors:
            self._posteriors.move_to_end(key)
            return self._posteriors[key][:2]
        from orchestrator import grid, problem

        meas = problem.make_measurement(cfg.dataset, cfg.split, [sample_id], cfg.operator, cfg.op_params, cfg.sigma_y,
                                        seed=cfg.seed, device=_device(self.spec), op_seeds=[grid.operator_seed(cfg, sample_id)],
                                        noise_seeds=[grid.noise_seed(cfg, sample_id)])
        post = _hook(cfg.dataset)(meas.operator, meas.y, cfg.sigma_y)
        naive = meas.naive[0].detach().double().cpu().numpy()
        self._posteriors[key] = (post, naive, {})
        while len(self._posteriors) > 16:
            self._posteriors.popitem(last=False)
        return post, naive

    def _reference(self, cfg, m: int, post, n: int):
        """(exact set of ``n``, SW between two exact sets of ``n``) of measurement ``m``, seeded by it."""
        import torch

        from solvers.mixture.metrics import sliced_wasserstein
        from solvers.rng import row_seed

        key = self._measurement_key(cfg, m)
        cache = self._posteriors[key][2]
        if n not in cache:
            gen = torch.Generator().manual_seed(row_seed("posterior-reference", list(key), n) & 0x7FFF_FFFF_FFFF_FFFF)
            both, _ = post.sample(2 * n, gen)
            cache[n] = (both[:n], sliced_wasserstein(both[n:], both[:n], self._directions(post.dim)))
        return cache[n]

    def _unit_images(self, unit_id: str) -> dict:
        """One unit's stored images (``store.load_images``), cached by file size and mtime."""
        from orchestrator import store

        path = store.images_dir(self.store_dir, self.run_id) / f"unit-{check_id('unit_id', unit_id)}.npz"
        st = path.stat() if path.exists() else None
        stamp = (st.st_size, st.st_mtime_ns) if st else None
        hit = self._images.get(unit_id)
        if hit is not None and hit[0] == stamp:
            self._images.move_to_end(unit_id)
            return hit[1]
        imgs = store.load_images(self.store_dir, self.run_id, [unit_id])
        self._images[unit_id] = (stamp, imgs)
        while len(self._images) > 4:
            self._images.popitem(last=False)
        return imgs
