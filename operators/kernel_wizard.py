"""bkse's ``KernelWizard`` (the papers' non-linear blur), re-implemented so ``GOPRO_wVAE.pth`` loads
strictly; see ``operators.nonlinear_blur`` for what matters about the architecture."""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .weight_files import file_key as _file_key, freeze as _freeze

BKSE_FILE = "GOPRO_wVAE.pth"
BKSE_ARCH = {"input_nc": 3, "nf": 64, "front_RBs": 10, "back_RBs": 20, "kernel_dim": 512, "n_blocks": 4}

# =============================================================================================
# bkse KernelWizard (state-dict compatible re-implementation)
# =============================================================================================


class _ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))`` (bkse ``ResidualBlock_noBN``)."""

    def __init__(self, nf: int):
        super().__init__()
        self.conv1 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)
        self.conv2 = nn.Conv2d(nf, nf, 3, 1, 1, bias=True)

    def forward(self, x):
        return x + self.conv2(F.relu(self.conv1(x)))


class _ResnetBlock(nn.Module):
    """bkse ``ResnetBlock`` with reflect padding, no norm, no dropout, no bias."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=False), nn.Identity(), nn.ReLU(),
            nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=False), nn.Identity())

    def forward(self, x):
        return x + self.conv_block(x)


class _KernelExtractor(nn.Module):
    """bkse ``KernelExtractor`` (use_sharp, VAE): (sharp, blur) features -> (mu, logvar) of the kernel
    code. Not used by the operator, but part of the checkpoint, so built for strict loading."""

    def __init__(self, nf: int, kernel_dim: int, n_blocks: int):
        super().__init__()
        self.kernel_dim = kernel_dim
        out_nc = 2 * kernel_dim
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(2 * nf, nf, 7, bias=False), nn.Identity(), nn.ReLU()]
        for i in range(5):
            mult = 2 ** i
            layers += [nn.Conv2d(min(nf * mult, out_nc), min(nf * mult * 2, out_nc), 3, 2, 1, bias=False),
                       nn.Identity(), nn.ReLU()]
        layers += [_ResnetBlock(out_nc) for _ in range(n_blocks)]
        self.model = nn.Sequential(*layers)

    def forward(self, sharp, blur):
        out = self.model(torch.cat((sharp, blur), dim=1))
        return out[:, : self.kernel_dim], out[:, self.kernel_dim:]


class _UnetBlock(nn.Module):
    """bkse ``UnetSkipConnectionBlock`` with norm "none" (see the module docstring for the skip)."""

    def __init__(self, outer_nc: int, inner_nc: int, input_nc: int | None = None,
                 submodule: "_UnetBlock | None" = None, outermost: bool = False, innermost: bool = False):
        super().__init__()
        self.outermost, self.innermost = outermost, innermost
        input_nc = outer_nc if input_nc is None else input_nc
        down = nn.Conv2d(input_nc, inner_nc, 4, 2, 1, bias=False)
        if outermost:
            self.down = nn.Sequential(down)
            self.submodule = submodule
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1), nn.Tanh())
        elif innermost:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), down)
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1, bias=False), nn.Identity())
        else:
            self.down = nn.Sequential(nn.LeakyReLU(0.2), down, nn.Identity())
            self.submodule = submodule
            self.up = nn.Sequential(nn.ReLU(), nn.ConvTranspose2d(2 * inner_nc, outer_nc, 4, 2, 1, bias=False), nn.Identity())

    def forward(self, x, code):
        if self.outermost:
            return self.up(self.submodule(self.down(x), code))
        if self.innermost:
            inner = self.up(torch.cat((self.down(x), code), dim=1))
        else:
            inner = self.up(self.submodule(self.down(x), code))
        return torch.cat((inner, F.leaky_relu(x, 0.2)), dim=1)


