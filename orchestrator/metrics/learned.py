"""Learned per-image metrics: LPIPS (lpips' AlexNet variant, v0.1 linear heads, which the
``lpips`` wheel ships).

Inputs are seen as displayed images (mapped to ``[0, 1]`` and clamped) and handed to the network
in ``[-1, 1]``, its own convention; 1-channel images are repeated to 3. AlexNet's pooling needs
images of at least 31x31.

Weights: torchvision's AlexNet ``alexnet-owt-7be5be79.pth``
(https://download.pytorch.org/models/alexnet-owt-7be5be79.pth; the file name of
``torchvision.models.AlexNet_Weights.IMAGENET1K_V1``, which a test checks). Only its
``features.*`` tensors are used; the classifier is ignored. Looked up as ``orchestrator.metrics.
weights`` says; when absent LPIPS is ``None`` and one ``MissingWeightsWarning`` (label ``LPIPS``)
names the file.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.metrics.registry import WeightsFile, register_metric

if TYPE_CHECKING:
    import torch
    from torch import nn

LPIPS_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
LPIPS_MIN_SIZE = 31


def load_lpips(weights: str | os.PathLike, device="cpu") -> "nn.Module":
    """lpips' AlexNet LPIPS with its trunk from ``weights`` (a torchvision AlexNet state dict).

    The module is built with ``pnet_rand=True`` (so torchvision never tries to download) and the
    trunk tensors are then loaded strictly; any missing, extra or mis-shaped trunk tensor raises.
    """
    import lpips
    import torch

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


LPIPS_WEIGHTS = WeightsFile("lpips", LPIPS_ALEXNET_FILE, "LPIPS", load_lpips)


def lpips(metrics, x_hat: "torch.Tensor", x_true: "torch.Tensor") -> "torch.Tensor | None":
    """Per-image LPIPS (AlexNet) with ``metrics``' network; ``None`` when its weights are absent."""
    import torch

    from solvers.psnr import check_pair, float_dtype, to_unit

    check_pair(x_hat, x_true)
    if min(x_hat.shape[-2:]) < LPIPS_MIN_SIZE:
        raise ValueError(f"LPIPS (AlexNet) needs images of at least {LPIPS_MIN_SIZE}x{LPIPS_MIN_SIZE}, "
                         f"got {tuple(x_hat.shape[-2:])}")
    net = metrics.network(LPIPS_WEIGHTS)
    if net is None:
        return None
    a = to_unit(x_hat, metrics.value_range).float() * 2 - 1
    b = to_unit(x_true, metrics.value_range).float() * 2 - 1
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    with torch.no_grad():
        d = net(a.to(metrics.device), b.to(metrics.device))
    return d.flatten().to(x_hat.device, float_dtype(x_hat.device))


register_metric("lpips", label="LPIPS", direction="lower", kind="image", decimals=3, weights=LPIPS_WEIGHTS,
                fn=lambda m, c: lpips(m, c["x_hat"], c["x_true"]))
