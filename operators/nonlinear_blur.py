"""Non-linear deblurring: a learned blur network applied with a latent code fixed per seed.

Two models, chosen by ``params["model"]``:

``"bkse"`` (the papers' operator, default at paper sizes). bkse's ``KernelWizard`` with
``GOPRO_wVAE.pth`` (nf 64, front_RBs 10, back_RBs 20, kernel_dim 512, VAE). Its architecture is
re-implemented here after reading `VinAIResearch/blur-kernel-space-exploring`
(models/kernel_encoding/kernel_wizard.py, models/backbones/resnet.py,
models/backbones/unet_parts.py, models/arch_util.py, options/generate_blur/default.yml) with the
same module names, so the released state dict loads strictly. Details that matter for the weights:
- norm "none" makes every norm layer an ``Identity`` (which still takes a ``Sequential`` index) and
  turns conv biases *off* in the kernel extractor and the U-Net (``use_bias`` is only true for
  InstanceNorm); only the U-Net's outermost transposed conv keeps its bias.
- the U-Net's inner blocks start ``down`` with an *in-place* ``LeakyReLU(0.2)``, which overwrites
  their input before it is concatenated as the skip connection: the skip carries
  ``leaky_relu(x, 0.2)``, not ``x``. Reproduced explicitly.
- ``adaptKernel(x, k) = recon_trunk(adapter(features(x), k)) + x`` with ``x`` in [0, 1] and ``k``
  of shape ``(B, 512, H/128, W/128)`` concatenated at the innermost level.
The operator (ReSample/DAPS form, DAPS forward_operator/__init__.py ``NonlinearBlur``):
``y = clamp(2 * adaptKernel((x + 1) / 2, k) - 1, -1, 1)`` with ``k = 1.2 * randn(512, H/128, W/128)``
drawn once from the row's seed (DPS redraws it every call, so its guidance sees another blur than
its measurement; here the kernel is fixed per row). Sizes must be multiples of 128.

``"blur_net"`` (the embedded world, default in `EMBEDDED_DEFAULTS`). bkse needs H >= 128 and a
GOPRO-trained checkpoint, so a small network of our own (`BlurNet`, ~4 k parameters) stands in at
32x32: a latent code ``z`` (4 numbers, standard normal from the seed) sets a 9x9 kernel through an
MLP; the image is mapped through a learned per-pixel tone curve, blurred with that kernel
(reflection padding), and mapped through a second tone curve. `train_blur_net` fits it to a blur in
linear light, ``y = (k(z) * x^2.2)^(1/2.2)`` (a camera-response non-linearity: highlights smear
more than shadows), with the kernel ``k(z)`` of `code_kernel`, a motion path whose direction,
length and bend are set by ``z``. The result is a learned, differentiable, genuinely non-linear
blur conditioned on a code, the role bkse plays at 256 px. Weights default to
``<repo>/solvers/embedded/weights/blur/blur_net.pt`` (located relative to this file; nothing from
solvers is imported).

Loaded networks are cached per (file, size, mtime, device) and frozen (``requires_grad=False``);
gradients flow to ``x`` only.
"""
from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Operator, check_choice, check_number
from .blur import blur_reflect
from .registry import register

DEFAULT_BLUR_NET = Path(__file__).resolve().parent.parent / "solvers" / "embedded" / "weights" / "blur" / "blur_net.pt"
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


def _file_key(path: str | os.PathLike | None, what: str) -> tuple[str, int, int]:
    """``(resolved path, size, mtime_ns)``; ``FileNotFoundError`` naming the file when missing."""
    if path is None:
        raise FileNotFoundError(f"{what}: no weights file given (pass weights=<path>)")
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{what}: weights file not found: {p}")
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


def _freeze(net: nn.Module) -> nn.Module:
    net.eval()
    net.requires_grad_(False)
    return net


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


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


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


@functools.lru_cache(maxsize=4)
def _cached_model(model: str, file_key: tuple[str, int, int], device: str, dtype: torch.dtype) -> nn.Module:
    """A frozen network per (model, file, device, dtype); float32 unless a caller computes in another dtype."""
    return BACKENDS[model].load(file_key[0]).to(device=torch.device(device), dtype=dtype)