class _KernelAdapter(nn.Module):
    """bkse ``KernelAdapter``: a 5-level U-Net that takes the kernel code at its innermost level."""

    def __init__(self, nf: int):
        super().__init__()
        block = _UnetBlock(nf * 8, nf * 8, innermost=True)
        block = _UnetBlock(nf * 4, nf * 8, submodule=block)
        block = _UnetBlock(nf * 2, nf * 4, submodule=block)
        block = _UnetBlock(nf, nf * 2, submodule=block)
        self.model = _UnetBlock(nf, nf, input_nc=nf, submodule=block, outermost=True)

    def forward(self, x, code):
        return self.model(x, code)


class KernelWizard(nn.Module):
    """bkse's ``KernelWizard``: ``adapt_kernel(x, k)`` blurs ``x`` in [0, 1] with kernel code ``k``."""

    def __init__(self, input_nc: int = 3, nf: int = 64, front_RBs: int = 10, back_RBs: int = 20,
                 kernel_dim: int = 512, n_blocks: int = 4):
        super().__init__()
        if kernel_dim != 8 * nf:
            # the innermost U-Net level concatenates nf*8 features with the code and maps 2*nf*8 -> nf*8
            raise ValueError(f"KernelWizard needs kernel_dim == 8 * nf, got kernel_dim {kernel_dim}, nf {nf}")
        self.kernel_dim = kernel_dim
        lrelu = nn.LeakyReLU(0.1)
        self.feature_extractor = nn.Sequential(
            nn.Conv2d(input_nc, nf, 3, 1, 1), lrelu, nn.Conv2d(nf, nf, 3, 2, 1), lrelu,
            nn.Conv2d(nf, nf, 3, 2, 1), lrelu, *[_ResidualBlockNoBN(nf) for _ in range(front_RBs)])
        self.kernel_extractor = _KernelExtractor(nf, kernel_dim, n_blocks)
        self.adapter = _KernelAdapter(nf)
        self.recon_trunk = nn.Sequential(
            *[_ResidualBlockNoBN(nf) for _ in range(back_RBs)],
            nn.Conv2d(nf, nf * 4, 3, 1, 1), nn.PixelShuffle(2), lrelu,
            nn.Conv2d(nf, 64 * 4, 3, 1, 1), nn.PixelShuffle(2), lrelu,
            nn.Conv2d(64, 64, 3, 1, 1), lrelu, nn.Conv2d(64, input_nc, 3, 1, 1))

    def adapt_kernel(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """bkse ``adaptKernel``: the blurred image (same range as ``x``, not clamped)."""
        return self.recon_trunk(self.adapter(self.feature_extractor(x), code)) + x

    def forward(self, sharp: torch.Tensor, blurred: torch.Tensor):
        """bkse ``forward``: the (mu, logvar) code that maps ``sharp`` to ``blurred``."""
        return self.kernel_extractor(self.feature_extractor(sharp), self.feature_extractor(blurred))


def load_kernel_wizard(path: str | os.PathLike, **arch: Any) -> KernelWizard:
    """Load bkse ``GOPRO_wVAE.pth`` (or any KernelWizard state dict of the architecture ``arch``,
    default `BKSE_ARCH`) strictly on the CPU. Missing file: ``FileNotFoundError``; keys or shapes
    that do not match: ``ValueError`` naming the file and the offending keys."""
    key = _file_key(path, f"bkse KernelWizard ({BKSE_FILE})")
    cfg = {**BKSE_ARCH, **arch}
    state = torch.load(key[0], map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{key[0]}: expected a state dict, got {type(state).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    with torch.device("meta"):
        net = KernelWizard(**cfg)
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if not isinstance(state[k], torch.Tensor) or tuple(state[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(f"{key[0]}: not a KernelWizard{cfg} state dict: {len(missing)} missing "
                         f"{missing[:3]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} of wrong "
                         f"shape {[(k, tuple(state[k].shape), expected[k]) for k in wrong[:3]]}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    return _freeze(net)


# =============================================================================================
# the embedded world's blur network
# =============================================================================================
