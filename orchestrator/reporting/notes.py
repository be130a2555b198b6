"""A table's notes and headline: what the numbers are, how configs were chosen, what to distrust.

Every table says: what a cell shows (mean and interval, delta and interval, the markers); how
many images and clusters its intervals rest on; how each method's config was selected (in bold
when it was selected on the same images the table reports); which rows ran with unpaired solver
noise; which lambdas are inert or dominant (also returned as warnings for stderr); which diffusion
solvers beat the best classical baseline; and which images were left out of the means.
"""
from __future__ import annotations

from typing import Callable, Mapping

from orchestrator.reporting.evidence import noise_paired
from orchestrator.reporting.labels import (DOMINANT_ABOVE, INERT_BELOW, METRICS, format_number, format_ratio, format_setting,
                                           lower_is_better, method_label, num, solver_family, solver_label, task_label)
from orchestrator.reporting.model import DAGGER, DDAGGER, OBJ_MARK, Section

__all__ = ["section_notes", "influence_warning"]


def _span(values: list[int]) -> str:
    lo, hi = min(values), max(values)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _counts_note(section: Section) -> list[str]:
    ev = section.evidence
    counts = [ev.counts(r["config_id"]) for r in section.records]
    counts += [(iv.n_images, iv.n_clusters) for *_, iv in section.naive.values()]
    counts = [c for c in counts if c[0]]
    if not counts:
        return []
    images, clusters = [c[0] for c in counts], [c[1] for c in counts]
    notes = [f"Intervals: {ev.level:.0%} percentile bootstrap resampling clusters of images ({ev.n_resamples} resamples, "
             f"seed {ev.seed}); n = {_span(images)} images in {_span(clusters)} clusters per cell."]
    if min(clusters) < 2:
        notes.append("No interval where a cell's images come from fewer than 2 clusters (resampling one cluster only returns it).")
    if any(not ev.clusters_given(r["config_id"]) for r in section.records if ev.counts(r["config_id"])[0]):
        notes.append("No cluster recorded for these rows (older store): each image is its own cluster, so the intervals "
                     "ignore images that share a source.")
    return notes


def _selection(section: Section, metric: str, direction: str) -> tuple[list[str], str, bool]:
    ties = "(ties: smallest lam, then step size)"
    if section.rule == "best" and section.selected_on:
        headline = (f"Configurations selected on {section.selected_on} (best mean {metric} per task and method), "
                    "reported on these other images.")
        return [f"Selection: per task and method, the config with the {direction} mean {metric} on "
                f"{section.selected_on} {ties}; every value shown is on this table's images."], headline, False
    if section.rule == "best":
        notes = [f"Selection: per task and method, the config with the {direction} mean {metric} over its hyperparameters {ties}."]
    else:
        notes = [f"Selection: every config is a row; deltas against the base solver's config with the {direction} mean {metric}."]
    if not section.chosen_here:
        return notes, "", False
    return notes, ("Best configurations selected on the same images this table reports: the selected rows are optimistic "
                   "(select on another split: --select-on)."), True


def influence_warning(value: float, label: str, where: str) -> str | None:
    """The inert / dominant warning for one influence value, or None."""
    if value < INERT_BELOW:
        return f"λ inert: {label} {where} (infl. {format_ratio(value)} < {format_ratio(INERT_BELOW)}): the regularizer barely acts; its delta is noise."
    if value > DOMINANT_ABOVE:
        return f"λ dominant: {label} {where} (infl. {format_ratio(value)} > {format_ratio(DOMINANT_ABOVE)}): the regularizer outweighs the data term."
    return None


def _influence(section: Section) -> tuple[list[str], list[str]]:
    regularized = [r for r in section.records if r["regularizer"] != "none"]
    if not regularized:
        return [], []
    values = {r["config_id"]: section.evidence.influence(r["config_id"]) for r in regularized}
    if all(v is None for v, _ in values.values()):
        return ["infl.: not recorded for these rows (older runs)."], []
    notes = [f"infl. = mean over images of ||grad(λR)|| / ||grad(data term)|| (influence_grad); {OBJ_MARK} = ratio of objective "
             f"values (influence_obj) where only that is recorded; below {format_ratio(INERT_BELOW)} a λ is inert, above "
             f"{format_ratio(DOMINANT_ABOVE)} dominant."]
    warnings = []
    for r in regularized:
        value, _ = values[r["config_id"]]
        if value is not None:
            w = influence_warning(value, method_label(r["solver"], r["regularizer"]), f"on {task_label(r['task'])} (λ={format_setting(r['lam'])})")
            if w:
                warnings.append(w)
    return notes, warnings


