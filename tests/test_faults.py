"""Fault harness (issue 7): break a sweep every way a night can break it, then prove nothing is lost.

Every scenario runs the real driver, real Ray actors and the real store with the fake science plugin
``tests.support.fakes`` (a microsecond solver with crash/raise/NaN/sleep/log hooks), and ends
with the same invariant, checked on the store's files read one by one (not only through the
deduplicating readers): the (config_id, sample_id) keys stored with status ``ok`` are exactly the
grid (minus rows that legitimately diverged), with no key stored twice.

Scenarios: an actor killed at every 10th unit; the CLI driver SIGKILLed mid-sweep and resumed
(only the missing rows run); a 2-node ``ray.cluster_utils.Cluster`` that loses a node mid-sweep;
a unit that raises (inside the solver and in the worker outside it), then a rerun once the fault is
gone; NaN rows; truncated Parquet files; two CLI drivers writing one store at once; and the
bad-spec corpus (``tests/bad_specs/``), validated through the CLI in a process where loading a
model or starting Ray fails loudly.

Ray is started once per test class (``ray.init(num_cpus=2)``, actors with fractional CPUs); the
cluster class starts its own cluster after the local session is shut down. CLI drivers connect
to the class's Ray with ``--address`` instead of starting their own (a Ray start costs seconds on
2 cores). ``tests/test_faults_fast.py`` runs a small subset of these scenarios in the default suite.

A behaviour the harness found (a rerun of a finished sweep re-ran and re-stored its diverged rows)
is fixed: diverged rows are results on resume (``run --retry-diverged`` recomputes them). The node-loss hang it also found (a node lost with no spare capacity) is fixed in the
driver: lost actors' units are re-queued to the survivors.
"""
from __future__ import annotations


import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")


from orchestrator import driver, spec as spec_mod, store
from orchestrator.worker import WorkerCore

pytestmark = [pytest.mark.faults, pytest.mark.ray]

from tests.support.faults import (
    FAKE, Hook, RAY_KW, REPO, STALL_S, alive, assert_grid_exact, check_bad_spec_corpus, child_env,
    cli, driver_process, grid_keys, is_ray_worker, keys_where, logged_pids, logged_rows, make_spec,
    raw_rows, retry_start, scenario_actor_kills, scenario_nan_rows,
    scenario_solver_raises_then_rerun, scenario_truncated_parquet, start_local_ray, start_pool,
    sweep, unit_files, wait_until, write_spec,
)


@pytest.fixture(scope="class")
def local_ray():
    started = not ray.is_initialized()
    if started:
        start_local_ray()
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


@pytest.fixture(scope="class")
def pool(local_ray):
    """Two fake-plugin actors (0.25 CPU each) shared by the class's in-process sweeps."""
    return start_pool(2)


class FlakyCore(WorkerCore):
    """A worker whose ``run_unit`` raises *outside* the solver (so ``ray.get`` raises in the driver
    and its retry path runs) while ``fault_dir/always`` exists, or once per unit with ``fault_dir/once``."""

    def __init__(self, fault_dir: str, **kw):
        super().__init__(**kw)
        self.fault_dir = Path(fault_dir)

    def run_unit(self, unit, context=None):
        seen = self.fault_dir / f"seen-{unit.unit_id}"
        if (self.fault_dir / "always").exists() or ((self.fault_dir / "once").exists() and not seen.exists()):
            seen.touch()
            raise RuntimeError(f"injected worker fault in unit {unit.unit_id}")
        return super().run_unit(unit, context)


Flaky = ray.remote(max_restarts=-1, max_task_retries=-1)(FlakyCore)


