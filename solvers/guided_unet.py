"""The OpenAI guided-diffusion UNet, re-implemented so that the official checkpoints load strictly.

DPS and DAPS run on two checkpoints of OpenAI's ``guided_diffusion.unet.UNetModel``:
``ffhq_10m.pt`` (FFHQ 256, from the DPS authors) and ``imagenet256.pt`` (the unconditional
ImageNet 256 model ``256x256_diffusion_uncond.pt``, renamed by DPS). This module builds the same
network from a :class:`GuidedUNetConfig` with the same parameter names, so the official state
dicts load with ``strict=True`` and nothing is left randomly initialised.

Written after reading openai/guided-diffusion (``guided_diffusion/unet.py``, ``nn.py``,
``script_util.py``) and DPS's ``configs/model_config.yaml`` / ``imagenet_model_config.yaml``;
no code was copied. What must agree with the original, and what was checked:

- parameter names and shapes (``time_embed.{0,2}``, ``input_blocks.i.j``, ``middle_block.{0,1,2}``,
  ``output_blocks.i.j``, ``out.{0,2}``; inside a residual block ``in_layers.{0,2}``,
  ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``; inside attention ``norm``, ``qkv``,
  ``proj_out`` as 1-D convolutions; ``op``/``conv`` for convolutional down/up-sampling);
- the computation: sinusoidal embedding ``[cos, sin]`` of ``t * 10000^(-i/half)``; GroupNorm with 32
  groups computed in float32; scale-shift conditioning ``norm(h) * (1 + scale) + shift``; in
  up/down residual blocks the resampling sits between the first norm+SiLU and the first conv, and
  is applied to the skip path too (nearest x2 / 2x2 average pooling); the "legacy" attention order
  (heads split before q/k/v) with softmax scale ``1/sqrt(head_dim)``.

Both were compared against the original code (fetched to a scratch directory outside the project,
never imported by it): identical state-dict keys and shapes for the FFHQ and ImageNet configs, and
bit-identical outputs (CPU, float32) for shared random weights at 64x64, with and without
resblock_updown and scale-shift norm.

With ``learn_sigma`` the network outputs 6 channels; the first 3 are the noise prediction (the
rest parametrise the variance and are unused here). ``UNetPrior`` takes the first ``C``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GuidedUNetConfig", "GuidedUNet", "GUIDED_CONFIGS", "timestep_embedding"]


@dataclass(frozen=True)
class GuidedUNetConfig:
    """Hyper-parameters of a guided-diffusion UNet, named as in its ``create_model``.

    ``attention_resolutions`` are feature-map sizes in pixels (the yaml's ``"32,16,8"``); they are
    converted to downsampling rates ``image_size // r`` as the original does.
    """

    image_size: int = 256
    in_channels: int = 3
    model_channels: int = 128
    num_res_blocks: int = 1
    channel_mult: tuple = (1, 1, 2, 2, 4, 4)
    attention_resolutions: tuple = (16,)
    num_heads: int = 4
    num_head_channels: int = 64
    learn_sigma: bool = True
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    dropout: float = 0.0

    @property
    def out_channels(self) -> int:
        return self.in_channels * (2 if self.learn_sigma else 1)

    @property
    def attention_rates(self) -> frozenset:
        return frozenset(self.image_size // int(r) for r in self.attention_resolutions)

    def to_dict(self) -> dict:
        return asdict(self)

    def with_overrides(self, **kw) -> "GuidedUNetConfig":
        for key in ("channel_mult", "attention_resolutions"):
            if key in kw and isinstance(kw[key], str):  # the yaml's "32,16,8" form
                kw[key] = tuple(int(v) for v in kw[key].split(",") if v.strip())
            elif key in kw:
                kw[key] = tuple(kw[key])
        unknown = set(kw) - set(self.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown guided-diffusion config keys {sorted(unknown)}; "
                             f"allowed: {sorted(self.__dataclass_fields__)}")
        return replace(self, **kw)


#: The two checkpoints the benchmark uses (SPEC "Checkpoints users will bring"; DPS's yaml files).
GUIDED_CONFIGS: dict[str, GuidedUNetConfig] = {
    "ffhq256": GuidedUNetConfig(),
    "imagenet256": GuidedUNetConfig(model_channels=256, num_res_blocks=2, attention_resolutions=(32, 16, 8)),
}


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[cos(t w_i), sin(t w_i)]`` with ``w_i = max_period^(-i/half)``.

    ``t`` may be fractional (DAPS asks for non-integer noise levels); computed in float32.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) / half * torch.arange(half, dtype=torch.float32, device=t.device))
    ang = t.to(torch.float32)[:, None] * freqs[None, :]
    emb = torch.cat([ang.cos(), ang.sin()], dim=1)
    return F.pad(emb, (0, dim % 2))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm evaluated in float32 whatever the input dtype (as the original)."""

    def forward(self, x):
        return super().forward(x.float()).to(x.dtype)


def _norm(channels: int) -> nn.GroupNorm:
    return GroupNorm32(32, channels)


class _Conditioned(nn.Module):
    """Marker for layers whose forward takes the timestep embedding too."""


class _Stage(nn.Sequential):
    """A sequence of layers; conditioned ones also receive the timestep embedding."""

    def forward(self, x, emb):  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, _Conditioned) else layer(x)
        return x


