"""One Tune experiment per (scheduler variant, cell): searcher, scheduler, resources, progress
lines, and ``run_experiment``, which starts it or restores an unfinished one (``--resume``).

Tune's own state lives in ``OUT/tune/<variant>-<cell>/``; a finished experiment is marked by
``equibench-done.json`` (its trial records), so a resumed search never runs it again.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import ray
from ray import tune

from orchestrator.progress import _fmt_s
from orchestrator.tune.cells import Cell, experiment_name, trial_key
from orchestrator.tune.section import TuneSection
from orchestrator.tune.trainable import TrialJob, run_trial
from orchestrator.tune.values import fmt, now, plain

#: CPU share of one trial: trials only wait on the workers, which hold the real CPU reservations.
TRIAL_CPUS = 0.01
#: Tune's experiment-state save period (s) unless TUNE_GLOBAL_CHECKPOINT_S is set: short, so a
#: driver killed early can still be resumed (the state is a small JSON file).
CHECKPOINT_PERIOD_S = "2"
DONE_FILE = "equibench-done.json"


class TrialClock:
    """Trials finished in the whole search (every experiment) and an ETA for the rest, from the
    time per trial finished in this process (trials overlap, so this is their throughput)."""

    def __init__(self):
        self.start(0)

    def start(self, total: int, done: int = 0) -> None:
        """A search of ``total`` Tune trials, ``done`` of them in experiments finished before."""
        self.total, self.base, self.seen, self.t0 = total, done, 0, time.monotonic()

    def experiment_done(self, n_trials: int) -> None:
        self.base += n_trials

    def trial_done(self, done_in_experiment: int) -> str:
        """``"trial k/N, ETA 1m05s"`` after a trial of the running experiment finished."""
        self.seen += 1
        k = self.base + done_in_experiment
        k = min(k, self.total) if self.total else k
        eta = (time.monotonic() - self.t0) / self.seen * max(self.total - k, 0)
        return f"trial {k}/{self.total or '?'}, ETA {_fmt_s(eta) if self.total else '?'}"


#: The search's trial clock, in the driver's process. Callbacks read it when they fire (not when
#: made): Tune pickles them with an experiment's state, and a restored one must count the same trials.
CLOCK = TrialClock()


def _finished_in(trials, current) -> int:
    """Trials of an experiment already finished, ``current`` included (Tune marks it after the callback)."""
    return len({t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {current.trial_id})


class _ProgressCallback(tune.Callback):
    """One line per reported chunk, per finished trial (how it ended, trial k/N of the search and an
    ETA) and per trial error (Tune's own tables are silenced)."""

    def __init__(self, label: str, n_chunks: int, metric: str, quiet: bool):
        self.label, self.n_chunks, self.metric, self.quiet = label, n_chunks, metric, quiet

    def on_trial_complete(self, iteration, trials, trial, **info):
        progress = CLOCK.trial_done(_finished_in(trials, trial))
        if self.quiet:
            return
        last = trial.last_result or {}
        chunk, status = last.get("chunk"), last.get("status")
        if status not in (None, "ok"):
            how = f"stopped on a {status} row (penalised)"
        elif chunk is not None and chunk < self.n_chunks:
            how = f"stopped early by ASHA after chunk {chunk}/{self.n_chunks}"
        else:
            how = "complete"
        print(f"[{self.label}] {trial.trial_id} done: {self.metric} {fmt(last.get('mean'))}, {how}; {progress}", flush=True)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.quiet:
            return
        params = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(trial.config.items()))
        print(f"[{self.label}] {trial.trial_id} {params}: chunk {result.get('chunk')}/{self.n_chunks}, "
              f"{self.metric} {fmt(result.get('mean'))} ({result.get('status')})", flush=True)

    def on_trial_error(self, iteration, trials, trial, **info):
        if not self.quiet:
            print(f"[{self.label}] {trial.trial_id} raised; see {trial.path}", flush=True)


@contextlib.contextmanager
def tune_env(**values):
    """Set environment variables that are not already set, for the block only."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _searcher(t: TuneSection, n_trials: int, max_concurrent: int):
    """Grid/random: Tune's variant generator (seeded: with one seed, both scheduler variants draw the
    same configurations); optuna: TPE, seeded, ``startup_trials`` random trials first (Optuna's
    default of 10 would leave a 16-trial search mostly random; default here: a quarter, >= 2),
    behind a concurrency limiter."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    if t.searcher == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = t.startup_trials or max(2, n_trials // 4)
        search = OptunaSearch(sampler=optuna.samplers.TPESampler(seed=t.seed, n_startup_trials=startup))
        return ConcurrencyLimiter(search, max_concurrent=max_concurrent)
    return BasicVariantGenerator(random_state=t.seed, max_concurrent=max_concurrent)


