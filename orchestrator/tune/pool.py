"""The search's workers: resident ``Worker`` actors, the search's one writer, and a named
:class:`Dispatcher` in front of them that trials look up by name.

Trials never load a model (a 50-trial search costs one model load per worker, exactly like a
sweep) and never open the store: they hand units to the dispatcher, which runs each on whichever
worker is free, has the writer store its rows, and only then returns them.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Optional

import ray

from orchestrator.cluster import start_actors
from orchestrator.spec import SweepSpec
from orchestrator.tune.trial_store import start_writer

#: Ray namespace of the dispatcher actors that trials look up by name.
NAMESPACE = "equibench-tune"


class DispatcherCore:
    """The dispatcher (plain Python; :data:`Dispatcher` is the named actor): runs each unit on
    whichever ``Worker`` is free (FIFO over callers) and stores its rows through the search's
    writer before returning them.

    Trials call it instead of picking a worker themselves, so concurrent trials never queue on one
    worker while another idles; a caller that dies mid-call does not leak its worker (the slot is
    released when the unit returns, not when the caller collects it), and the unit's rows are
    still stored. It runs no user code and is not restarted (its constructor arguments are actor
    handles); the workers behind it are (``Worker``: ``max_restarts=-1``), so a worker that dies
    is restarted and its unit re-run, and so is the writer.
    """

    def __init__(self, workers: list, writer):
        self._workers = list(workers)
        self._writer = writer
        self._free: asyncio.Queue = asyncio.Queue()
        for i in range(len(self._workers)):
            self._free.put_nowait(i)
        self._served = [0] * len(self._workers)
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def run_and_store(self, unit, context: dict) -> list[dict]:
        """Run ``unit`` on a free worker, store its rows (the writer), return them."""
        self._inflight += 1
        self._idle.clear()
        try:
            i = await self._free.get()
            try:
                self._served[i] += 1
                result = await self._workers[i].run_unit.remote(unit, context)
            finally:
                self._free.put_nowait(i)
            await self._writer.write_unit.remote(unit.unit_id, result["rows"])
            return result["rows"]
        finally:
            self._inflight -= 1
            if not self._inflight:
                self._idle.set()

    async def stored_rows(self, trial_id: str, columns: Optional[list] = None) -> dict[int, dict]:
        """The rows ``trial_id`` already stored (the writer reads them through the store's verified readers)."""
        return await self._writer.trial_rows.remote(trial_id, columns)

    async def drain(self) -> None:
        """Return once no unit is in flight (one whose caller died is still stored)."""
        await self._idle.wait()

    async def info(self) -> list[dict]:
        infos = await asyncio.gather(*(w.info.remote() for w in self._workers))
        return [{**inf, "units": n} for inf, n in zip(infos, self._served)]


Dispatcher = ray.remote(num_cpus=0)(DispatcherCore)


@dataclass
class WorkerPool:
    """The workers of a search, its writer and the named dispatcher in front of them (started by the driver)."""

    name: str
    workers: list
    dispatcher: Any
    writer: Any = None

    @classmethod
    def start(cls, sweep: SweepSpec, n: int, name: str, store_dir, run_id: str) -> "WorkerPool":
        workers = start_actors(sweep, n, name=name)
        writer = start_writer(store_dir, run_id)
        dispatcher = Dispatcher.options(name=name, namespace=NAMESPACE).remote(workers, writer)
        ray.get([dispatcher.info.remote(), writer.stats.remote()])  # all up before a trial looks it up
        return cls(name, workers, dispatcher, writer)

    def drain(self, timeout_s: float = 600.0) -> None:
        """Wait until every unit handed to the dispatcher is stored (e.g. of a trial that errored)."""
        try:
            ray.get(self.dispatcher.drain.remote(), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            print(f"[{self.name}] units still running after {timeout_s:.0f}s; the summary counts the rows stored so far",
                  flush=True)

    def close(self) -> None:
        for actor in [self.dispatcher, self.writer] + list(self.workers):
            if actor is None:
                continue
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
