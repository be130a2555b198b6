"""``Metrics``: every registered metric of a benchmark row, networks loaded once per object.

The engine knows no metric by name: it runs the registry's entries (``orchestrator.metrics.
registry``), resolves the weights files the requested metrics need (``WeightsFile``; metrics
sharing a network share one file, one warning and one loaded module) and hands the entries'
functions itself, so a function reads ``value_range``, ``device``, ``batch_size``, the KID
settings and ``network(weights)``.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from orchestrator.metrics import registry as _reg
from orchestrator.metrics.weights import MissingWeightsWarning, find_weights, missing_weights_message

if TYPE_CHECKING:
    import torch
    from torch import nn


class Metrics:
    """``Metrics(device, lpips_weights=None, inception_weights=None, names=..., set_names=...,
    weights=None)`` resolves at construction the weights files that ``names`` / ``set_names``
    need (warning once for each that is absent; explicit paths by ``WeightsFile.key`` in
    ``weights``, or the two keyword shorthands) and loads each network on first use.
    ``per_image(x_hat, x_true, y=None, operator=None, names=None)`` returns ``{name: Tensor(B,) |
    None}`` (float64 on the inputs' device); ``names=None`` means every name of ``self.names``
    whose inputs were given. ``set_metrics(fakes, reals)`` returns the set metrics' columns and
    ``n_images``; ``reals`` may be images or features from ``inception_features`` (compute a
    reference set's features once and reuse them across configs).
    """

    def __init__(self, device: "str | torch.device" = "cpu", lpips_weights: str | os.PathLike | None = None,
                 inception_weights: str | os.PathLike | None = None, names: Sequence[str] | None = None,
                 set_names: Sequence[str] | None = None, value_range=(-1.0, 1.0), batch_size: int = 32,
                 kid_subsets: int = 100, kid_subset_size: int = 1000, weights: dict | None = None):
        import torch

        names = _reg.names("image") if names is None else tuple(names)
        set_names = _reg.names("set") if set_names is None else tuple(set_names)
        unknown = [n for n in names if n not in _reg.names("image")] + [n for n in set_names if n not in _reg.names("set")]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; per-image: {sorted(_reg.names('image'))}, "
                             f"set: {sorted(_reg.names('set'))}")
        self.device = torch.device(device)
        self.names, self.set_names = names, set_names
        self.value_range = tuple(value_range)
        self.batch_size, self.kid_subsets, self.kid_subset_size = batch_size, kid_subsets, kid_subset_size
        self._explicit = {"lpips": lpips_weights, "inception": inception_weights, **(weights or {})}
        self.weights: dict[str, Path | None] = {}
        self._nets: dict[str, nn.Module] = {}
        for wf in _reg.weights_files(names + set_names).values():
            self.weights[wf.key] = self._resolve(wf)

    def _resolve(self, wf: _reg.WeightsFile) -> Path | None:
        path = find_weights(wf.filename, self._explicit.get(wf.key))
        if path is None:
            warnings.warn(missing_weights_message(wf.label, wf.filename), MissingWeightsWarning, stacklevel=3)
        return path

    @property
    def available(self) -> dict[str, bool]:
        """Which metrics this object can compute (False where a weights file is absent)."""
        return {n: _reg.get(n).weights is None or self.weights.get(_reg.get(n).weights.key) is not None
                for n in self.names + self.set_names}

    def network(self, wf: _reg.WeightsFile) -> "nn.Module | None":
        """The module ``wf.loader`` builds from ``wf``'s file, loaded once; ``None`` when the file is
        absent. A metric not among ``names`` resolves (and warns about) its file on first use."""
        if wf.key not in self.weights:
            self.weights[wf.key] = self._resolve(wf)
        if wf.key not in self._nets:
            path = self.weights[wf.key]
            if path is None:
                return None
            self._nets[wf.key] = wf.loader(path, self.device)
        return self._nets[wf.key]

    # ------------------------------------------------------------------ per image
    def lpips(self, x_hat: "torch.Tensor", x_true: "torch.Tensor") -> "torch.Tensor | None":
        """Per-image LPIPS (``orchestrator.metrics.learned.lpips``); ``None`` without its weights."""
        from orchestrator.metrics.learned import lpips

        return lpips(self, x_hat, x_true)

    def per_image(self, x_hat: "torch.Tensor", x_true: "torch.Tensor | None" = None, y: "torch.Tensor | None" = None,
                  operator=None, names: Sequence[str] | None = None) -> dict:
        """``{name: Tensor(B,) | None}`` for ``names`` (see the class docstring)."""
        inputs = {"x_hat": x_hat, "x_true": x_true, "y": y, "operator": operator}
        given = {k for k, v in inputs.items() if v is not None}
        if names is None:
            names = [n for n in self.names if set(_reg.get(n).needs) <= given]
        out = {}
        for name in names:
            info = _reg.get(name, "image")
            lacking = [k for k in info.needs if k not in given]
            if lacking:
                raise ValueError(f"metric {name!r} needs {lacking}")
            out[name] = info.fn(self, inputs)
        return out

    # ------------------------------------------------------------------ sets
    def inception_features(self, images: "torch.Tensor") -> "torch.Tensor | None":
        """(N, 2048) float64 pool features on the CPU, or ``None`` without Inception weights."""
        from orchestrator.metrics.sets import inception_features

        return inception_features(self, images)

    def set_metrics(self, fakes: "torch.Tensor", reals: "torch.Tensor") -> dict:
        """The set metrics of ``set_names`` between reconstructions ``fakes`` and references ``reals``.

        Each argument is either images ``(N, C, H, W)`` or features ``(N, 2048)`` from
        :meth:`inception_features`. Missing Inception weights give ``None`` values (warned once,
        at construction).
        """
        result: dict = {c: None for n in self.set_names for c in _reg.get(n).columns}
        result["n_images"] = int(len(fakes))
        if not self.set_names:
            return result
        f_fake, f_real = self._features(fakes), self._features(reals)
        if f_fake is None or f_real is None:
            return result
        for name in self.set_names:
            result.update(_reg.get(name, "set").fn(self, f_fake, f_real))
        return result

    def _features(self, x: "torch.Tensor") -> "torch.Tensor | None":
        import torch

        if x.ndim == 2:
            return x.detach().to("cpu", torch.float64)
        return self.inception_features(x)
