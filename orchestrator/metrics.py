"""Image-quality metrics: per image (PSNR, SSIM, LPIPS, relative L2, measurement residual) and
per set (FID, KID), computed in torch on any device, with network weights from local files only.

Conventions
-----------
- Images arrive as ``(B, C, H, W)`` float tensors in ``value_range`` (the project's ``[-1, 1]`` by
  default). PSNR, SSIM and LPIPS see them as displayed images: mapped to ``[0, 1]`` (LPIPS: back
  to ``[-1, 1]``, its own convention) and clamped, so an estimate outside the range is scored as
  the picture a user would save. Relative L2 and the measurement residual use the raw values
  (they also serve PDE fields, which are not images).
- PSNR: ``10 log10(1 / MSE)`` per image on ``[0, 1]`` (data range 1); identical images give
  ``inf``, as scikit-image does.
- SSIM: Wang et al. with an 11x11 Gaussian window of std 1.5, ``K1 = 0.01``, ``K2 = 0.03``,
  population (not sample) covariances, averaged over the valid region and the channels. This is
  exactly scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=...)``: its Gaussian filter (truncate
  3.5 -> radius 5) followed by cropping 5 pixels per border equals a 'valid' 11x11 convolution.
  ``tests/test_metrics.py`` checks both against scikit-image to 1e-4 (they agree to ~1e-15).
  Computed in float64 (float32 on MPS, which has no float64).
- LPIPS: lpips' AlexNet variant (v0.1 linear heads, which the ``lpips`` wheel ships), inputs in
  ``[-1, 1]``, 1-channel images repeated to 3; needs images of at least 31x31 (AlexNet's pooling).
- Relative L2: ``||x_hat - x|| / ||x||`` per row (``inf``/``nan`` when ``x`` is zero).
- ``y_residual``: ``||y - A(x_hat)||`` per row through ``operator.residual`` (the operator owns its
  data loss; see docs/CONTRACTS.md).
- FID and KID: torch-fidelity's Inception-v3 (the TF-FID port, ``inception-v3-compat``), 2048-d
  pool features of images quantised to uint8 as if saved as PNG. Images of any size are resized by
  the extractor itself to 299x299 with its TF1-compatible bilinear interpolation, as torch-fidelity
  does for its own inputs. FID is computed exactly as ``||mu1 - mu2||^2 + tr S1 + tr S2 -
  2 tr sqrt(S1 S2)``, with ``tr sqrt(S1 S2)`` taken as the nuclear norm of ``A^T B`` for any
  factors ``S1 = A A^T``, ``S2 = B B^T`` (centred features when ``n < 2048``, symmetric square
  roots otherwise). torch-fidelity's ``fid_statistics_to_metric`` takes the eigenvalues of the
  non-symmetric 2048x2048 product instead, which took 68 s on the shared 2-core machine and is less
  accurate; the test checks both agree. KID is torch-fidelity's own ``kid_features_to_metric``
  (polynomial kernel, 100 subsets of ``min(1000, n_fake, n_real)``).

  FID/KID on a few dozen 32x32 images (the embedded world) only exercises the code path: the
  estimator is strongly biased at small ``n`` (FID needs thousands of samples to be comparable
  across papers) and upsampling 32 -> 299 px feeds Inception images far from its training
  distribution. Compare such numbers only between configs of one run with the same ``n``.

Weights (never downloaded, never faked)
--------------------------------------
- LPIPS trunk: torchvision's AlexNet ``alexnet-owt-7be5be79.pth``
  (https://download.pytorch.org/models/alexnet-owt-7be5be79.pth). Only its ``features.*``
  tensors are used; the classifier is ignored.
- FID/KID: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (the file name of its
  ``URL_INCEPTION_V3``).

Each is looked up, in order: the explicit path given to :class:`Metrics` (a missing explicit path
is an error), ``$EQUIBENCH_WEIGHTS/<file>``, ``$TORCH_HOME/hub/checkpoints/<file>`` (torch's hub
cache, where torchvision/torch-fidelity would have put a download). When no file is found the
metric is ``None`` and ONE :class:`MissingWeightsWarning` per ``Metrics`` object names the file and
the places searched. A file that is present but does not fit the network raises ``ValueError``.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "psnr", "ssim", "rel_l2", "y_residual", "fid_from_features", "kid_from_features",
    "Metrics", "MissingWeightsWarning", "PER_IMAGE_METRICS", "SET_METRICS", "DEFAULT_PER_IMAGE",
    "LPIPS_ALEXNET_FILE", "INCEPTION_FILE", "find_weights", "weight_search_paths",
    "load_lpips", "load_inception", "to_uint8",
]

WEIGHTS_ENV = "EQUIBENCH_WEIGHTS"


def _url_basename(url: str) -> str:
    return url.rsplit("/", 1)[-1]


def _lpips_file() -> str:
    try:
        from torchvision.models import AlexNet_Weights
        return _url_basename(AlexNet_Weights.IMAGENET1K_V1.url)
    except Exception:  # pragma: no cover - torchvision without the enum
        return "alexnet-owt-7be5be79.pth"


def _inception_file() -> str:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
        return _url_basename(URL_INCEPTION_V3)
    except Exception:  # pragma: no cover - other torch-fidelity layouts
        return "weights-inception-2015-12-05-6726825d.pth"


#: File names the networks need (taken from torchvision's and torch-fidelity's own download URLs).
LPIPS_ALEXNET_FILE = _lpips_file()
INCEPTION_FILE = _inception_file()
LPIPS_MIN_SIZE = 31
_INCEPTION_NAME = "inception-v3-compat"
_INCEPTION_FEATURE = "2048"


class MissingWeightsWarning(UserWarning):
    """A metric's network weights file is not on this machine; the metric is reported as null."""


