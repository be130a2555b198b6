"""Keeps a pool of ``Worker`` actors fed with calls and hands back the calls that finished.

The scheduler knows actors, not sweeps: it places a call on the least-loaded live actor (at most
``inflight_per_actor`` each), marks an actor down when one of its calls fails because the actor
died, pings it until Ray has restarted it, and raises when no actor has been alive for
``actor_wait_s``. What a finished call means (store rows, retry, write set metrics) is the
caller's business (``orchestrator.driver``).

Calls are made with ``max_task_retries=0``: the driver, not Ray, retries a unit, so a dead actor's
calls fail fast and move to a live actor instead of waiting for the restart.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["CallKind", "Call", "Done", "Scheduler", "NoLiveActor"]


class CallKind(enum.Enum):
    UNIT = "unit"  # Worker.run_unit: one work unit's rows
    SETS = "sets"  # Worker.set_metrics: FID/KID over one config's images
    PING = "ping"  # Worker.ping: returns once Ray has restarted a dead actor (internal)


@dataclass(frozen=True)
class Call:
    kind: CallKind
    payload: Any  # what the caller needs to handle the result (a WorkUnit, a config id, ...)
    actor: int


@dataclass
class Done:
    """A finished call: ``value`` when it returned, ``error`` when it raised."""

    call: Call
    value: Any = None
    error: BaseException | None = None

    @property
    def actor_died(self) -> bool:
        """The call failed because its actor died (killed, node lost): not the payload's fault."""
        import ray

        return isinstance(self.error, ray.exceptions.RayActorError)


class NoLiveActor(RuntimeError):
    """Every actor has been down for longer than the scheduler waits."""


class Scheduler:
    """Least-loaded placement of calls on ``actors``; ``wait`` returns finished calls."""

    def __init__(self, actors: list, *, inflight_per_actor: int = 2, actor_wait_s: float = 600.0):
        self.actors = list(actors)
        self.inflight_per_actor = inflight_per_actor
        self.actor_wait_s = actor_wait_s
        self._inflight: dict = {}  # ObjectRef -> Call
        self._load = [0] * len(self.actors)
        self._down: dict[int, float] = {}  # actor index -> since when its calls fail

    @property
    def busy(self) -> bool:
        """Some call other than an internal ping is still running."""
        return any(c.kind is not CallKind.PING for c in self._inflight.values())

    def has_room(self) -> bool:
        return self._pick(limit=True) is not None

    def submit(self, kind: CallKind, payload: Any, method: str, *args, limit: bool = True) -> bool:
        """Call ``actor.<method>(*args)`` on the least-loaded live actor; False when none has room
        (``limit=False`` always places it, e.g. set metrics owed when a unit finishes)."""
        i = self._pick(limit)
        if i is None:
            if limit:
                return False
            i = 0
        ref = getattr(self.actors[i], method).options(max_task_retries=0).remote(*args)
        self._inflight[ref] = Call(kind, payload, i)
        self._load[i] += 1
        return True

    def mark_down(self, i: int) -> None:
        """Send no more calls to actor ``i`` until it answers a ping (Ray restarts it)."""
        if i not in self._down:
            self._down[i] = time.monotonic()
            self._inflight[self.actors[i].ping.remote()] = Call(CallKind.PING, None, i)

    def wait(self, timeout: float = 1.0) -> list[Done]:
        """The calls that finished within ``timeout`` seconds (possibly none)."""
        import ray

        n = len(self.actors)
        if n and len(self._down) == n and time.monotonic() - max(self._down.values()) > self.actor_wait_s:
            raise NoLiveActor(f"no live actor for {self.actor_wait_s:.0f}s (cluster lost its capacity)")
        if not self._inflight:
            return []
        ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
        out = []
        for ref in ready:
            call = self._inflight.pop(ref)
            if call.kind is CallKind.PING:
                self._down.pop(call.actor, None)
                continue
            self._load[call.actor] -= 1
            try:
                done = Done(call, value=ray.get(ref))
            except Exception as exc:  # noqa: BLE001 - the caller decides (actor died, worker bug)
                done = Done(call, error=exc)
            if done.actor_died:
                self.mark_down(call.actor)
            out.append(done)
        return out

    def _pick(self, limit: bool) -> int | None:
        live = [k for k in range(len(self.actors)) if k not in self._down]
        if limit:
            live = [k for k in live if self._load[k] < self.inflight_per_actor]
        return min(live, key=lambda k: self._load[k], default=None)
