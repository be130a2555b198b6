"""The worker: a long-lived process that holds the models and turns WorkUnits into rows.

``WorkerCore`` is plain Python (testable without Ray); ``Worker`` is the same class as a Ray actor
(``max_restarts=-1, max_task_retries=-1``: a dead actor is restarted and its in-flight calls are
re-run). Models are loaded once per actor and cached by their reference (prior space + ``PriorRef.key``), so a
sweep over many units loads each prior, MPE autoencoder and metric network once per actor.

The worker never writes the store: it returns rows and images and the driver, the single writer,
stores them under the unit's deterministic file name. A unit re-run after an actor died therefore
replaces nothing and duplicates nothing (the first run never reached the store).

Everything solver-specific lives behind ``solvers.solve``; the worker only builds the row batch:
images by sample id, one operator instance per row (``op_seed``), noise per row (``noise_seed``),
one generator per row (``row_seed``), per-row ``lam`` and ``step_size``. A solver exception fails
the unit's rows (status ``failed`` + error) instead of the actor; rows the solver reports as
diverged are recorded with status ``diverged``.
"""
from __future__ import annotations

import datetime as _dt
import math
import os
import socket
import time
import traceback
import warnings
from typing import Any

import numpy as np
import ray

from orchestrator import plugins as _plugins
from orchestrator import data as _data
from orchestrator.metrics import registry as _metric_registry
from orchestrator.plan import WorkUnit
from orchestrator.problem import batch_for

#: the metrics the worker computes, from the metric registry: per row, and per config (set)
ROW_METRICS = _metric_registry.names("image", spec=True)
SET_METRICS = _metric_registry.names("set")
#: per-row ``SolveOutput.extras`` that become store columns (RESULTS_SCHEMA); absent -> null: the metrics the
#: solver reports itself (``MetricInfo.from_solver``: y_residual) and the lambda influence ratios
EXTRA_COLUMNS = tuple(n for n, m in _metric_registry.METRICS.items() if m.from_solver) + ("influence_grad", "influence_obj")


# ------------------------------------------------------------------------------ small builders
def _to_list(value, n: int) -> list:
    """A metric result (tensor (B,), list, scalar or None) as ``n`` Python floats/None."""
    if value is None:
        return [None] * n
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().reshape(-1).tolist()
    elif np.ndim(value) == 0:
        value = [float(value)] * n
    out = []
    for v in list(value):
        v = None if v is None else float(v)
        out.append(None if v is None or math.isnan(v) else v)
    return out


def build_metrics(device, weights: dict | None, names=None, set_names=None):
    """``orchestrator.metrics.Metrics`` for per-image ``names`` and set ``set_names`` (None: its
    defaults), with LPIPS/Inception weights from files (absent: null + one warning; a metric not
    named is never resolved, so its absent weights never warn)."""
    from orchestrator.metrics import Metrics

    weights = weights or {}
    named = {k: tuple(v) for k, v in (("names", names), ("set_names", set_names)) if v is not None}
    return Metrics(device, weights=weights, **named)


def warning_records(caught) -> list[dict]:
    """Caught ``warnings`` as picklable ``{"category": "module.Name", "message"}`` records, each once:
    a worker returns them with its results and the driver prints each distinct one once per sweep
    (``cluster.reissue_warnings``) instead of every actor printing its own copy."""
    out: list[dict] = []
    for w in caught:
        rec = {"category": f"{w.category.__module__}.{w.category.__qualname__}", "message": str(w.message)}
        if rec not in out:
            out.append(rec)
    return out


def load_prior(space: str, key: str):
    """A prior (with its autoencoder for latent ones) from a config's prior (``PriorRef.key``) in ``space``."""
    from orchestrator.spec_priors import PriorRef
    from solvers.loaders import load_prior as load

    return load(PriorRef.from_key(key).loader_spec(space))


