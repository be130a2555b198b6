"""Non-linear deblurring: a learned blur network applied with a latent code fixed per seed.

Two models, chosen by ``params["model"]``:

``"bkse"`` (the papers' operator, default at paper sizes). bkse's ``KernelWizard`` with
``GOPRO_wVAE.pth`` (nf 64, front_RBs 10, back_RBs 20, kernel_dim 512, VAE). Its architecture is
re-implemented (``operators.kernel_wizard``) after reading `VinAIResearch/blur-kernel-space-exploring`
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
from pathlib import Path

import torch
import torch.nn as nn

from .base import Operator, check_choice, check_number
from .blur_net import (  # noqa: F401  (re-exported)
    BLUR_NET_ARCH, BLUR_NET_FORMAT, DEFAULT_BLUR_NET, GAMMA, BlurNet, code_kernel, load_blur_net, reference_blur,
    train_blur_net,
)
from .kernel_wizard import BKSE_ARCH, BKSE_FILE, KernelWizard, load_kernel_wizard  # noqa: F401  (re-exported)
from .registry import register
from .weight_files import file_key as _file_key

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
