"""Process helpers for tests that start Ray or driver subprocesses (no plugin, no Ray import)."""
from __future__ import annotations

from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Pids of ``pid``'s descendants, read from /proc (empty where /proc is absent): the Ray
    processes a driver subprocess started, so a test can kill exactly those."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
