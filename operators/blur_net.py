"""The embedded world's small learned blur network (``BlurNet``), its training and its loader; see
``operators.nonlinear_blur`` for the model."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blur import blur_reflect
from .weight_files import atomic_save as _atomic_save, file_key as _file_key, freeze as _freeze

DEFAULT_BLUR_NET = Path(__file__).resolve().parent.parent / "solvers" / "embedded" / "weights" / "blur" / "blur_net.pt"
BLUR_NET_FORMAT = "equibench-blur-net-v1"
BLUR_NET_ARCH = {"code_dim": 4, "kernel_size": 9, "hidden": 32, "tone_hidden": 8}
GAMMA = 2.2


def code_kernel(code: torch.Tensor, kernel_size: int = 9, points: int = 33, width: float = 0.6) -> torch.Tensor:
    """The training target's kernel for each code ``(B, >= 4)``: a bent motion path, splatted with a
    Gaussian of std ``width`` px and normalised. Direction ``atan2(z1, z0)``; half-length
    ``r * (0.2 + 0.8 * sigmoid(1.5 z2))`` with ``r = K // 2 - 1``; bend (sagitta over half-length)
    ``0.6 * tanh(z3)``; centred on its mean. Smooth in ``z``, so a small MLP can learn it."""
    z = code.to(torch.float64)
    r = max(kernel_size // 2 - 1, 1)
    theta = torch.atan2(z[:, 1], z[:, 0])
    half = r * (0.2 + 0.8 * torch.sigmoid(1.5 * z[:, 2]))
    bend = 0.6 * torch.tanh(z[:, 3])
    t = torch.linspace(-1, 1, points, dtype=torch.float64)
    along = half[:, None] * t  # (B, T)
    across = bend[:, None] * half[:, None] * (t ** 2 - (t ** 2).mean())
    cos, sin = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    px, py = along * cos - across * sin, along * sin + across * cos
    grid = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    wx = torch.exp(-0.5 * ((grid[None, None, :] - px[..., None]) / width) ** 2)  # (B, T, K)
    wy = torch.exp(-0.5 * ((grid[None, None, :] - py[..., None]) / width) ** 2)
    k = torch.einsum("bti,btj->bij", wy, wx)
    return (k / k.sum(dim=(1, 2), keepdim=True)).to(code.dtype)


def reference_blur(x01: torch.Tensor, code: torch.Tensor, kernel_size: int = 9) -> torch.Tensor:
    """What `BlurNet` is trained to reproduce: ``(k(z) * x^gamma)^(1/gamma)`` on images in [0, 1]."""
    linear = x01.clamp(0, 1) ** GAMMA
    return blur_reflect(linear, code_kernel(code, kernel_size)).clamp(0, 1) ** (1 / GAMMA)


class BlurNet(nn.Module):
    """``y = g(k(z) * f(x))``: learned tone curves ``f, g`` (per-pixel 1x1 MLPs, residual) around a
    depthwise blur whose kernel an MLP makes from the code ``z``. Works on images in [0, 1]."""

    def __init__(self, code_dim: int = 4, kernel_size: int = 9, hidden: int = 32, tone_hidden: int = 8):
        super().__init__()
        self.code_dim, self.kernel_size = code_dim, kernel_size
        self.kernel_mlp = nn.Sequential(nn.Linear(code_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                        nn.SiLU(), nn.Linear(hidden, kernel_size * kernel_size))
        self.tone_in = nn.Sequential(nn.Conv2d(3, tone_hidden, 1), nn.SiLU(), nn.Conv2d(tone_hidden, 3, 1))
        self.tone_out = nn.Sequential(nn.Conv2d(3, tone_hidden, 1), nn.SiLU(), nn.Conv2d(tone_hidden, 3, 1))
        for tone in (self.tone_in, self.tone_out):  # start as a plain linear blur
            nn.init.zeros_(tone[-1].weight)
            nn.init.zeros_(tone[-1].bias)

    def kernels(self, code: torch.Tensor) -> torch.Tensor:
        """``(B, K, K)`` non-negative kernels summing to 1."""
        logits = self.kernel_mlp(code)
        return torch.softmax(logits, dim=-1).view(-1, self.kernel_size, self.kernel_size)

    def forward(self, x01: torch.Tensor, code: torch.Tensor, kernels: torch.Tensor | None = None) -> torch.Tensor:
        """Blur ``x01`` with the code's kernels (or with ``kernels`` given, e.g. detached in training)."""
        kernels = self.kernels(code) if kernels is None else kernels
        u = x01 + self.tone_in(x01)
        b = blur_reflect(u, kernels.to(u.dtype))
        return b + self.tone_out(b)


