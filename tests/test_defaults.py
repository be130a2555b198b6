"""``orchestrator.defaults``: searched step sizes become the shared defaults of run and solve."""
from __future__ import annotations

import yaml

from orchestrator import defaults


def _best(solver, task, step, steps=20, options=None):
    return {"solver": solver, "regularizer": "none", "task": task, "step_size": step,
            "sweep": {"solvers": [{"name": solver, "num_steps": [steps], "step_sizes": [step],
                                   "options": options or {}}]}}


def test_tuned_document_round_trips_through_tuned_settings(tmp_path):
    best = {"search": {"run_id": "tune-steps", "tuning_images": {"split": "tune"}},
            "best": {"a": _best("dps", "box_inpainting", 2.0), "b": _best("dps", "gaussian_blur", 4.0),
                     "c": _best("latent_daps", "box_inpainting", 3e-6, 10, {"mcmc_steps": 10}),
                     "d": {**_best("dps", "box_inpainting", 9.0), "regularizer": "equi"}}}
    path = tmp_path / "tuned.yaml"
    path.write_text(yaml.safe_dump(defaults.tuned_document(best)))
    assert defaults.tuned_settings("dps", "box_inpainting", path) == (2.0, {})
    assert defaults.tuned_settings("dps", "gaussian_blur", path) == (4.0, {})
    assert defaults.tuned_settings("latent_daps", "box_inpainting", path) == (3e-6, {"mcmc_steps": 10})
    assert defaults.tuned_settings("dps", "super_resolution", path)[0] is None  # not searched: no guess
    assert defaults.tuned_settings("psld", "box_inpainting", path) == (None, {})
