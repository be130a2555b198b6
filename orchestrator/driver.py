"""The driver: spec -> grid -> plan -> actors -> store, resumable, with progress.

1. Expand the grid and drop every (config, sample) already stored with status ok (resume).
2. Plan the rest into WorkUnits (lambda-grid batches of <= batch_size rows).
3. Start N ``Worker`` actors (fractional CPUs/GPUs from the spec); a ``scheduler.Scheduler`` keeps
   each fed with up to ``inflight_per_actor`` calls and hands back the ones that finished.
4. The driver is the single writer: each finished unit's rows go to its own Parquet file
   (atomic, deterministic name), images to an npz; then progress is updated.
5. When all rows of a config have been attempted, its set metrics (FID/KID) are computed on an
   actor (null when the Inception weights are absent) and written to ``sets``.

Failures: a call whose actor died (killed, node lost) is rerun on a live actor while Ray restarts
the dead one; a unit whose call raises (a bug outside the solver) is retried up to ``max_attempts``
times, then its rows are stored as ``failed`` with the error; a solver exception is already a
``failed`` unit result.
"""
from __future__ import annotations

import datetime as _dt
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import grid as _grid
from orchestrator import guards as _guards
from orchestrator import plan as _plan
from orchestrator import plugins as _plugins
from orchestrator import posterior_sets as _posterior
from orchestrator import run_identity as _identity
from orchestrator import set_rows as _sets
from orchestrator import store
from orchestrator.cluster import (REPO_ROOT, actor_died, auto_actors, code_version, ensure_ray, local_resources,  # noqa: F401
                                  reissue_warnings, start_actors)
from orchestrator.progress import Progress
from orchestrator.scheduler import CallKind, Done, NoLiveActor, Scheduler
from orchestrator.spec import SET_METRICS, SweepSpec


@dataclass
class SweepResult:
    run_id: str
    total_rows: int
    skipped_rows: int  # already stored ok before this run
    units: int = 0
    units_done: int = 0
    rows_ok: int = 0
    rows_failed: int = 0
    rows_diverged: int = 0
    retries: int = 0
    sets_written: int = 0
    wall_s: float = 0.0
    stopped_early: bool = False
    errors: list = field(default_factory=list)

    @property
    def computed_nothing(self) -> bool:
        return self.units == 0 and self.sets_written == 0