def train_blur_net(images: torch.Tensor, out_path: str | os.PathLike = DEFAULT_BLUR_NET, steps: int = 1500,
                   seed: int = 0, batch_size: int = 16, lr: float = 5e-3, kernel_weight: float = 1.0,
                   **arch: Any) -> dict:
    """Fit `BlurNet` to `reference_blur` on ``images`` (N, 3, H, W) in [-1, 1] and save it to
    ``out_path`` (atomically). Each step draws a batch of images (random flips), codes ``z ~ N(0, I)``,
    and minimises ``MSE(net(x, z), reference_blur(x, z)) + kernel_weight * K^2 * MSE(k_net(z), k(z))``
    with Adam and a cosine learning rate. Deterministic given ``seed`` (a private generator; the global
    RNG is left as it was). Returns the losses (JSON-able): ``first`` and ``last`` are the mean total
    loss over the first and last 10% of steps, ``history`` every 25th step's total loss."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ValueError(f"train_blur_net: images must be (N, 3, H, W), got {getattr(images, 'shape', type(images))}")
    if int(steps) < 1:
        raise ValueError(f"train_blur_net: steps must be >= 1, got {steps}")
    cfg = {**BLUR_NET_ARCH, **arch}
    if min(images.shape[-2:]) <= cfg["kernel_size"] // 2:
        raise ValueError(f"train_blur_net: images of {tuple(images.shape[-2:])} are too small for kernel {cfg['kernel_size']}")
    start = time.time()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = BlurNet(**cfg)
    gen = torch.Generator().manual_seed(seed)
    x01 = ((images.detach().float().cpu().clamp(-1, 1) + 1) / 2).contiguous()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=int(steps), eta_min=lr * 0.05)
    k2 = cfg["kernel_size"] ** 2
    totals, image_losses, kernel_losses = [], [], []
    for _ in range(int(steps)):
        idx = torch.randint(x01.shape[0], (batch_size,), generator=gen)
        xb = x01[idx]
        flip = torch.rand(batch_size, generator=gen) < 0.5
        xb = torch.where(flip[:, None, None, None], xb.flip(-1), xb)
        code = torch.randn(batch_size, cfg["code_dim"], generator=gen)
        with torch.no_grad():
            target = reference_blur(xb, code, cfg["kernel_size"])
            target_k = code_kernel(code, cfg["kernel_size"])
        kernels = net.kernels(code)
        kernel_loss = F.mse_loss(kernels, target_k) * k2
        # the kernel MLP learns from the kernel loss alone: detaching it here spares the depthwise
        # convolution's weight gradient, the slowest part of a step on a CPU
        image_loss = F.mse_loss(net(xb, code, kernels.detach()), target)
        loss = image_loss + kernel_weight * kernel_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        totals.append(loss.item())
        image_losses.append(image_loss.item())
        kernel_losses.append(kernel_loss.item())
    tail = max(1, len(totals) // 10)
    losses = {
        "first": sum(totals[:tail]) / tail, "last": sum(totals[-tail:]) / tail,
        "image_last": sum(image_losses[-tail:]) / tail, "kernel_last": sum(kernel_losses[-tail:]) / tail,
        "history": totals[::25], "steps": int(steps), "seconds": time.time() - start,
    }
    _atomic_save({"format": BLUR_NET_FORMAT, "config": cfg, "state_dict": net.state_dict(),
                  "train": {"seed": seed, "steps": int(steps), "batch_size": batch_size, "lr": lr,
                            "images": int(images.shape[0]), "losses": {k: losses[k] for k in ("first", "last")}}},
                 Path(out_path))
    return losses


def load_blur_net(path: str | os.PathLike = DEFAULT_BLUR_NET) -> BlurNet:
    """Load a `train_blur_net` checkpoint strictly (CPU). Missing file: ``FileNotFoundError``;
    anything else wrong: ``ValueError`` naming the file."""
    key = _file_key(path, "embedded blur_net")
    ckpt = torch.load(key[0], map_location="cpu", weights_only=True)
    if not isinstance(ckpt, dict) or ckpt.get("format") != BLUR_NET_FORMAT:
        raise ValueError(f"{key[0]}: not a blur_net checkpoint (format {BLUR_NET_FORMAT!r}); train one with train_blur_net")
    try:
        net = BlurNet(**ckpt["config"])
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except (TypeError, KeyError, RuntimeError) as exc:
        raise ValueError(f"{key[0]}: blur_net checkpoint does not match its config: {exc}") from exc
    return _freeze(net)


# =============================================================================================
# the operator
# =============================================================================================
