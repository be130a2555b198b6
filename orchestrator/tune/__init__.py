"""Hyperparameter search: Ray Tune over lambda, step sizes and solver options, on resident workers.

``equibench tune SPEC.yaml`` reads an ordinary sweep spec plus a ``tune:`` section and answers one
question per *cell*: which hyperparameters give the best objective for this (solver, regularizer,
task)?

How a search runs
-----------------
1. **Spec** (``section``, ``check``, ``tunespec``). The ``tune:`` section is validated on its own
   and against the sweep spec; every problem of both is reported at once, before Ray starts. The
   tuning images default to the tune split the dataset pairs with the sweep's report split; a
   subset sharing content with the report images is refused.
2. **Cells** (``cells``). The spec's solvers x regularizers x tasks (optionally filtered by
   ``tune.pairs``). Each cell is its own Tune experiment; a cell left with nothing to search (the
   usual baseline) is evaluated once, without Tune (trial id ``fixed.<cell>``).
3. **Workers** (``pool``). The driver starts the sweep's ``Worker`` actors (models loaded once per
   actor), the search's one writer (``trial_store.TrialWriter``, on the driver's node) and one
   named ``Dispatcher`` actor that hands each work unit to whichever worker is free. Trials look
   the dispatcher up by name; they never load a model, so a 50-trial search costs one model load
   per worker, exactly like a sweep.
4. **Trials** (``trainable``, ``experiments``). A trial is one configuration evaluated on the
   tuning images in chunks of ``chunk_size``; after each chunk it reports the running mean of the
   objective so ASHA can stop it early. A trial with a diverged or failed row reports a penalty
   (``PENALTY``, signed against the objective's direction) and stops: it cannot be the best.
5. **Store** (``trial_store``). The driver's single-writer rule holds for searches: every unit's
   rows are stored by the one writer, which the dispatcher calls before it returns the rows to the
   trial (or to the driver, for fixed cells); trial processes never open the store. Rows go under
   the spec's name with ``run_kind="tune"`` and ``trial_id="<variant>.<cell>.<tune trial id>"``,
   one file per unit named ``unit-<trial_id>.<unit>.parquet``: trials with identical
   configurations (the same lambda in two scheduler variants) never overwrite each other, and a
   search is queried like any sweep. Stored rows are read back only through ``store``'s verified
   readers.
6. **Resume** (``search``, ``experiments``). Tune's own state lives in ``OUT/tune/<variant>-<cell>/``.
   ``--resume`` restores each unfinished experiment with ``Tuner.restore`` (finished ones are
   marked by ``equibench-done.json``), and a restarted trial reads back the rows it already stored
   instead of computing them again. ``OUT/tune/search.json`` holds the spec's fingerprint, so a
   changed spec is refused instead of being mixed into an old search.
7. **Results** (``analysis``, ``writers``, ``plots``), in ``OUT``, always computed from the store
   rows of the search's own trials: ``best-config.yaml`` (the best complete trial per cell, as
   sweep-spec fragments), ``lambda-sensitivity.png/.pdf``, ``trials.csv``, ``summary.json`` and
   ``summary.md``, including the number of image-evaluations per scheduler variant
   (``compare_schedulers`` runs the same search with and without ASHA, with the same searcher
   seed, to measure ASHA's saving).

Only trials that evaluated *every* tuning image can be the best: an ASHA-stopped trial's running
mean covers fewer images and is not comparable.

Modules, each importing only those above it: ``values``, ``section``, ``check``, ``tunespec``,
``cells``, ``trial_store``, ``pool``, ``trainable``, ``experiments``, ``analysis``, ``plots``,
``writers``, ``search``.
"""
from __future__ import annotations

from orchestrator.tune.analysis import EDGE_FRACTION, analyse, cell_flags, cell_info
from orchestrator.tune.cells import Cell, baseline_cell, experiment_name, fixed_key, make_cells, trial_key
from orchestrator.tune.check import check, tune_split
from orchestrator.tune.experiments import CHECKPOINT_PERIOD_S, DONE_FILE, TRIAL_CPUS, run_experiment
from orchestrator.tune.plots import plot_sensitivity
from orchestrator.tune.pool import NAMESPACE, Dispatcher, WorkerPool
from orchestrator.tune.search import TuneResult, run_search
from orchestrator.tune.section import (
    OBJECTIVE_METRICS, SPACE_KEYS, ImagesSpec, ObjectiveSpec, PairSpec, ParamSpec, SchedulerSpec, TuneSection,
)
from orchestrator.tune.trainable import PENALTY, TrialJob, penalty, rows_status, run_trial, run_units, trial_units
from orchestrator.tune.trial_store import TrialWriter, start_writer, stored_trial_rows
from orchestrator.tune.tunespec import TuneSpec, load
from orchestrator.tune.writers import best_config_document, summary_markdown, sweep_fragment, trials_frame, write_outputs

__all__ = [
    "TuneSection", "TuneSpec", "ParamSpec", "ObjectiveSpec", "SchedulerSpec", "ImagesSpec", "PairSpec", "Cell",
    "Dispatcher", "WorkerPool", "TrialWriter", "TrialJob", "TuneResult", "load", "check", "tune_split", "make_cells",
    "baseline_cell", "experiment_name", "trial_key", "fixed_key", "run_search", "run_experiment", "run_trial",
    "run_units", "trial_units", "rows_status", "penalty", "start_writer", "stored_trial_rows", "analyse",
    "cell_flags", "cell_info", "best_config_document", "sweep_fragment", "summary_markdown", "trials_frame",
    "write_outputs", "plot_sensitivity", "OBJECTIVE_METRICS", "SPACE_KEYS", "PENALTY", "NAMESPACE", "DONE_FILE",
    "TRIAL_CPUS", "CHECKPOINT_PERIOD_S", "EDGE_FRACTION",
]
