"""Set metrics, one value per config: FID and KID on Inception-v3 features.

Features: torch-fidelity's Inception-v3 (the TF-FID port, ``inception-v3-compat``), 2048-d pool
features of images quantised to uint8 as if saved as PNG. Images of any size are resized by the
extractor itself to 299x299 with its TF1-compatible bilinear interpolation, as torch-fidelity does
for its own inputs.

FID is computed exactly as ``||mu1 - mu2||^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2)``, with
``tr sqrt(S1 S2)`` taken as the nuclear norm of ``A^T B`` for any factors ``S1 = A A^T``,
``S2 = B B^T`` (centred features when ``n < 2048``, symmetric square roots otherwise).
torch-fidelity's ``fid_statistics_to_metric`` takes the eigenvalues of the non-symmetric
2048x2048 product instead, which took 68 s on the shared 2-core machine and is less accurate; the
test checks both agree. KID is torch-fidelity's own ``kid_features_to_metric`` (polynomial kernel,
100 subsets of ``min(1000, n_fake, n_real)``).

FID/KID on a few dozen 32x32 images (the embedded world) only exercises the code path: the
estimator is strongly biased at small ``n`` (FID needs thousands of samples to be comparable across
papers) and upsampling 32 -> 299 px feeds Inception images far from its training distribution.
Compare such numbers only between configs of one run with the same ``n``.

Weights: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` (the file name of its
``URL_INCEPTION_V3``, which a test checks); when absent FID and KID are ``None`` and one
``MissingWeightsWarning`` (label ``FID/KID``) names the file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.metrics.registry import WeightsFile, register_metric

if TYPE_CHECKING:
    import torch
    from torch import nn

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
_INCEPTION_NAME = "inception-v3-compat"
_INCEPTION_FEATURE = "2048"


def load_inception(weights: str | os.PathLike, device="cpu") -> "nn.Module":
    """torch-fidelity's Inception-v3 feature extractor with its weights from ``weights`` (strict)."""
    import torch
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


INCEPTION_WEIGHTS = WeightsFile("inception", INCEPTION_FILE, "FID/KID", load_inception)


def to_uint8(x: "torch.Tensor", value_range=(-1.0, 1.0)) -> "torch.Tensor":
    """Images as 3-channel uint8, as written to PNG (what torch-fidelity's extractors take)."""
    import torch

    from solvers.psnr import to_unit

    u = (to_unit(x, value_range) * 255.0).round().to(torch.uint8)
    return u.expand(-1, 3, -1, -1) if u.shape[1] == 1 else u


def inception_features(metrics, images: "torch.Tensor") -> "torch.Tensor | None":
    """(N, 2048) float64 pool features on the CPU with ``metrics``' network, ``None`` without weights."""
    import torch

    net = metrics.network(INCEPTION_WEIGHTS)
    if net is None:
        return None
    if images.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got {tuple(images.shape)}")
    feats = []
    with torch.no_grad():
        for chunk in images.split(metrics.batch_size):
            (f,) = net(to_uint8(chunk, metrics.value_range).to(metrics.device))
            feats.append(f.to("cpu", torch.float64))
    return torch.cat(feats)


def _sqrt_factor(x: "torch.Tensor") -> "torch.Tensor":
    """A factor ``A`` with ``A A^T = cov(x)`` (features in rows), of the cheaper size."""
    import torch

    n, d = x.shape
    xc = x - x.mean(0, keepdim=True)
    if n <= d:
        return xc.T / math.sqrt(n - 1)
    evals, evecs = torch.linalg.eigh(xc.T @ xc / (n - 1))
    return evecs * evals.clamp_min(0).sqrt()


def fid_from_features(f_fake: "torch.Tensor", f_real: "torch.Tensor") -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples).

    ``tr sqrt(S1 S2) = ||A^T B||_*`` for ``S1 = A A^T`` and ``S2 = B B^T``; exact, symmetric, cheap.
    """
    import torch

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


def kid_from_features(f_fake: "torch.Tensor", f_real: "torch.Tensor", subsets: int = 100,
                      subset_size: int = 1000, seed: int = 2020) -> tuple[float, float]:
    """torch-fidelity's KID (mean, std over subsets); subset size capped at the smaller set."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    size = min(subset_size, len(f_fake), len(f_real))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    out = kid_features_to_metric(f_fake.detach().cpu().double(), f_real.detach().cpu().double(),
                                 kid_subsets=subsets, kid_subset_size=size, rng_seed=seed, verbose=False)
    return float(out[KEY_METRIC_KID_MEAN]), float(out[KEY_METRIC_KID_STD])


def _kid(m, f_fake, f_real) -> dict:
    mean, std = kid_from_features(f_fake, f_real, subsets=m.kid_subsets, subset_size=m.kid_subset_size)
    return {"kid_mean": mean, "kid_std": std}


register_metric("fid", label="FID", direction="lower", kind="set", decimals=2, weights=INCEPTION_WEIGHTS, needs=(),
                fn=lambda m, f_fake, f_real: {"fid": fid_from_features(f_fake, f_real)})
register_metric("kid", label="KID", direction="lower", kind="set", decimals=4, weights=INCEPTION_WEIGHTS, needs=(),
                columns=("kid_mean", "kid_std"), std_column="kid_std", fn=_kid)