def _noise(section: Section, labels: Mapping) -> list[str]:
    notes = []
    if any(DDAGGER in label for label in labels.values()):
        notes.append(f"{DDAGGER} = run with per-config solver noise (solver_noise per_config, or not recorded: the old default): "
                     "its deltas are paired on images and measurements, not on sampler noise.")
    unshared = []
    for r in section.records:
        base = section.base.get((r["task"], r["solver"], num(r["num_steps"]))) if r["regularizer"] != "none" else None
        if base is not None and r.get("solver_noise") == "shared" and base.get("solver_noise") == "shared" and not noise_paired(r, base):
            unshared.append(f"{method_label(r['solver'], r['regularizer'])} ({task_label(r['task'])})")
    if unshared:
        notes.append("Sampler noise not shared with the baseline (another step size was selected for it): " + ", ".join(unshared) + ".")
    return notes


def _classical(section: Section, metric: str) -> list[str]:
    if not section.classical:
        return []
    lower = lower_is_better(section.primary)
    notes = [f"vs classical = paired {metric} difference to the task's best classical baseline (by mean {metric}"
             + (f" on {section.selected_on}" if section.selected_on else "") + "), each side averaged over its seeds per image."]
    for task in sorted(section.classical):
        best = section.classical[task]
        winners = []
        for r in section.records:
            if r["task"] != task or solver_family(r["solver"]) == "classical":
                continue
            iv = section.evidence.delta(r["config_id"], best["config_id"], section.primary, per_image=True)
            if iv is not None and iv.defined and (iv.hi < 0 if lower else iv.lo > 0):
                winners.append(f"{method_label(r['solver'], r['regularizer'])} {format_number(iv.estimate, section.primary, signed=True)} "
                               f"({format_number(iv.lo, section.primary, signed=True)}, {format_number(iv.hi, section.primary, signed=True)})")
        side = "below" if lower else "above"
        notes.append(f"Beat {solver_label(best['solver'])} on {task_label(task)} ({metric} interval {side} 0): "
                     + (", ".join(winners) if winners else "none") + ".")
    return notes


def section_notes(section: Section, labels: Mapping, lam_column: bool, bold_scope: str, style: str, row_key: Callable
                  ) -> tuple[tuple[str, ...], str, bool, tuple[str, ...]]:
    """(notes, headline, headline in bold, warnings) of one section's table."""
    metric = METRICS[section.primary].label
    direction = "lowest" if lower_is_better(section.primary) else "highest"
    if style == "pm":
        notes = ["Mean over images (all seeds) with status ok ± half the width of its 95% interval; FID/KID from the set "
                 "table (no per-image values: no interval); '-' = missing."]
    else:
        notes = ["Mean over images (all seeds) with status ok (sd = standard deviation over images; 95% interval of the "
                 "mean); FID/KID from the set table (no per-image values: no interval); '-' = missing."]
    notes.append("[Δ (lo, hi)] = paired difference to the same solver without EquiReg (same task, sigma_y, steps) over the "
                 f"images both ran ok, with its 95% interval; {DAGGER} = the interval excludes 0; bold = best {bold_scope}.")
    notes += _counts_note(section)
    selection, headline, bold = _selection(section, metric, direction)
    notes += selection
    notes += _noise(section, labels)
    infl_notes, warnings = _influence(section)
    notes += infl_notes + warnings
    notes += _classical(section, metric)
    chosen: dict[str, list[str]] = {}
    failures: dict[str, list[str]] = {}
    for r in section.records:
        label = labels[row_key(r, section.rule)].replace(DDAGGER, "")
        tuned = [k for k in str(r.get("tuned") or "").split(",") if k and not (lam_column and k == "lam")]
        if section.rule == "best" and tuned and int(r.get("n_variants", 1)) > 1:
            setting = ", ".join(f"{k}={format_setting(r.get(k))}" for k in tuned)
            chosen.setdefault(label, []).append(f"{task_label(r['task'])}: {setting} (of {int(r['n_variants'])})")
        bad = [f"{int(r[f'n_{s}'])} {s}" for s in ("diverged", "failed") if int(r.get(f"n_{s}", 0) or 0) > 0]
        if bad:
            failures.setdefault(label, []).append(f"{task_label(r['task'])}: {', '.join(bad)}")
    notes += [f"Chosen for {label}: " + "; ".join(chosen[label]) + "." for label in sorted(chosen)]
    notes += [f"Not in the means, {label}: " + "; ".join(failures[label]) + "." for label in sorted(failures)]
    notes += list(section.extra_notes)
    return tuple(notes), headline, bold, tuple(f"{section.title}: {w}" for w in warnings)
