"""``equibench status`` on a tune run (``orchestrator.trial_status``): trials, not rows, are its
unit of work, so an ASHA-stopped trial is done, not missing. Hand-built rows with known answers."""
from __future__ import annotations

import pandas as pd

from orchestrator import trial_status


def _rows(trial_id: str, n: int, status: str = "ok") -> list[dict]:
    return [{"trial_id": trial_id, "sample_id": i, "status": status if i == n - 1 else "ok"} for i in range(n)]


ROWS = pd.DataFrame(_rows("asha.cell-a.t1", 8) + _rows("asha.cell-a.t2", 2) + _rows("asha.cell-a.t3", 3, "diverged")
                    + _rows("fixed.cell-b", 8) + _rows("random.cell-a.t9", 4) + _rows("random.cell-a.t8", 1, "failed")
                    + [{"trial_id": None, "sample_id": 0, "status": "ok"}])  # a sweep row in a tune store: not a trial


def test_trials_are_classified_from_their_rows():
    info = trial_status.summarize(ROWS, {"run_kind": "tune", "n_trials": 8, "n_samples": 8, "finished_at": "2026-12-02"})
    assert (info["trials"], info["complete"], info["asha"], info["diverged"], info["failed"], info["unfinished"]) \
        == (6, 2, 1, 1, 1, 1)
    assert trial_status.done_cell(info) == "6/8 trials (75%)"
    line = trial_status.line("tune-x", info)
    assert "2 complete, 1 stopped early (ASHA), 1 stopped on a diverged row" in line
    assert "1 unfinished" in line and "search finished (ASHA-stopped trials are done" in line


def test_an_unfinished_search_says_how_to_continue_and_an_old_record_says_it_does_not_know():
    running = trial_status.summarize(ROWS, {"run_kind": "tune", "n_trials": 8, "n_samples": 8, "finished_at": None})
    line = trial_status.line("tune-x", running)
    assert "2 trial(s) not started" in line and "--resume" in line and "or still running" in line
    old = trial_status.summarize(ROWS, {"run_kind": "tune", "n_samples": 8})
    assert trial_status.done_cell(old) == "6 trials" and "not recorded" in trial_status.line("tune-x", old)
    assert not trial_status.is_tune_run({"run_kind": "sweep"}) and trial_status.is_tune_run({"run_kind": "tune"})