class _Sweep:
    """State of one driver run (kept in one place so ``run_sweep`` reads top to bottom)."""

    def __init__(self, spec: SweepSpec, store_dir, progress: Progress, context: dict, max_attempts: int,
                 retry: dict | None = None):
        self.spec, self.store_dir = spec, Path(store_dir)
        self.progress, self.context, self.max_attempts = progress, context, max_attempts
        self.attempts: dict[str, int] = defaultdict(int)
        self.retry = dict(retry or {})  # old unit file -> diverged keys a retried unit replaces

    def expect(self, by_id: dict, pending: dict, want_sets: list, n_samples: int, stop_after_units: int | None,
               posterior: _posterior.PosteriorSets | None = None):
        """What the run owes: the configs (``by_id``), rows pending per config (set metrics are due
        when they reach 0), the set metrics wanted, the grid's sample count, and the posterior sets
        (``posterior_sets``: per config and measurement, written as their last row is stored)."""
        self.by_id, self.pending, self.want_sets, self.posterior = by_id, pending, want_sets, posterior
        self.n_samples, self.stop_after_units = n_samples, stop_after_units

    def run(self, sched: Scheduler, units: list, sets_todo: list, result: SweepResult) -> None:
        """Feed ``sched`` until every unit and owed set metric is stored (or ``stop_after_units``)."""
        self.sched, self.result, self.queue = sched, result, deque(units)
        self.seen_warnings: set = set()  # the workers' warnings already printed (cluster.reissue_warnings)
        for cid in sets_todo:
            self.submit_sets(cid)
        if self.posterior is not None:  # posterior sets whose rows a previous run stored
            result.sets_written += self.posterior.write_ready()
        self.submit_units()
        while self.queue or sched.busy:
            for done in sched.wait(timeout=1.0):
                if done.call.kind is CallKind.SETS:
                    self.on_sets(done)
                elif self.on_unit(done):
                    return
            self.progress.tick()
            self.submit_units()

    def submit_units(self) -> None:
        while self.queue and self.sched.has_room():
            unit = self.queue.popleft()
            self.attempts[unit.unit_id] += 1
            self.sched.submit(CallKind.UNIT, unit, "run_unit", unit, self.context)

    def submit_sets(self, cid: str) -> None:
        xh, xt = _sets.config_images(self.store_dir, self.spec.name, cid)
        if xh is not None:
            self.sched.submit(CallKind.SETS, (cid, len(xh)), "set_metrics", xh, xt, self.want_sets, limit=False)

    def on_sets(self, done: Done) -> None:
        cid, n = done.call.payload
        if done.actor_died:
            actor_died(done.error, self.seen_warnings)
            self.submit_sets(cid)
            return
        got = {"error": f"{type(done.error).__name__}: {done.error}"} if done.error else done.value
        reissue_warnings(got.pop("warnings", None), self.seen_warnings)
        store.write_sets(self.store_dir, self.spec.name, cid,
                         [_sets.set_row(self.spec, self.by_id[cid], n, got, self.context, n == self.n_samples)],
                         grid_hash=self.context.get("grid_hash"))
        self.result.sets_written += 1

    def on_unit(self, done: Done) -> bool:
        """Store a finished unit (or requeue it); True when the run stops here (``stop_after_units``)."""
        unit, result, progress = done.call.payload, self.result, self.progress
        if done.actor_died:  # the actor died (node lost, killed): not the unit's fault, rerun it elsewhere
            actor_died(done.error, self.seen_warnings)
            self.attempts[unit.unit_id] -= 1
            self.queue.appendleft(unit)
            return False
        if done.error is not None:  # the worker raised outside the solver (a bug, a lost object)
            exc = done.error
            if self.attempts[unit.unit_id] < self.max_attempts:
                result.retries += 1
                progress.retries += 1
                progress.log(f"[{self.spec.name}] unit {unit.unit_id} raised ({type(exc).__name__}); retrying")
                self.queue.appendleft(unit)
                return False
            res = self.failed_result(unit, f"{type(exc).__name__}: {exc}")
            result.errors.append((unit.unit_id, str(exc)[-500:]))
        else:
            res = done.value
            reissue_warnings(res.pop("warnings", None), self.seen_warnings)  # each distinct one once per sweep
        ok, failed, diverged = self.store_unit(unit, res)
        if self.posterior is not None:
            result.sets_written += self.posterior.unit_stored(unit, res["rows"])
        result.units_done += 1
        result.rows_ok += ok
        result.rows_failed += failed
        result.rows_diverged += diverged
        if failed:
            err = next((r.get("error") for r in res["rows"] if r.get("error")), "")
            progress.log(f"[{self.spec.name}] unit {unit.unit_id}: {failed} row(s) failed: "
                         f"{str(err).splitlines()[0] if err else ''}")
        progress.unit_done(len(res["rows"]), failed, diverged)
        if self.stop_after_units is not None and result.units_done >= self.stop_after_units:
            result.stopped_early = True
            return True
        for r in unit.rows:
            self.pending[r.config_id] -= 1
            if self.want_sets and self.pending[r.config_id] == 0:
                self.submit_sets(r.config_id)
        return False

    def store_unit(self, unit: _plan.WorkUnit, result: dict) -> tuple[int, int, int]:
        rows = result["rows"]
        path = store.write_unit(self.store_dir, self.spec.name, unit.unit_id, rows, grid_hash=self.context.get("grid_hash"))
        if self.retry:  # --retry-diverged: the new rows replace the old ones, never doubling them
            keys = {(r.config_id, r.sample_id) for r in unit.rows}
            for old, old_keys in list(self.retry.items()):
                if old != path and old_keys & keys:
                    store.drop_rows(old, old_keys & keys)
                    self.retry[old] = old_keys - keys
        if result.get("images"):
            store.save_images(self.store_dir, self.spec.name, unit.unit_id, result["images"])
        ok = sum(r["status"] == "ok" for r in rows)
        failed = sum(r["status"] == "failed" for r in rows)
        return ok, failed, sum(r["status"] == "diverged" for r in rows)

    def failed_result(self, unit: _plan.WorkUnit, error: str) -> dict:
        """Rows marking every row of ``unit`` failed (a unit that kept raising outside the solver)."""
        now = _dt.datetime.now(_dt.timezone.utc)
        rows = []
        for r in unit.rows:
            cfg = unit.configs[r.config_id]
            rows.append({**cfg.store_columns(), "run_id": self.spec.name, "run_kind": self.context.get("run_kind", "sweep"),
                         "trial_id": self.context.get("trial_id"), "unit_id": unit.unit_id, "sample_id": r.sample_id,
                         "row_seed": r.row_seed, "lam": r.lam, "step_size": r.step_size, "status": "failed",
                         "error": error[-2000:], "started_at": now, "code_version": self.context.get("code_version")})
        return {"rows": rows, "images": {}}


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: what was stored stays stored, a rerun resumes exactly."""

    def __init__(self, run_id: str, rows_stored: int, rows_total_ok: int, total: int):
        super().__init__(f"interrupted: {rows_stored} rows stored by this run ({rows_total_ok} of {total} in the store "
                         f"for run {run_id!r}); rerun the same command to resume")
        self.run_id, self.rows_stored, self.rows_total_ok, self.total = run_id, rows_stored, rows_total_ok, total


def run_sweep(spec: SweepSpec, store_dir, *, address: str | None = None, num_actors: int | None = None,
              progress: Progress | None = None, quiet: bool = False, inflight_per_actor: int = 2, max_attempts: int = 3, stop_after_units: int | None = None,
              context: dict | None = None, actors: list | None = None, actor_wait_s: float = 600.0,
              force: bool = False, extend: bool = False, retry_diverged: bool = False,
              compact: bool | None = None) -> SweepResult:
    """Run (or resume) ``spec`` into ``store_dir``; see the module docstring.

    ``stop_after_units`` stops the driver after storing that many units, as if it had been killed
    (a test hook for resume). ``context`` adds run_kind/trial_id (Tune trials use the same path).
    ``actors``: existing ``Worker`` handles to use (and leave running), e.g. shared by Tune trials
    or a test module, so their resident models are reused across sweeps. ``force`` skips the grid
    size and resource guards; ``extend`` lets the run name take another grid; ``retry_diverged``
    recomputes stored diverged rows, replacing them. Ctrl-C raises ``SweepInterrupted``.
    Nothing is written before every check has passed, and nothing at all when there is nothing to do.
    A finished run is compacted (``store.compact_after_sweep``; ``compact`` defaults to ``spec.compact``).
    """
    t0 = time.perf_counter()
    progress_box: list = []
    try:
        return store.compact_after_sweep(spec, store_dir, _run_sweep(
                          spec, store_dir, t0, progress_box, address=address, num_actors=num_actors,
                          progress=progress, quiet=quiet, inflight_per_actor=inflight_per_actor,
                          max_attempts=max_attempts, stop_after_units=stop_after_units, context=context, actors=actors,
                          actor_wait_s=actor_wait_s, force=force, extend=extend, retry_diverged=retry_diverged), compact)
    except KeyboardInterrupt as exc:
        if isinstance(exc, SweepInterrupted):
            raise
        done = len(store.completed_keys(store_dir, spec.name)) if Path(store_dir).is_dir() else 0
        total = progress_box[0] if progress_box else 0
        rows = progress_box[1].rows if len(progress_box) > 1 else 0
        raise SweepInterrupted(spec.name, rows, done, total) from None


@dataclass
class _Todo:
    """What a run owes, computed before anything is written: the grid, its identity, the units
    still to run (stored ok/diverged rows skipped), the diverged rows being recomputed, and the
    configs whose set metrics are owed (``pending`` rows count down as units come back)."""

    configs: list
    samples: list
    grid_hash: str
    record: dict | None
    accepted: list
    context: dict
    units: list
    skipped: int
    retry: dict
    pending: dict
    want_sets: list
    sets_todo: list

    @property
    def total(self) -> int:
        return len(self.configs) * len(self.samples)

    @property
    def by_id(self) -> dict:
        return {c.config_id: c for c in self.configs}

    def register(self, spec: SweepSpec, store_dir) -> None:
        store.register_run(store_dir, spec.name, spec.canonical(), self.total, n_configs=len(self.configs),
                           n_samples=len(self.samples), grid_hash=self.grid_hash, grid_hashes=self.accepted)


def _todo(spec, store_dir, context, extend: bool, retry_diverged: bool) -> _Todo:
    run_id, have_store = spec.name, Path(store_dir).is_dir()
    configs = _grid.expand(spec)
    samples = _grid.sample_ids(spec)
    ghash = _identity.grid_hash([c.config_id for c in configs], samples)
    record = store.read_run(store_dir, run_id) if have_store else None
    accepted = _identity.check(record, run_id, store_dir, ghash, len(configs), len(samples), extend=extend)
    context = {"run_id": run_id, "run_kind": "sweep", "code_version": code_version(),
               **store.image_context(spec, samples),  # save_images / image_samples / image_format for the worker
               "metrics": list(spec.metrics), "grid_hash": ghash, **(context or {})}
    grid = {(c.config_id, s) for c in configs for s in samples}
    statuses = ("ok",) if retry_diverged else ("ok", "diverged")
    done = store.completed_keys(store_dir, run_id, context.get("trial_id"), statuses=statuses) & grid
    retry = {}  # unit file -> its diverged keys being recomputed (dropped from it once replaced)
    if retry_diverged and have_store:
        retry = {f: k & grid for f, k in store.files_with_keys(store_dir, run_id, "diverged").items()}
        done -= {k for keys in retry.values() for k in keys}
    units = _plan.plan(configs, samples, spec.unit_rows, done)  # batch_size, or more with compute.max_batch
    want_sets = [m for m in spec.metrics if m in SET_METRICS]
    pending = defaultdict(int)
    for u in units:
        for r in u.rows:
            pending[r.config_id] += 1
    sets_todo: list[str] = []
    if want_sets and have_store:
        have_sets = set(store.load_sets(store_dir, run=run_id, columns=["config_id"])["config_id"])
        sets_todo = [c.config_id for c in configs if pending[c.config_id] == 0 and c.config_id not in have_sets]
    return _Todo(configs, samples, ghash, record, accepted, context, units, len(done), retry, pending,
                 want_sets, sets_todo)


def _start_actors(spec, store_dir, todo: _Todo, address, num_actors, force: bool) -> tuple[list, bool]:
    """Start Ray (unless running) and ``n`` actors once the resource guards pass; registers the run.
    Returns the actors and whether Ray was started here (to shut it down after)."""
    import ray

    n_req = num_actors or spec.resources.num_actors
    if not force and address in (None, "local") and not ray.is_initialized():
        # the local Ray to start gets this machine's resources: a request it cannot place is refused
        # now, before the store is touched or Ray starts (minutes on a loaded machine); re-checked once it runs
        _guards.check_resources(spec, local_resources(), n_req)
    store.check_writable(store_dir)
    started_ray = ensure_ray(address)
    if not force:  # before any actor starts: an actor that cannot be placed waits forever
        try:
            _guards.check_resources(spec, ray.cluster_resources(), n_req)
        except _guards.GuardError:
            if started_ray:
                ray.shutdown()
            raise
    todo.register(spec, store_dir)
    n_units = max(len(todo.units), 1)
    n_actors = max(1, min(n_req or auto_actors(spec, n_units), n_units))
    return start_actors(spec, n_actors), started_ray


def _run_sweep(spec, store_dir, t0, progress_box, *, address, num_actors, progress, quiet,
               inflight_per_actor, max_attempts, stop_after_units, context, actors, actor_wait_s,
               force, extend, retry_diverged) -> SweepResult:
    run_id = spec.name
    _plugins.load_requested(spec.plugins)  # a spec built in this process may not have imported them
    _guards.check_grid_size(spec, force=force)
    _guards.check_address(address)
    todo = _todo(spec, store_dir, context, extend, retry_diverged)
    units, total, context = todo.units, todo.total, todo.context
    progress_box.append(total)
    result = SweepResult(run_id, total, todo.skipped, units=len(units))
    progress = progress or Progress(run_id, len(units), sum(u.size for u in units), todo.skipped, quiet=quiet)
    progress_box.append(progress)
    posterior = _posterior.PosteriorSets(spec, store_dir, todo.configs, todo.samples, units, context, todo.grid_hash)
    if not units and not todo.sets_todo:
        if todo.record is None or todo.accepted != todo.record.get("grid_hashes"):  # identity to record, no rows
            store.check_writable(store_dir)
            todo.register(spec, store_dir)
        if posterior.todo:  # posterior sets owed over rows already stored: computed here, no actor needed
            store.check_writable(store_dir)
            result.sets_written += posterior.write_ready()
            progress.log(f"[{run_id}] {result.sets_written} posterior set row(s) computed from stored rows")
        progress.log(f"[{run_id}] nothing to compute: all {total} rows already stored in {store_dir}")
        result.wall_s = time.perf_counter() - t0
        return result

    import ray

    own_actors, started_ray = actors is None, False
    if own_actors:
        actors, started_ray = _start_actors(spec, store_dir, todo, address, num_actors, force)
    else:
        store.check_writable(store_dir)
        started_ray = ensure_ray(address)
        todo.register(spec, store_dir)
    sweep = _Sweep(spec, store_dir, progress, context, max_attempts, todo.retry)
    sweep.expect(todo.by_id, todo.pending, todo.want_sets, len(todo.samples), stop_after_units, posterior)
    sched = Scheduler(actors, inflight_per_actor=inflight_per_actor, actor_wait_s=actor_wait_s)
    progress.start()
    progress.log(f"[{run_id}] {len(units)} units on {len(actors)} actor(s); {todo.skipped}/{total} rows already stored")
    try:
        sweep.run(sched, units, todo.sets_todo, result)
    except NoLiveActor as exc:
        raise RuntimeError(f"[{run_id}] {exc}; {len(sweep.queue)} unit(s) not run; rerun to resume") from None
    finally:
        progress.close()
        if own_actors:
            for a in actors:
                try:
                    ray.kill(a, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
        if started_ray:
            ray.shutdown()
        result.wall_s = time.perf_counter() - t0
    progress.log(f"[{run_id}] done: {result.rows_ok} ok, {result.rows_diverged} diverged, {result.rows_failed} failed"
                 f" rows in {result.wall_s:.1f}s ({result.units_done} units, {result.sets_written} set-metric rows)")
    return result
