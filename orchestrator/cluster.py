"""The cluster side of a sweep: code version, Ray start/attach, actor count and actor start, and
what the user sees of the workers.

Kept apart from the driver loop (``orchestrator.driver`` re-exports these names).

Output: without ``--verbose`` (``EQUIBENCH_VERBOSE``) Ray's own banners and warnings (log level
ERROR) and the workers' stdout/stderr (``log_to_driver=False``: no "(WorkerCore pid=...)" lines, no
"[repeated Nx across cluster]" hints) stay out of the user's view; a worker's warnings come back
with its results and the driver prints each distinct one once (``reissue_warnings``), a failed
unit's error is stored with its rows and printed by the driver, an actor that dies is named once
(``actor_died``). With ``--verbose`` Ray logs at INFO and every worker line is forwarded, undeduplicated.
"""
from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from orchestrator.spec import SweepSpec

REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """``git describe`` of the checkout (``-dirty`` when modified), else the package version."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        from importlib.metadata import version

        return f"equibench-{version('equibench')}"
    except Exception:  # noqa: BLE001
        return "unknown"


VERBOSE_ENV = "EQUIBENCH_VERBOSE"


def verbose() -> bool:
    """``equibench -v`` / ``EQUIBENCH_VERBOSE=1``: show Ray's own output and every worker line."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def local_resources() -> dict:
    """What ``ensure_ray()`` (no address) gives the local Ray: every CPU of this machine and the GPUs
    Ray's own detection finds here (``GPU`` left out when that detection is unavailable). Known before
    Ray starts, so a request it cannot place is refused without starting Ray."""
    res = {"CPU": float(os.cpu_count() or 1)}
    try:
        from ray._private import accelerators

        manager = accelerators.get_accelerator_manager_for_resource("GPU")
        n = manager.get_current_node_num_accelerators()
        visible = manager.get_current_process_visible_accelerator_ids()
        res["GPU"] = float(min(n, len(visible)) if visible is not None else n)
    except Exception:  # noqa: BLE001 - Ray internals moved: let Ray detect them, check after it starts
        pass
    return res


def ensure_ray(address: str | None = None) -> bool:
    """Connect to ``address`` or start local Ray with this machine's CPUs (and the GPUs of
    ``local_resources``); True if we started it. Quiet unless ``verbose()`` (module docstring)."""
    import ray

    if ray.is_initialized():
        return False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}}
    loud = verbose()
    if loud:
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # every worker line, in full (read by Ray's log monitor)
        env["env_vars"]["RAY_DEDUP_LOGS"] = os.environ["RAY_DEDUP_LOGS"]
    logging.getLogger("ray").setLevel(logging.INFO if loud else logging.ERROR)
    kwargs = dict(include_dashboard=False, log_to_driver=loud, configure_logging=loud,
                  logging_level=logging.INFO if loud else logging.ERROR, runtime_env=env)
    if address:
        ray.init(address=address, **kwargs)
        return True
    local = local_resources()
    # address='local' always starts a fresh local Ray, never attaching to another process's
    # cluster (ray.init() alone may connect to the latest one found under /tmp/ray). On an
    # overloaded machine the raylet can miss Ray's start-up deadline: retry once before failing.
    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=int(local["CPU"]),
                     **({"num_gpus": int(local["GPU"])} if "GPU" in local else {}), **kwargs)
            return True
        except Exception:  # noqa: BLE001 - Ray raises several types for a start-up timeout
            if attempt == 2:
                raise
            ray.shutdown()
            time.sleep(2.0)
    return True


def auto_actors(spec: SweepSpec, n_units: int) -> int:
    """As many actors as the cluster can hold, node by node and GPU by GPU (``orchestrator.placement``:
    a fractional ``num_gpus`` never spans two GPUs, CPUs bound GPU actors too), at most n_units."""
    import ray

    from orchestrator import placement

    r = spec.resources
    n = placement.capacity(ray.nodes(), r.num_gpus, r.num_cpus, r.threads)
    return max(1, min(n, n_units))


def start_actors(spec: SweepSpec, n: int, name: str | None = None) -> list:
    """``n`` Worker actors with the spec's resources (fractional CPUs/GPUs, explicit threads), each
    importing the spec's and ``$EQUIBENCH_PLUGINS``' plugins in its setup (``orchestrator.plugins``)."""
    from orchestrator import placement, plugins
    from orchestrator.worker import Worker

    r = spec.resources
    names = plugins.requested(spec.plugins)
    return [
        Worker.options(**placement.actor_options(r)).remote(
            plugins=names, threads=r.threads, use_gpu=r.num_gpus > 0, metric_weights=dict(spec.metric_weights),
            name=f"{name or spec.name}-{i}", compute=spec.compute.actor_options())
        for i in range(n)
    ]


_OWN_PACKAGES = ("orchestrator", "solvers", "operators")


def _category(name: str) -> type:
    """The warning class named ``module.Qualname`` (imported when it is one of ours; another package's
    class only when its module is already loaded here), else UserWarning."""
    module, _, qual = name.rpartition(".")
    obj = sys.modules.get(module)
    if obj is None and module.split(".")[0] in _OWN_PACKAGES:  # our own warning classes: import their module
        obj = importlib.import_module(module)
    for part in qual.split(".") if obj is not None else ():
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) and issubclass(obj, Warning) else UserWarning


def reissue_warnings(records, seen: set) -> None:
    """Warn (in the driver, so the CLI prints ``equibench CMD: warning: ...``) each record
    (``worker.warning_records``) not in ``seen``: a warning every actor raised is printed once per sweep."""
    for rec in records or ():
        key = (rec.get("category"), rec.get("message"))
        if key in seen:
            continue
        seen.add(key)
        warnings.warn(str(rec.get("message")), _category(str(rec.get("category"))), stacklevel=2)


def actor_died(exc: BaseException, seen: set) -> None:
    """Name, once per distinct cause, an actor that died (its unit is rerun on the restarted actor)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    detail = next((ln for ln in lines if "exit detail" in ln.lower() or "error raised in its creation task" in ln), None)
    why = detail or (lines[0] if lines else type(exc).__name__)
    reissue_warnings([{"category": "builtins.RuntimeWarning",
                       "message": f"a worker actor died ({why[:300]}); Ray restarts it and its unit is rerun"
                                  + ("" if verbose() else "; `equibench -v` shows the workers' output")}], seen)