# --------------------------------------------------------------------------- weights files
def weight_search_paths(filename: str) -> list[Path]:
    """Where ``filename`` is looked for when no explicit path is given, in order."""
    paths = []
    if os.environ.get(WEIGHTS_ENV):
        paths.append(Path(os.environ[WEIGHTS_ENV]).expanduser() / filename)
    paths.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    return paths


def find_weights(filename: str, explicit: str | os.PathLike | None = None) -> Path | None:
    """The weights file to use, or ``None`` when absent; an explicit path must exist."""
    if explicit is not None:
        p = Path(explicit).expanduser()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise FileNotFoundError(f"weights file not found: {p} (expected {filename})")
        return p
    return next((p for p in weight_search_paths(filename) if p.is_file()), None)


# --------------------------------------------------------------------------- per-image metrics
def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _to_unit(x: torch.Tensor, value_range: Sequence[float]) -> torch.Tensor:
    lo, hi = float(value_range[0]), float(value_range[1])
    x = x.detach().to(_float_dtype(x.device))
    return ((x - lo) / (hi - lo)).clamp(0.0, 1.0)


def _check_pair(x_hat: torch.Tensor, x_true: torch.Tensor) -> None:
    if x_hat.ndim != 4 or x_hat.shape != x_true.shape:
        raise ValueError(f"expected two (B, C, H, W) tensors of one shape, got {tuple(x_hat.shape)} "
                         f"and {tuple(x_true.shape)}")


