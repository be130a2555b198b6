"""EquiBench's orchestrator: one YAML spec -> a grid of configs -> Ray actors -> a Parquet store.

Read in this order: ``spec`` (validated models) -> ``grid`` (configs, stable ids) -> ``plan``
(lambda-grid work units) -> ``driver`` (resume, ray.wait loop, progress) -> ``worker`` (the actor)
-> ``store`` (atomic Parquet files, verified reads, duckdb) ; ``commands/run.py`` wires the CLI.

Why a ``ray.wait`` loop over a fixed set of actors, and not ``ActorPool`` or Ray Data:

* **Models resident per actor.** Each ``Worker`` actor loads its prior, MPE autoencoder and metric
  networks once and serves many units; actors are long-lived, ask for fractional CPUs/GPUs and set
  their own thread count. All three options allow this; the differences are in the loop.
* **Per-unit failure records and retries.** The driver must know *which* unit failed, retry it a
  bounded number of times and then store its rows as ``failed``. ``ActorPool.get_next_unordered``
  raises out of the pool on a task error and loses the pairing with the unit; Ray Data turns a
  failing batch into a failed pipeline (or silently drops it with ``max_errored_blocks``).
* **Single writer, streaming.** Rows are stored as each unit finishes, by the driver, under the
  unit's deterministic file name; set metrics are submitted to the same actors when a config's
  last unit lands. A ``ray.wait(..., timeout=1)`` loop gives exactly this, plus progress ticks and
  back-pressure (at most ``inflight_per_actor`` units queued per actor). Ray Data's ``write_*``
  sinks write blocks whose boundaries are not our units, so resume could not key on them.
* **Actor death.** ``max_restarts=-1, max_task_retries=-1`` restarts a dead actor and re-runs its
  in-flight calls; since only the driver writes, and only after a call returns, a unit that was
  interrupted is neither lost nor stored twice.
* **2-core laptops.** Ray Data's scheduler with model-holding actors deadlocked on 2 CPUs in our
  measurements (FIELD-NOTES); a handful of actors and one loop has no such failure mode.

The cost is ~150 lines of loop in ``driver.py`` that ``ActorPool`` would have hidden.
"""