def _resample(x: torch.Tensor, how: str) -> torch.Tensor:
    if how == "down":
        return F.avg_pool2d(x, 2)
    if how == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return x


class ResBlock(_Conditioned):
    """Residual block with timestep conditioning; ``how`` in {"same", "down", "up"}."""

    def __init__(self, cin: int, emb_dim: int, cout: int, scale_shift: bool, dropout: float, how: str = "same"):
        super().__init__()
        self.how, self.scale_shift = how, scale_shift
        self.in_layers = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, cout * (2 if scale_shift else 1)))
        self.out_layers = nn.Sequential(_norm(cout), nn.SiLU(), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip_connection = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x, emb):
        norm_act, conv = self.in_layers[:2], self.in_layers[2]
        h = conv(_resample(norm_act(x), self.how))
        x = _resample(x, self.how)
        e = self.emb_layers(emb).to(h.dtype)[:, :, None, None]
        out_norm, rest = self.out_layers[0], self.out_layers[1:]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
        else:
            h = out_norm(h + e)
        return self.skip_connection(x) + rest(h)


class AttentionBlock(nn.Module):
    """Spatial self-attention, heads of ``head_channels`` each, legacy q/k/v channel order."""

    def __init__(self, channels: int, num_heads: int, head_channels: int):
        super().__init__()
        if head_channels > 0:
            if channels % head_channels:
                raise ValueError(f"{channels} channels are not divisible into heads of {head_channels}")
            num_heads = channels // head_channels
        self.heads = num_heads
        self.norm = _norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        b, c, hgt, wid = x.shape
        flat = x.reshape(b, c, hgt * wid)
        qkv = self.qkv(self.norm(flat))  # (b, 3c, T), laid out per head as [q_h, k_h, v_h]
        d = c // self.heads
        q, k, v = qkv.reshape(b * self.heads, 3 * d, -1).transpose(1, 2).split(d, dim=2)
        a = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v, (b*heads, T, d)
        a = a.transpose(1, 2).reshape(b, c, -1)
        return (flat + self.proj_out(a)).reshape(b, c, hgt, wid)


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int, conv: bool):
        super().__init__()
        self.op = nn.Conv2d(cin, cout, 3, stride=2, padding=1) if conv else nn.AvgPool2d(2)

    def forward(self, x):
        return self.op(x)


class _Up(nn.Module):
    def __init__(self, cin: int, cout: int, conv: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1) if conv else nn.Identity()

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class GuidedUNet(nn.Module):
    """``model(x, t) -> (B, out_channels, H, W)``; unconditional (no class embedding).

    Any input size divisible by ``2 ** (len(channel_mult) - 1)`` works; the attention layers sit at
    the same downsampling rates as at ``image_size``.
    """

    def __init__(self, config: GuidedUNetConfig):
        super().__init__()
        cfg = self.config = config
        mc, emb_dim = cfg.model_channels, 4 * cfg.model_channels
        rates = cfg.attention_rates

        def res(cin, cout, how="same"):
            return ResBlock(cin, emb_dim, cout, cfg.use_scale_shift_norm, cfg.dropout, how)

        def attn(ch):
            return AttentionBlock(ch, cfg.num_heads, cfg.num_head_channels)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))

        ch = int(cfg.channel_mult[0] * mc)
        first_ch = ch
        self.input_blocks = nn.ModuleList([_Stage(nn.Conv2d(cfg.in_channels, ch, 3, padding=1))])
        skips, rate = [ch], 1
        last = len(cfg.channel_mult) - 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                cout = int(mult * mc)
                layers = [res(ch, cout)] + ([attn(cout)] if rate in rates else [])
                self.input_blocks.append(_Stage(*layers))
                ch = cout
                skips.append(ch)
            if level != last:
                down = res(ch, ch, "down") if cfg.resblock_updown else _Down(ch, ch, cfg.conv_resample)
                self.input_blocks.append(_Stage(down))
                skips.append(ch)
                rate *= 2

        self.middle_block = _Stage(res(ch, ch), attn(ch), res(ch, ch))

        self.output_blocks = nn.ModuleList()
        for level in reversed(range(len(cfg.channel_mult))):
            cout = int(cfg.channel_mult[level] * mc)
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skips.pop(), cout)]
                ch = cout
                if rate in rates:
                    layers.append(attn(ch))
                if level > 0 and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else _Up(ch, ch, cfg.conv_resample))
                    rate //= 2
                self.output_blocks.append(_Stage(*layers))

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(first_ch, cfg.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        dtype = self.out[2].weight.dtype
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels).to(dtype))
        h, stack = x.to(dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            stack.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, stack.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)
