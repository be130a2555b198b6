"""Progress of a sweep: units done/total, rows/s, ETA, failures.

A rich live panel on a terminal; plain, rate-limited lines when stdout is not a TTY or ``CI`` is
set (logs stay readable and CI output small). ``quiet=True`` prints only the final summary.
"""
from __future__ import annotations

import os
import sys
import time


def _fmt_s(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


class Progress:
    """Counts and renders; the driver calls ``unit_done`` per stored unit and ``tick`` while waiting."""

    def __init__(self, run_id: str, total_units: int, total_rows: int, skipped_rows: int = 0,
                 stream=None, live: bool | None = None, quiet: bool = False, interval_s: float = 5.0):
        self.run_id = run_id
        self.total_units, self.total_rows, self.skipped_rows = total_units, total_rows, skipped_rows
        self.units = self.rows = self.failed = self.diverged = self.retries = 0
        self.failed_units = 0
        self.stream = stream or sys.stdout
        self.quiet = quiet
        is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.live = (is_tty and not os.environ.get("CI")) if live is None else live
        self.interval_s = interval_s
        self.t0 = time.perf_counter()
        self._last_line = 0.0
        self._live = None

    # -- numbers
    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def rate(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float | None:
        left = self.total_rows - self.rows
        return left / self.rate if self.rate > 0 else None

    def line(self) -> str:
        return (f"[{self.run_id}] units {self.units}/{self.total_units}  rows {self.rows}/{self.total_rows}"
                f"  {self.rate:.1f} rows/s  ETA {_fmt_s(self.eta)}  failed {self.failed}"
                f"  diverged {self.diverged}  retries {self.retries}  elapsed {_fmt_s(self.elapsed)}")

    # -- rendering
    def _render(self):
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        t.add_row("run", self.run_id)
        t.add_row("units", f"{self.units}/{self.total_units}")
        t.add_row("rows", f"{self.rows}/{self.total_rows}  (+{self.skipped_rows} already stored)")
        t.add_row("speed", f"{self.rate:.2f} rows/s   ETA {_fmt_s(self.eta)}   elapsed {_fmt_s(self.elapsed)}")
        t.add_row("problems", f"failed rows {self.failed}   diverged rows {self.diverged}   unit retries {self.retries}")
        return t

    def start(self):
        if self.quiet:
            return self
        if self.live:
            from rich.live import Live

            self._live = Live(self._render(), refresh_per_second=4, transient=False)
            self._live.start()
        else:
            self.log(f"[{self.run_id}] {self.total_units} units, {self.total_rows} rows to compute"
                     f" ({self.skipped_rows} already stored)")
        return self

    def log(self, msg: str):
        if self.quiet:
            return
        if self._live is not None:
            self._live.console.print(msg)
        else:
            print(msg, file=self.stream, flush=True)

    def tick(self, force: bool = False):
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(self._render())
        elif force or time.perf_counter() - self._last_line >= self.interval_s:
            self._last_line = time.perf_counter()
            print(self.line(), file=self.stream, flush=True)

    def unit_done(self, n_rows: int, n_failed: int, n_diverged: int):
        self.units += 1
        self.rows += n_rows
        self.failed += n_failed
        self.diverged += n_diverged
        self.failed_units += int(n_failed == n_rows and n_rows > 0)
        self.tick(force=self.units == self.total_units)

    def close(self):
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