class _Backend:
    """What differs between the two models: how to load, the latent code, how to apply."""

    latent_scale = 1.0
    default_weights: str | None = None

    @staticmethod
    def load(path: str) -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def check_shape(image_shape, name: str) -> None:
        """Raise ``ValueError`` if the model cannot take images of ``image_shape``."""

    @staticmethod
    def latent_shape(net: nn.Module, image_shape) -> tuple[int, ...]:
        raise NotImplementedError

    @staticmethod
    def apply(net: nn.Module, x01: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _BkseBackend(_Backend):
    latent_scale = 1.2  # ReSample/DAPS/DPS: k = 1.2 * randn; no default file (users bring GOPRO_wVAE.pth)

    @staticmethod
    def load(path):
        return load_kernel_wizard(path)

    @staticmethod
    def check_shape(image_shape, name):
        c, h, w = image_shape
        if c != 3 or h % 128 or w % 128:
            raise ValueError(f"{name}: model 'bkse' needs 3 channels and H, W multiples of 128 (its code is "
                             f"H/128 x W/128), got {image_shape}; use model 'blur_net' for small images")

    @staticmethod
    def latent_shape(net, image_shape):
        return (net.kernel_dim, image_shape[1] // 128, image_shape[2] // 128)

    @staticmethod
    def apply(net, x01, code):
        return net.adapt_kernel(x01, code)


class _BlurNetBackend(_Backend):
    latent_scale = 1.0
    default_weights = str(DEFAULT_BLUR_NET)

    @staticmethod
    def load(path):
        return load_blur_net(path)

    @staticmethod
    def check_shape(image_shape, name):
        if image_shape[0] != 3:
            raise ValueError(f"{name}: model 'blur_net' needs 3 channels, got {image_shape}")

    @staticmethod
    def latent_shape(net, image_shape):
        return (net.code_dim,)

    @staticmethod
    def apply(net, x01, code):
        return net(x01, code)


BACKENDS: dict[str, type[_Backend]] = {"bkse": _BkseBackend, "blur_net": _BlurNetBackend}


@register("nonlinear_blur")
class NonlinearBlur(Operator):
    """``y = clamp(2 * net((x + 1) / 2, code) - 1, -1, 1)`` with a code fixed per seed."""

    linear = False
    _TENSORS = ("codes",)
    # 32x32: bkse cannot run below 128 px, so the embedded world uses the own blur_net (weights from
    # `equibench train-embedded`, default path solvers/embedded/weights/blur/blur_net.pt).
    EMBEDDED_DEFAULTS = {"model": "blur_net"}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {"model": "bkse", "weights": None, "latent_scale": None}

    @classmethod
    def _validate(cls, params, image_shape):
        check_choice(cls.name, params, "model", BACKENDS)
        backend = BACKENDS[params["model"]]
        backend.check_shape(image_shape, cls.name)
        if params["latent_scale"] is None:
            params["latent_scale"] = backend.latent_scale
        check_number(cls.name, params, "latent_scale", lo=0.0)
        weights = params["weights"] if params["weights"] is not None else backend.default_weights
        if weights is not None and not isinstance(weights, (str, os.PathLike)):
            raise ValueError(f"{cls.name}: parameter 'weights' must be a path, got {weights!r}")
        params["weights"] = None if weights is None else str(Path(weights).expanduser().resolve())

    def _build(self) -> None:
        what = f"{self.name} model {self.params['model']!r}" + (f" ({BKSE_FILE})" if self.params["model"] == "bkse" else "")
        self._file_key = _file_key(self.params["weights"], what)
        self._moved()
        shape = BACKENDS[self.params["model"]].latent_shape(self.net, self.image_shape)
        scale = float(self.params["latent_scale"])
        self.codes = torch.stack([scale * torch.randn(shape, generator=g, dtype=torch.float64) for g in self.generators()])

    def _moved(self) -> None:
        self.net = self.network(torch.float32)

    def network(self, dtype: torch.dtype = torch.float32) -> nn.Module:
        """The frozen network on this operator's device in ``dtype`` (shared through a cache)."""
        return _cached_model(self.params["model"], self._file_key, str(self.device), dtype)

    def _forward(self, x):
        code = self._buf("codes", x)
        if code.shape[0] == 1 and x.shape[0] > 1:
            code = code.expand(x.shape[0], *code.shape[1:])
        net = self.net if x.dtype == torch.float32 else self.network(x.dtype)
        out = BACKENDS[self.params["model"]].apply(net, (x + 1) / 2, code)
        return (2 * out - 1).clamp(-1, 1)

    def naive_inverse(self, y):
        """The blurred measurement itself."""
        self._check_input(y, self.measurement_shape, "y")
        return y