def _scheduler(kind: str, t: TuneSection, n_chunks: int):
    if kind == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=n_chunks, grace_period=t.scheduler.grace_period,
                         reduction_factor=t.scheduler.reduction_factor)


def _trial_resources():
    """A tiny CPU share, pinned to the driver's node when Ray exposes it: trials only wait on the
    dispatcher (they never open the store), but Tune keeps their state in the driver's ``OUT/tune``."""
    bundle: dict[str, float] = {"CPU": TRIAL_CPUS}
    node = f"node:{ray.util.get_node_ip_address()}"
    if node in ray.cluster_resources():
        bundle[node] = 0.001
    return tune.PlacementGroupFactory([bundle])


def _trial_records(results) -> list[dict]:
    """One record per trial of a finished experiment: ids, sampled config, last report, error."""
    out = []
    for r in results:
        m = dict(r.metrics or {})
        tid = m.get("trial_id")
        if tid is None and r.path:
            found = re.search(r"([0-9a-f]{5}_\d{5})", Path(r.path).name)
            tid = found.group(1) if found else None
        out.append({
            "tune_trial_id": tid, "trial_key": m.get("trial_key"), "config": {k: plain(v) for k, v in (r.config or {}).items()},
            "objective": m.get("objective"), "mean": m.get("mean"), "images": m.get("images"),
            "status": m.get("status"), "error": None if r.error is None else f"{type(r.error).__name__}: {r.error}"[:500],
        })
    return out


def _new_tuner(ts, cell: Cell, variant: str, trainable, exp_dir: Path, max_concurrent: int, quiet: bool):
    n_trials = cell.n_trials(ts.tune)
    return tune.Tuner(
        trainable,
        param_space={k: p.domain(ts.tune.searcher) for k, p in cell.params.items()},
        tune_config=tune.TuneConfig(
            metric="objective", mode=ts.mode, search_alg=_searcher(ts.tune, n_trials, max_concurrent),
            scheduler=_scheduler(variant, ts.tune, len(ts.chunks)),
            num_samples=1 if ts.tune.searcher == "grid" else n_trials,
            reuse_actors=True),  # trial processes are light but slow to start: keep them
        run_config=tune.RunConfig(
            name=exp_dir.name, storage_path=str(exp_dir.parent), verbose=0,
            failure_config=tune.FailureConfig(max_failures=2),
            callbacks=[_ProgressCallback(exp_dir.name, len(ts.chunks), ts.metric, quiet)]),
    )


def run_experiment(ts, cell: Cell, variant: str, job: TrialJob, tune_dir: Path, resume: bool,
                   max_concurrent: int, quiet: bool) -> list[dict]:
    """Run (or restore and finish) one cell's Tune experiment; returns its trial records."""
    exp_dir = tune_dir / experiment_name(variant, cell)
    done = exp_dir / DONE_FILE
    if done.exists():
        trials = json.loads(done.read_text())["trials"]
        CLOCK.experiment_done(len(trials))
        return trials
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), _trial_resources())
    if resume and tune.Tuner.can_restore(str(exp_dir)):
        if not quiet:
            print(f"[{exp_dir.name}] resuming the search stored in {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        if exp_dir.exists():  # started but never saved a restorable state: start it over
            shutil.rmtree(exp_dir)
        tuner = _new_tuner(ts, cell, variant, trainable, exp_dir, max_concurrent, quiet)
    trials = _trial_records(tuner.fit())
    CLOCK.experiment_done(len(trials))
    for rec in trials:
        if rec["trial_key"] is None and rec["tune_trial_id"]:
            rec["trial_key"] = trial_key(variant, cell.slug, rec["tune_trial_id"])
    payload = json.dumps({"experiment": exp_dir.name, "cell": cell.label, "variant": variant,
                          "finished_at": now(), "trials": trials}, indent=2, default=str)
    tmp = done.with_name(f".tmp-{done.name}")
    tmp.write_text(payload)
    os.replace(tmp, done)
    return trials
