"""What ``equibench status`` says about a tune run (one written by ``equibench tune``).

A search's unit of work is a trial, not a row: a trial evaluates its configuration on the tuning
images chunk by chunk, and ASHA stops the weak ones after a chunk or two. So the rows a tune run
stores are fewer than trials x images by design, and "rows done / grid rows" would report a
finished search as mostly missing. Here each stored trial (its ``trial_id``: ``<variant>.<cell>.<id>``
or ``fixed.<cell>``) is classified from its rows:

* **complete**: every tuning image evaluated, all ok;
* **stopped early (ASHA)**: fewer images, all ok, under the ``asha`` variant (while the search
  still runs, such a trial may also be running);
* **stopped on a diverged / failed row**: a trial stops at its first non-ok chunk (it reports a
  penalty and cannot be the best); a failed row is recomputed by ``--resume``;
* **unfinished**: fewer images, all ok, without ASHA: the search was interrupted.

The run record (``orchestrator.tune.search``) holds the planned trial count (``n_trials``), the
images per trial (``n_samples``) and ``finished_at`` once the search wrote its results. Plain
pandas, no Ray and no Tune import, so ``status`` stays quick.
"""
from __future__ import annotations


def is_tune_run(record: dict | None) -> bool:
    return bool(record) and record.get("run_kind") == "tune"


def summarize(rows, record: dict) -> dict:
    """Trial counts of a tune run from its stored ``rows`` (columns ``trial_id``, ``sample_id``,
    ``status``) and its run ``record``."""
    n_images = record.get("n_samples")
    finished = bool(record.get("finished_at"))
    out = {"planned": record.get("n_trials"), "trials": 0, "complete": 0, "asha": 0, "diverged": 0, "failed": 0,
           "unfinished": 0, "finished": finished, "images": n_images, "known": "finished_at" in record}
    rows = rows.dropna(subset=["trial_id"]) if len(rows) else rows
    for trial_id, part in (rows.groupby("trial_id", sort=True) if len(rows) else []):
        out["trials"] += 1
        statuses = set(part["status"].astype(str))
        if "failed" in statuses:
            out["failed"] += 1
        elif statuses - {"ok"}:
            out["diverged"] += 1
        elif n_images and part["sample_id"].nunique() >= n_images:
            out["complete"] += 1
        elif str(trial_id).startswith("asha."):
            out["asha"] += 1
        else:
            out["unfinished"] += 1
    return out


def done_cell(info: dict) -> str:
    """The ``done`` column of ``status``: trials stored of those planned."""
    planned = info["planned"]
    if not planned:
        return f"{info['trials']} trials"
    return f"{info['trials']}/{planned} trials ({100 * info['trials'] / planned:.0f}%)"


def line(run_id: str, info: dict) -> str:
    """One line under the status table: what the trials of tune run ``run_id`` are."""
    parts = [f"{info['complete']} complete"]
    if info["asha"]:
        parts.append(f"{info['asha']} stopped early (ASHA)" + ("" if info["finished"] or not info["known"] else " or still running"))
    if info["diverged"]:
        parts.append(f"{info['diverged']} stopped on a diverged row")
    if info["failed"]:
        parts.append(f"{info['failed']} stopped on a failed row (recomputed by --resume)")
    if info["unfinished"]:
        parts.append(f"{info['unfinished']} unfinished")
    of = f" of {info['planned']}" if info["planned"] else ""
    per = f", {info['images']} tuning images per trial" if info["images"] else ""
    head = f"tune run {run_id!r}: trials {info['trials']}{of} stored ({', '.join(parts)}){per}; "
    if not info["known"]:
        tail = "whether the search finished is not recorded (it ran before status tracked trials)"
    elif info["finished"]:
        tail = "search finished (ASHA-stopped trials are done: their missing rows are not unfinished work)"
    else:
        left = (info["planned"] or 0) - info["trials"]
        waiting = f"{left} trial(s) not started; " if left > 0 else ""
        tail = f"search not finished: {waiting}running, or interrupted (continue it with `equibench tune ... --resume`)"
    return head + tail
