"""``equibench compact --store DIR [--run RUN ...]``: merge runs' unit files into one sorted file each.

Every run of the store (or each ``--run``) gets ``results/run=<run>/compact-<generation>.parquet``
(``orchestrator.store_compact``: one row per key, sorted by solver/task/config, large row groups;
atomic, verified like any store file, the unit files removed only after the switch). Compacting a
compacted run changes nothing; a run's rows read the same before and after. A finished
``equibench run`` compacts its own run already (unless ``--no-compact``); this command is for runs
written before, with ``--no-compact``, or whose compaction was interrupted (it finishes it).
Compact a run while no ``equibench run`` writes it: the store has one writer at a time.
"""
from __future__ import annotations


def _mib(n: int) -> str:
    return f"{n / 2 ** 20:.1f} MiB"


def cmd_compact(args) -> int:
    from orchestrator import store

    store.check_readable(args.store)
    store.check_writable(args.store)
    runs = store.list_runs(args.store)
    unknown = [r for r in args.run or () if r not in runs]
    if unknown:
        raise ValueError(f"--run {' '.join(unknown)}: no such run in store {args.store}; runs: {', '.join(runs) or 'none'}")
    for c in store.compact_store(args.store, args.run or None):
        if c.compacted:
            print(f"{c.run_id}: {c.units:,} unit file(s) ({_mib(c.bytes_before)}) -> {c.file} ({c.rows:,} rows, "
                  f"{_mib(c.bytes_after)}) in {c.seconds:.1f}s")
        else:
            print(f"{c.run_id}: {c.reason}" + (f" ({c.file}, {c.rows:,} rows)" if c.file else "")
                  + (f"; removed {c.removed} leftover file(s) of an interrupted compaction" if c.removed else ""))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("compact", help="merge each run's unit files into one sorted Parquet file (atomic)",
                              description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--store", required=True, help="the store directory")
    p.add_argument("--run", nargs="+", default=None, metavar="RUN", help="only these runs (default: every run)")
    p.set_defaults(func=cmd_compact)