def psnr(x_hat: torch.Tensor, x_true: torch.Tensor, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """Per-image PSNR in dB on images mapped to [0, 1] (data range 1); (B,)."""
    _check_pair(x_hat, x_true)
    a, b = _to_unit(x_hat, value_range), _to_unit(x_true, value_range)
    mse = (a - b).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_1d(size: int, sigma: float, dtype, device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim(x_hat: torch.Tensor, x_true: torch.Tensor, value_range=(-1.0, 1.0), win_size: int = 11,
         sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-image SSIM on [0, 1] images with a Gaussian window (see the module docstring); (B,)."""
    _check_pair(x_hat, x_true)
    B, C, H, W = x_hat.shape
    if H < win_size or W < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size}x{win_size}, got {H}x{W}")
    a, b = _to_unit(x_hat, value_range), _to_unit(x_true, value_range)
    g = _gaussian_1d(win_size, sigma, a.dtype, a.device)
    stack = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (B, 5C, H, W)
    n = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, -1, 1), groups=n)
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, -1), groups=n)
    mu_a, mu_b, e_aa, e_bb, e_ab = stack.split(C, dim=1)
    var_a, var_b, cov = e_aa - mu_a ** 2, e_bb - mu_b ** 2, e_ab - mu_a * mu_b
    c1, c2 = k1 ** 2, k2 ** 2  # data range 1
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def rel_l2(x_hat: torch.Tensor, x_true: torch.Tensor) -> torch.Tensor:
    """Per-row ``||x_hat - x|| / ||x||`` on the raw values; (B,)."""
    _check_pair(x_hat, x_true)
    dt = _float_dtype(x_hat.device)
    d, x = x_hat.detach().to(dt).flatten(1), x_true.detach().to(dt).flatten(1)
    return (d - x).norm(dim=1) / x.norm(dim=1)


def y_residual(x_hat: torch.Tensor, y: torch.Tensor, operator) -> torch.Tensor:
    """Per-row measurement consistency ``||y - A(x_hat)||`` via ``operator.residual``; (B,)."""
    with torch.no_grad():
        return operator.residual(x_hat.detach(), y).to(_float_dtype(x_hat.device))


# --------------------------------------------------------------------------- networks
def load_lpips(weights: str | os.PathLike, device="cpu") -> nn.Module:
    """lpips' AlexNet LPIPS with its trunk from ``weights`` (a torchvision AlexNet state dict).

    The module is built with ``pnet_rand=True`` (so torchvision never tries to download) and the
    trunk tensors are then loaded strictly; any missing, extra or mis-shaped trunk tensor raises.
    """
    import lpips

    path = Path(weights)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as a state dict: {exc}") from exc
    with warnings.catch_warnings():  # torchvision's 'pretrained is deprecated' notices
        warnings.simplefilter("ignore")
        net = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    target = net.net.state_dict()  # keys like "slice2.3.weight": slice name + torchvision index
    by_index = {k.split(".", 1)[1]: k for k in target}
    mapped, unexpected = {}, []
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        sub = key[len("features."):] if key.startswith("features.") else None
        if sub in by_index:
            mapped[by_index[sub]] = value
        else:
            unexpected.append(key)
    missing = [f"features.{k.split('.', 1)[1]}" for k in target if k not in mapped]
    wrong = [f"features.{k.split('.', 1)[1]} {tuple(v.shape)} (expected {tuple(target[k].shape)})"
             for k, v in mapped.items() if v.shape != target[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{path}: not a torchvision AlexNet state dict; missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    net.net.load_state_dict(mapped, strict=True)
    return net.eval().requires_grad_(False).to(device)


def load_inception(weights: str | os.PathLike, device="cpu") -> nn.Module:
    """torch-fidelity's Inception-v3 feature extractor with its weights from ``weights`` (strict)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights)
    try:  # torch-fidelity unpickles with weights_only=False; accept only a plain state dict
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot be read as a state dict: {exc}") from exc
    try:
        net = FeatureExtractorInceptionV3(_INCEPTION_NAME, [_INCEPTION_FEATURE],
                                          feature_extractor_weights_path=str(path))
    except Exception as exc:  # unreadable file or a state dict of other keys/shapes
        raise ValueError(f"{path}: does not load into torch-fidelity's Inception-v3: {str(exc)[:800]}") from exc
    return net.to(device)


def to_uint8(x: torch.Tensor, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """Images as 3-channel uint8, as written to PNG (what torch-fidelity's extractors take)."""
    u = (_to_unit(x, value_range) * 255.0).round().to(torch.uint8)
    return u.expand(-1, 3, -1, -1) if u.shape[1] == 1 else u


# --------------------------------------------------------------------------- set metrics
def _sqrt_factor(x: torch.Tensor) -> torch.Tensor:
    """A factor ``A`` with ``A A^T = cov(x)`` (features in rows), of the cheaper size."""
    n, d = x.shape
    xc = x - x.mean(0, keepdim=True)
    if n <= d:
        return xc.T / math.sqrt(n - 1)
    evals, evecs = torch.linalg.eigh(xc.T @ xc / (n - 1))
    return evecs * evals.clamp_min(0).sqrt()


def fid_from_features(f_fake: torch.Tensor, f_real: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    ``tr sqrt(S1 S2) = ||A^T B||_*`` for ``S1 = A A^T`` and ``S2 = B B^T``; exact, symmetric, cheap.
    """
    a, b = f_fake.detach().to("cpu", torch.float64), f_real.detach().to("cpu", torch.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (n, d) with one d, got {tuple(a.shape)} and {tuple(b.shape)}")
    if min(len(a), len(b)) < 2:
        raise ValueError("FID needs at least 2 images per set")
    diff = a.mean(0) - b.mean(0)
    tr_a = a.var(0, unbiased=True).sum()
    tr_b = b.var(0, unbiased=True).sum()
    tr_cross = torch.linalg.svdvals(_sqrt_factor(a).T @ _sqrt_factor(b)).sum()
    return float(diff @ diff + tr_a + tr_b - 2 * tr_cross)


def kid_from_features(f_fake: torch.Tensor, f_real: torch.Tensor, subsets: int = 100,
                      subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's KID (mean, std over subsets); subset size capped at the smaller set."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(f_fake), len(f_real))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    out = kid_features_to_metric(f_fake.detach().cpu().double(), f_real.detach().cpu().double(),
                                 kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


# --------------------------------------------------------------------------- registries
@dataclass(frozen=True)
class PerImageMetric:
    """A per-image metric: ``fn(metrics, inputs) -> Tensor (B,) | None`` and the inputs it needs."""

    fn: Callable[["Metrics", dict], torch.Tensor | None]
    needs: tuple[str, ...] = ("x_true",)
    lower_is_better: bool = False


PER_IMAGE_METRICS: dict[str, PerImageMetric] = {
    "psnr": PerImageMetric(lambda m, c: psnr(c["x_hat"], c["x_true"], m.value_range)),
    "ssim": PerImageMetric(lambda m, c: ssim(c["x_hat"], c["x_true"], m.value_range)),
    "lpips": PerImageMetric(lambda m, c: m.lpips(c["x_hat"], c["x_true"]), lower_is_better=True),
    "rel_l2": PerImageMetric(lambda m, c: rel_l2(c["x_hat"], c["x_true"]), lower_is_better=True),
    "y_residual": PerImageMetric(lambda m, c: y_residual(c["x_hat"], c["y"], c["operator"]),
                                 needs=("y", "operator"), lower_is_better=True),
}
DEFAULT_PER_IMAGE = ("psnr", "ssim", "lpips", "rel_l2", "y_residual")


def _fid_entry(m: "Metrics", f_fake, f_real) -> dict:
    return {"fid": fid_from_features(f_fake, f_real)}


def _kid_entry(m: "Metrics", f_fake, f_real) -> dict:
    mean, std = kid_from_features(f_fake, f_real, subsets=m.kid_subsets, subset_size=m.kid_subset_size)
    return {"kid_mean": mean, "kid_std": std}


#: Set metrics on Inception features: name -> (fn, the result keys it fills).
SET_METRICS: dict[str, tuple[Callable, tuple[str, ...]]] = {
    "fid": (_fid_entry, ("fid",)),
    "kid": (_kid_entry, ("kid_mean", "kid_std")),
}


class Metrics:
    """Every metric of a benchmark row, with networks loaded once per object.

    ``Metrics(device, lpips_weights=None, inception_weights=None)`` resolves the weight files at
    construction (warning once for each that is absent) and loads each network on first use.
    ``per_image(x_hat, x_true, y=None, operator=None, names=None)`` returns ``{name: Tensor(B,) |
    None}`` (float64 on the inputs' device); ``names=None`` means every name of ``self.names``
    whose inputs were given. ``set_metrics(fakes, reals)`` returns ``{"fid", "kid_mean",
    "kid_std", "n_images"}``; ``reals`` may be images or features from ``inception_features``
    (compute a reference set's features once and reuse them across configs).
    """

    def __init__(self, device: str | torch.device = "cpu", lpips_weights: str | os.PathLike | None = None,
                 inception_weights: str | os.PathLike | None = None, names: Sequence[str] = DEFAULT_PER_IMAGE,
                 set_names: Sequence[str] = tuple(SET_METRICS), value_range=(-1.0, 1.0),
                 batch_size: int = 32, kid_subsets: int = 100, kid_subset_size: int = 1000):
        unknown = [n for n in names if n not in PER_IMAGE_METRICS] + [n for n in set_names if n not in SET_METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; per-image: {sorted(PER_IMAGE_METRICS)}, "
                             f"set: {sorted(SET_METRICS)}")
        self.device = torch.device(device)
        self.names, self.set_names = tuple(names), tuple(set_names)
        self.value_range = tuple(value_range)
        self.batch_size, self.kid_subsets, self.kid_subset_size = batch_size, kid_subsets, kid_subset_size
        self.weights: dict[str, Path | None] = {}
        self._nets: dict[str, nn.Module] = {}
        if "lpips" in self.names:
            self.weights["lpips"] = self._resolve("LPIPS", LPIPS_ALEXNET_FILE, lpips_weights)
        if self.set_names:
            self.weights["inception"] = self._resolve("FID/KID", INCEPTION_FILE, inception_weights)

    def _resolve(self, label: str, filename: str, explicit) -> Path | None:
        path = find_weights(filename, explicit)
        if path is None:
            searched = ", ".join(str(p) for p in weight_search_paths(filename))
            warnings.warn(f"{label} is reported as null: its weights file {filename} was not found "
                          f"(searched {searched}; set ${WEIGHTS_ENV} to a folder holding it, or pass "
                          f"the path explicitly). Nothing is downloaded or substituted.",
                          MissingWeightsWarning, stacklevel=3)
        return path

    @property
    def available(self) -> dict[str, bool]:
        """Which metrics this object can compute (False where a weights file is absent)."""
        have = {n: (n != "lpips" or self.weights.get("lpips") is not None) for n in self.names}
        have.update({n: self.weights.get("inception") is not None for n in self.set_names})
        return have

    def _net(self, key: str, loader: Callable) -> nn.Module | None:
        if key not in self._nets:
            path = self.weights.get(key)
            if path is None:
                return None
            self._nets[key] = loader(path, self.device)
        return self._nets[key]

    # ------------------------------------------------------------------ per image
    def lpips(self, x_hat: torch.Tensor, x_true: torch.Tensor) -> torch.Tensor | None:
        """Per-image LPIPS (AlexNet); ``None`` when its trunk weights are absent."""
        _check_pair(x_hat, x_true)
        if min(x_hat.shape[-2:]) < LPIPS_MIN_SIZE:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, "
                             f"got {tuple(x_hat.shape[-2:])}")
        if "lpips" not in self.weights:  # not among ``names``: resolve (and warn) on first use
            self.weights["lpips"] = self._resolve("LPIPS", LPIPS_ALEXNET_FILE, None)
        net = self._net("lpips", load_lpips)
        if net is None:
            return None
        a = _to_unit(x_hat, self.value_range).float() * 2 - 1
        b = _to_unit(x_true, self.value_range).float() * 2 - 1
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        with torch.no_grad():
            d = net(a.to(self.device), b.to(self.device))
        return d.flatten().to(x_hat.device, _float_dtype(x_hat.device))

    def per_image(self, x_hat: torch.Tensor, x_true: torch.Tensor | None = None, y: torch.Tensor | None = None,
                  operator=None, names: Sequence[str] | None = None) -> dict[str, torch.Tensor | None]:
        """``{name: Tensor(B,) | None}`` for ``names`` (see the class docstring)."""
        inputs = {"x_hat": x_hat, "x_true": x_true, "y": y, "operator": operator}
        given = {k for k, v in inputs.items() if v is not None}
        if names is None:
            names = [n for n in self.names if set(PER_IMAGE_METRICS[n].needs) <= given]
        out = {}
        for name in names:
            if name not in PER_IMAGE_METRICS:
                raise ValueError(f"unknown per-image metric {name!r}; allowed: {sorted(PER_IMAGE_METRICS)}")
            lacking = [k for k in PER_IMAGE_METRICS[name].needs if k not in given]
            if lacking:
                raise ValueError(f"metric {name!r} needs {lacking}")
            out[name] = PER_IMAGE_METRICS[name].fn(self, inputs)
        return out

    # ------------------------------------------------------------------ sets
    def inception_features(self, images: torch.Tensor) -> torch.Tensor | None:
        """(N, 2048) float64 pool features on the CPU, or ``None`` without Inception weights."""
        net = self._net("inception", load_inception)
        if net is None:
            return None
        if images.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
        feats = []
        with torch.no_grad():
            for chunk in images.split(self.batch_size):
                (f,) = net(to_uint8(chunk, self.value_range).to(self.device))
                feats.append(f.to("cpu", torch.float64))
        return torch.cat(feats)

    def set_metrics(self, fakes: torch.Tensor, reals: torch.Tensor) -> dict:
        """FID/KID between reconstructions ``fakes`` and references ``reals``.

        Each argument is either images ``(N, C, H, W)`` or features ``(N, 2048)`` from
        :meth:`inception_features`. Missing Inception weights give ``None`` values (warned once,
        at construction).
        """
        keys = [k for n in self.set_names for k in SET_METRICS[n][1]]
        result: dict = {k: None for k in keys}
        result["n_images"] = int(len(fakes))
        if not self.set_names:
            return result
        f_fake, f_real = self._features(fakes), self._features(reals)
        if f_fake is None or f_real is None:
            return result
        for name in self.set_names:
            result.update(SET_METRICS[name][0](self, f_fake, f_real))
        return result

    def _features(self, x: torch.Tensor) -> torch.Tensor | None:
        if x.ndim == 2:
            return x.detach().to("cpu", torch.float64)
        if "inception" not in self.weights:
            self.weights["inception"] = self._resolve("FID/KID", INCEPTION_FILE, None)
        return self.inception_features(x)