@pytest.mark.timeout(900)
class TestLocalRay:
    def test_bad_spec_corpus_fails_before_any_model(self, tmp_path):
        check_bad_spec_corpus(tmp_path)

    def test_actor_killed_every_10th_unit(self, tmp_path, pool):
        logs = tmp_path / "logs"
        logs.mkdir()
        stats = scenario_actor_kills(tmp_path / "store", logs, pool, count=14)
        assert len(stats["kills"]) == 4

    def test_unit_raises_in_solver_then_rerun_ok(self, tmp_path, pool):
        scenario_solver_raises_then_rerun(tmp_path / "store", tmp_path, pool)

    def test_unit_raises_in_worker_retried_then_failed_then_rerun_ok(self, tmp_path, local_ray):
        """4b. ``run_unit`` raising outside the solver: the driver retries a unit (a transient fault
        costs one retry per unit, rows ok); a persistent fault stores the rows failed with the error
        after ``max_attempts``; a rerun once the fault is gone stores them ok, each key once."""
        faults = tmp_path / "faults"
        faults.mkdir()
        actor = Flaky.options(num_cpus=0.25).remote(fault_dir=str(faults), plugins=[FAKE], name="flaky")
        try:
            (faults / "once").touch()
            spec = make_spec("flaky", count=2, batch_size=2)
            n_units = 3
            res = sweep(spec, tmp_path / "store", actors=[actor])
            assert (res.retries, res.rows_ok, res.rows_failed) == (n_units, 6, 0)
            assert_grid_exact(tmp_path / "store", spec)
            (faults / "once").unlink()
            (faults / "always").touch()
            spec = make_spec("broken", count=2, batch_size=2)
            res = sweep(spec, tmp_path / "store", actors=[actor], max_attempts=2)
            assert (res.rows_ok, res.rows_failed, res.retries, len(res.errors)) == (0, 6, n_units, n_units)
            raw, _ = raw_rows(tmp_path / "store", "broken")
            assert (raw["status"] == "failed").all() and raw["error"].str.contains("injected worker fault").all()
            assert store.completed_keys(tmp_path / "store", "broken") == set()
            (faults / "always").unlink()
            res = sweep(spec, tmp_path / "store", actors=[actor])
            assert (res.rows_ok, res.rows_failed, res.retries) == (6, 0, 0)
            assert_grid_exact(tmp_path / "store", spec)
        finally:
            ray.kill(actor, no_restart=True)

    def test_nan_rows_diverged_others_ok(self, tmp_path, pool):
        scenario_nan_rows(tmp_path / "store", pool)

    def test_rerun_of_finished_sweep_with_diverged_rows_computes_nothing(self, tmp_path, pool):
        spec = make_spec("nanrerun", batch_size=8, options={"nan_above": 0.15})
        bad = keys_where(spec, lambda c: c.lam > 0.15)
        sweep(spec, tmp_path, actors=pool)
        again = sweep(spec, tmp_path, actors=pool)
        raw, _ = raw_rows(tmp_path, spec.name)
        dup = sum(n - 1 for n in Counter(zip(raw["config_id"], raw["sample_id"])).values())
        assert (again.computed_nothing, dup) == (True, 0), (
            f"rerun computed {again.units} unit(s) ({again.rows_diverged} diverged rows again); {dup} duplicate rows stored")
        assert_grid_exact(tmp_path, spec, diverged=bad)

    def test_truncated_parquet_detected_ignored_recomputed(self, tmp_path, pool):
        logs = tmp_path / "logs"
        logs.mkdir()
        scenario_truncated_parquet(tmp_path / "store", logs, pool)

    def test_cli_driver_sigkilled_then_resumed_runs_only_missing(self, tmp_path, local_ray):
        """2. ``equibench run`` (a real CLI process on the shared Ray) SIGKILLed after 2 of 9 units are
        stored: its actors die with it; the same command resumes and computes only the missing rows."""
        logs = tmp_path / "logs"
        logs.mkdir()
        spec_file = write_spec(tmp_path / "spec.yaml", "killed", count=6, batch_size=2, num_actors=1,
                               options={"sleep": 0.5, "log_dir": str(logs)})
        spec = spec_mod.parse(spec_file)
        store_dir = tmp_path / "store"
        cmd = cli(spec_file, store_dir, local_ray)
        with driver_process(cmd, tmp_path / "first.log") as proc:
            wait_until(lambda: len(unit_files(store_dir, "killed")) >= 2 or proc.poll() is not None, 180,
                       "two stored units")
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        doomed = logged_pids(logs)
        assert doomed
        try:  # the driver owned its actors: Ray must end them, not leave them computing
            wait_until(lambda: not any(alive(p) for p in doomed), 60, "the killed driver's actors to exit")
        finally:
            for p in doomed:
                if alive(p) and is_ray_worker(p):
                    os.kill(p, signal.SIGKILL)
        done_before = len(store.completed_keys(store_dir, "killed"))
        total = len(grid_keys(spec))
        assert 0 < done_before < total
        for f in logs.glob("*"):
            f.unlink()
        out = subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{done_before} were already stored" in out.stdout, out.stdout
        assert logged_rows(logs) == total - done_before  # only the missing rows ran
        assert_grid_exact(store_dir, spec)
        assert driver.run_sweep(spec, store_dir, quiet=True).computed_nothing

    def test_two_cli_drivers_share_one_store(self, tmp_path, local_ray):
        """7. Two ``equibench run`` processes with different run names (the same grid, so the same
        unit ids) write one store at the same time: both complete, each run's rows are exactly its
        grid, and the store holds nothing unreadable and no leftover temp files."""
        store_dir = tmp_path / "store"
        names = ("alpha", "beta")
        specs, procs = {}, {}
        files = {n: write_spec(tmp_path / f"{n}.yaml", n, count=8, batch_size=2, num_actors=1, options={"sleep": 0.4})
                 for n in names}
        try:
            for n in names:
                procs[n] = subprocess.Popen(cli(files[n], store_dir, local_ray), cwd=REPO, env=child_env(), stdout=subprocess.PIPE,
                                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
            outs = {n: procs[n].communicate(timeout=300)[0] for n in names}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        for n in names:
            assert procs[n].returncode == 0, outs[n][-3000:]
            specs[n] = spec_mod.parse(files[n])
            raw = assert_grid_exact(store_dir, specs[n])
            assert set(raw["run_id"]) == {n}
        assert store.list_runs(store_dir) == list(names)
        assert all(store.read_run(store_dir, n)["n_rows"] == 24 for n in names)
        assert {f.name for f in unit_files(store_dir, "alpha")} == {f.name for f in unit_files(store_dir, "beta")}
        leftovers = [p for p in store_dir.rglob("*") if p.name.startswith(".tmp")]
        assert not leftovers, leftovers
        con = store.connect(store_dir)
        counts = dict(con.execute("SELECT run_id, count(*) FROM results_all GROUP BY run_id").fetchall())
        assert counts == {"alpha": 24, "beta": 24}
        # they really ran at the same time: their stored rows' start times overlap
        t = {n: store.load(store_dir, run=n)["started_at"] for n in names}
        assert t["alpha"].min() < t["beta"].max() and t["beta"].min() < t["alpha"].max(), "the drivers did not overlap"


# ============================================================ a 2-node cluster that loses a node
@pytest.fixture(scope="class")
def cluster():
    """A head with no CPUs (driver only) from ``ray.cluster_utils.Cluster``; tests add worker nodes."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # one Ray per process: the local session of the class above is over
        ray.shutdown()
    c = Cluster()
    retry_start(lambda: c.add_node(num_cpus=0), c.shutdown, "cluster head")  # the first node is the head
    try:
        ray.init(address=c.address, **RAY_KW)
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def node_loss_sweep(cluster, tmp: Path, *, replace: bool, stall_s: float):
    """2 worker nodes with 1 CPU each, 2 driver-owned actors needing 1 CPU each (so exactly one per
    node); once both actors are solving (units in flight on both) node B is removed, and with
    ``replace`` a new 1-CPU node joins (what an autoscaler does)."""
    nodes = []
    for _ in range(2):
        nodes.append(retry_start(lambda: cluster.add_node(num_cpus=1), lambda: None, "worker node"))
    cluster.wait_for_nodes()
    b = nodes.pop()
    logs = tmp / "logs"
    logs.mkdir()
    spec = make_spec("nodeloss", count=6, batch_size=1, num_cpus=1, num_actors=2,
                     options={"sleep": 0.3, "log_dir": str(logs)})
    events = {}

    def on_unit(n):
        if n == 2:  # wait (driver paused, actors busy) until both actors run units, then pull node B
            wait_until(lambda: len(logged_pids(logs)) == 2, 120, "both actors to start solving")
            events["pids_before"] = before = logged_pids(logs)
            cluster.remove_node(b, allow_graceful=False)
            # the node took its actor process with it (the other actor keeps computing meanwhile)
            wait_until(lambda: sum(alive(p) for p in before) == 1, 60, "the lost node's actor process to exit")
            if replace:
                nodes.append(retry_start(lambda: cluster.add_node(num_cpus=1), lambda: None, "replacement node"))

    try:
        res = sweep(spec, tmp / "store", progress=Hook(spec.name, on_unit, stall_s=stall_s))
    finally:
        for n in nodes:
            try:
                cluster.remove_node(n)
            except Exception:  # noqa: BLE001
                pass
    return spec, res, events, logs


@pytest.mark.timeout(900)
class TestNodeLoss:
    def test_node_lost_mid_sweep_actor_rescheduled(self, tmp_path, cluster):
        """3. A node is lost while both actors have units in flight; a replacement node joins. The lost
        actor's units are re-run (today: Ray restarts the actor on the new node and retries its calls;
        a driver that re-routes them to the survivor passes too); every row lands once."""
        spec, res, events, logs = node_loss_sweep(cluster, tmp_path, replace=True, stall_s=STALL_S)
        assert (res.rows_ok, res.rows_failed) == (18, 0)
        assert len(events["pids_before"]) == 2, "both actors were solving when the node was lost"
        assert_grid_exact(tmp_path / "store", spec)

    def test_node_lost_without_spare_capacity_survivors_finish(self, tmp_path, cluster):
        spec, res, events, logs = node_loss_sweep(cluster, tmp_path, replace=False, stall_s=20)
        assert (res.rows_ok, res.rows_failed) == (18, 0)
        assert_grid_exact(tmp_path / "store", spec)