# ----------------------------------------------------------------------------------- the core
class WorkerCore:
    """Loads models lazily, once, and runs units (see the module docstring)."""

    def __init__(self, plugins=(), threads: int = 1, use_gpu: bool = False,
                 metric_weights: dict | None = None, name: str = "worker", compute: dict | None = None):
        with warnings.catch_warnings(record=True) as caught:  # returned with the first result
            self._setup(plugins, threads, use_gpu, metric_weights, name)
            self._setup_compute(compute)
        self._warnings = warning_records(caught)

    def _setup_compute(self, compute: dict | None) -> None:
        """The spec's ``compute`` settings of this actor (``ComputeSpec.actor_options``): compile and
        channels_last for the networks it loads, ``max_batch`` for its solver calls (``gpu_batch``)."""
        from orchestrator.gpu_batch import BatchFitter

        self.compute = {"compile": None, "channels_last": False, "max_batch": None, **(compute or {})}
        self.fitter = BatchFitter(self.compute["max_batch"])

    def _setup(self, plugins, threads, use_gpu, metric_weights, name) -> None:
        import torch

        if use_gpu and not torch.cuda.is_available():  # never a silent CPU run of a GPU actor
            raise RuntimeError(f"resources.num_gpus > 0 but torch.cuda.is_available() is False in actor {name} on "
                               f"{socket.gethostname()} (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}, "
                               f"torch {torch.__version__}); allowed: num_gpus 0 for CPU actors, or a CUDA build of torch")

        torch.set_num_threads(int(threads))  # Ray sets OMP_NUM_THREADS=1: be explicit either way
        self.threads = int(threads)
        self.plugins = _plugins.load(plugins)  # before any unit: its solvers, operators, priors are theirs
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.metric_weights = dict(metric_weights or {})
        self.name = f"{name}@{socket.gethostname()}:{os.getpid()}"
        self._priors: dict[tuple[str, str], Any] = {}
        self._metrics = None
        self.loads = 0  # how many models this process loaded (tests assert "once")

    # -- caches
    def prior(self, space: str, ref: str):
        key = (space, ref)
        if key not in self._priors:
            prior = load_prior(space, ref)
            if hasattr(prior, "to"):
                prior = prior.to(self.device)
            if hasattr(prior, "eval"):
                prior.eval()
            if self.compute["compile"] or self.compute["channels_last"]:
                from solvers import precision as _precision

                _precision.prepare(prior, compile=self.compute["compile"], channels_last=self.compute["channels_last"])
            self._priors[key] = prior
            self.loads += 1
        return self._priors[key]

    def metrics_for(self, names):
        """The actor's ``Metrics``, covering every metric of ``names`` (a sweep's ``metrics``) and those
        asked for before; psnr always (the naive inverse's). Built once per actor for a sweep's list
        (again only when a later call asks for more)."""
        per = [n for n in ROW_METRICS if n in names or n == "psnr"]
        sets = [n for n in SET_METRICS if n in names]
        have = self._metrics
        if have is None or not (set(per) <= set(have.names) and set(sets) <= set(have.set_names)):
            if have is not None:
                per = [n for n in ROW_METRICS if n in per or n in have.names]
                sets = [n for n in SET_METRICS if n in sets or n in have.set_names]
            self._metrics = build_metrics(self.device, self.metric_weights, per, sets)
            self.loads += 1
        return self._metrics

    def _result_warnings(self, caught) -> list[dict]:
        """Warnings of this call (and of the actor's start, once) for the driver to print once."""
        got = self._warnings + [w for w in warning_records(caught) if w not in self._warnings]
        self._warnings = []
        return got

    def info(self) -> dict:
        import torch

        return {"name": self.name, "pid": os.getpid(), "loads": self.loads, "threads": torch.get_num_threads(),
                "device": str(self.device), "priors": [list(k) for k in self._priors],
                "compute": dict(self.compute), "batch_fits": self.fitter.fits(), "batch_probes": self.fitter.probes}

    # -- one unit
    def run_unit(self, unit: WorkUnit, context: dict | None = None) -> dict:
        """Rows (dicts for RESULTS_SCHEMA) and images of ``unit``, and ``warnings`` (records the driver
        prints once per sweep); never raises for solver errors."""
        with warnings.catch_warnings(record=True) as caught:
            result = self._run_unit(unit, context)
        result["warnings"] = self._result_warnings(caught)
        return result

    def _run_unit(self, unit: WorkUnit, context: dict | None = None) -> dict:
        context = dict(context or {})
        started = _dt.datetime.now(_dt.timezone.utc)
        t0 = time.perf_counter()
        rows = unit.rows
        n = len(rows)
        x_hat = naive = x_true = None
        status = ["failed"] * n
        error = None
        metrics: dict[str, list] = {}
        try:
            x_true, y, op, batch_out = self._solve_chunked(unit)
            out, naive = batch_out
            x_hat = out.x
            status = [str(s) for s in out.status]
            metrics = self._row_metrics(x_hat, x_true, naive, out, op, y, context.get("metrics", ROW_METRICS))
        except Exception as exc:  # noqa: BLE001 - a failing solver fails its unit, not the actor
            error = f"{type(exc).__name__}: {exc}"
            tb = traceback.format_exc(limit=-3)
            error = (error + "\n" + tb)[-2000:]
        wall = time.perf_counter() - t0
        out_rows = []
        for i, r in enumerate(rows):
            cfg = unit.configs[r.config_id]
            row = {
                **cfg.store_columns(),
                "run_id": context.get("run_id"), "run_kind": context.get("run_kind", "sweep"),
                "trial_id": context.get("trial_id"), "unit_id": unit.unit_id,
                "sample_id": r.sample_id, "cluster": _data.cluster(cfg.dataset, cfg.split, r.sample_id),
                "row_seed": r.row_seed, "lam": r.lam, "step_size": r.step_size,
                "status": status[i], "error": error, "wall_s": wall / max(n, 1), "worker": self.name,
                "started_at": started, "code_version": context.get("code_version"),
            }
            for k, vals in metrics.items():
                row[k] = vals[i]
            out_rows.append(row)
        images = {}
        if x_hat is not None and context.get("save_images", True) not in (False, "none"):
            from orchestrator.store_images import select_images  # spec save_images (first_k) / image_format (png8)

            images = select_images(self._images(unit, x_hat, naive, x_true), context)
        return {"unit_id": unit.unit_id, "rows": out_rows, "images": images, "wall_s": wall, "worker": self.name}

    def _solve_chunked(self, unit: WorkUnit):
        """``_solve`` in chunks that fit the device under ``compute.max_batch`` (``orchestrator.gpu_batch``);
        with several chunks the measurement returned is the whole unit's (rebuilt: same seeds, same rows)."""
        if not self.fitter.active:
            return self._solve(unit)
        import dataclasses

        from orchestrator.gpu_batch import merge_outputs, signature

        def sub(rows):
            return dataclasses.replace(unit, rows=list(rows))

        parts = self.fitter.run(signature(unit.group), unit.rows, lambda rows: self._solve(sub(rows)),
                                lambda rows: self._solve(sub(rows), num_steps=1))
        if len(parts) == 1:
            return parts[0]
        m = batch_for(unit, None, self.device)[0]
        return m.x_true, m.y, m.operator, (merge_outputs([p[3][0] for p in parts]), m.naive)

    def _solve(self, unit: WorkUnit, num_steps: int | None = None):
        g = unit.group
        from solvers import SOLVERS, precision, solve

        entry = SOLVERS.get(g["solver"])
        # a solver that needs no prior (classical baselines) gets none: nothing is loaded for it
        prior = self.prior(g["prior_space"], g["prior"]) if getattr(entry, "needs_prior", True) else None
        autoencoder = None
        if g["reg_kind"] != "none" and g["mpe_prior"] is not None:
            autoencoder = getattr(self.prior("latent", g["mpe_prior"]), "autoencoder", None)
        m, batch, reg = batch_for(unit, autoencoder, self.device)
        prec = g.get("precision", "fp32")  # compute.precision: networks in autocast, the rest (and metrics) fp32
        if prec != "fp32":
            precision.prepare(prior, autoencoder=autoencoder)  # idempotent: wraps what is not wrapped yet
        with precision.autocast(prec):
            out = solve(g["solver"], prior, batch, int(num_steps or g["num_steps"]), regularizer=reg,
                        options=dict(g["solver_options"]))
        return m.x_true, m.y, m.operator, (out, m.naive)

    def _row_metrics(self, x_hat, x_true, naive, out, op, y, names) -> dict[str, list]:
        import torch

        n = x_hat.shape[0]
        res: dict[str, list] = {}
        with torch.no_grad():
            x = x_hat.detach().to(x_true.device, x_true.dtype)
            finite = torch.isfinite(x.reshape(n, -1)).all(1)
            status = list(getattr(out, "status", None) or ["ok"] * n)
            finite &= torch.tensor([s == "ok" for s in status], device=finite.device)  # diverged: null too
            xs = torch.where(finite.view(-1, 1, 1, 1), x, torch.zeros_like(x))  # diverged rows: metrics null
            self.metrics_for(names)  # the sweep's metrics: one Metrics object, nothing unrequested resolved
            wanted = [n for n in ROW_METRICS if n in names]
            got = self._per_image(xs, x_true, wanted)
            for name, val in got.items():
                vals = _to_list(val, n)
                res[name] = [v if bool(finite[i]) else None for i, v in enumerate(vals)]
            if naive is not None and tuple(naive.shape) == tuple(x_true.shape):
                res["naive_psnr"] = _to_list(self._per_image(naive.clamp(-1, 1), x_true, ["psnr"]).get("psnr"), n)
            extras = getattr(out, "extras", None) or {}
            for key in EXTRA_COLUMNS:  # per-row solver extras that the store keeps
                val = extras.get(key)
                res[key] = _to_list(val, n) if val is not None else [None] * n
        return res

    def _per_image(self, x, ref, names) -> dict:
        """``{name: per-row values}`` via ``Metrics.per_image``."""
        m = self.metrics_for(names)
        names = [k for k in names if k in m.names]
        return m.per_image(x, ref, names=names) if names else {}

    def _images(self, unit: WorkUnit, x_hat, naive, x_true) -> dict:
        def np16(t):
            return t.detach().float().cpu().numpy().astype(np.float16)

        xh, xt = np16(x_hat), np16(x_true)
        nv = np16(naive) if naive is not None and tuple(naive.shape) == tuple(x_true.shape) else None
        out = {"x_hat": {}, "naive": {}, "x_true": {}}
        for i, r in enumerate(unit.rows):
            key = f"{r.config_id}:{r.sample_id}"
            out["x_hat"][key] = xh[i]
            if nv is not None:
                out["naive"][key] = nv[i]
            out["x_true"][str(r.sample_id)] = xt[i]
        return out

    # -- set metrics
    def set_metrics(self, x_hat: np.ndarray, x_true: np.ndarray, names=SET_METRICS) -> dict:
        """``{set column (fid, kid_mean, kid_std, ...), "error"}`` over a config's images (None: not computed), and
        ``warnings`` (as ``run_unit``)."""
        with warnings.catch_warnings(record=True) as caught:
            result = self._set_metrics(x_hat, x_true, names)
        result["warnings"] = self._result_warnings(caught)
        return result

    def _set_metrics(self, x_hat, x_true, names) -> dict:
        import torch

        columns = _metric_registry.columns("set")
        result = {**{c: None for c in columns}, "error": None}
        m = self.metrics_for(names)
        xh = torch.as_tensor(np.asarray(x_hat, dtype=np.float32), device=self.device)
        xt = torch.as_tensor(np.asarray(x_true, dtype=np.float32), device=self.device)
        try:
            got = m.set_metrics(xh, xt) or {}
            for k in columns:
                result[k] = _to_list(got.get(k), 1)[0]
        except Exception as exc:  # noqa: BLE001
            result["error"] = f"{type(exc).__name__}: {exc}"
        return result

    def ping(self) -> str:
        return self.name


#: The Ray actor: restarted when it dies, its calls retried on the restarted process.
Worker = ray.remote(max_restarts=-1, max_task_retries=-1)(WorkerCore)
