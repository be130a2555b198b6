"""Train the embedded world's models: pixel prior, autoencoder (the MPE function), latent prior.

Why diffusers modules: the embedded models are saved with ``save_pretrained`` in the same layout as
real checkpoints, so the embedded world exercises the real loaders (``solvers.loaders``).

- pixel prior: ``UNet2DModel`` (32/64/64 channels, attention at 8x8, 1.1 M parameters), eps
  prediction, DDPM linear betas 1e-4..0.02, T=1000 (the DPS/DAPS pixel setting), Adam, EMA.
- autoencoder: ``AutoencoderKL`` 32x32x3 -> 4x8x8 (f4 like LDM-VQ-4), MSE + a small KL weight,
  random horizontal flips (the EquiReg MPE function must see both orientations: paper Sec. 5).
- latent prior: ``UNet2DModel`` on the scaled latents, LDM's sqrt-linear betas 0.0015..0.0195.

Every run is seeded; step counts are arguments so a quick reproduction and the full run share code.
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import data

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

PIXEL_UNET = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16, attention_head_dim=32,
)
AUTOENCODER = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 64, 64), layers_per_block=1,
    latent_channels=4, norm_num_groups=16, sample_size=32,
)
LATENT_UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
    down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
    norm_num_groups=16, attention_head_dim=32,
)
PIXEL_SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
LATENT_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")


def _flip_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class _EMA:
    """Exponential moving average of a module's weights (sampling quality at few steps)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int):
        d = min(self.decay, (1 + step) / (10 + step))
        for e, p in zip(self.module.parameters(), module.parameters()):
            e.mul_(d).add_(p.detach(), alpha=1 - d)


def _log(history: list, step: int, loss_sum: float, count: int, t0: float, tag: str, every: int):
    if count:
        history.append({"step": step, "loss": loss_sum / count, "seconds": round(time.time() - t0, 1)})
        print(f"[{tag}] step {step} loss {loss_sum / count:.4f} ({time.time() - t0:.0f}s)", flush=True)


def train_diffusion(model, images: torch.Tensor, schedule_cfg: dict, steps: int, batch: int, lr: float,
                    seed: int, tag: str, flip: bool, log_every: int = 100, ema_decay: float = 0.999):
    """Denoising-score-matching training of an eps-predicting UNet; returns (ema model, loss history)."""
    from solvers.priors import VPSchedule

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    abar = VPSchedule.from_diffusers_config(schedule_cfg).alphas_cumprod.float()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = _EMA(model, ema_decay)
    history, loss_sum, count, t0 = [], 0.0, 0, time.time()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
        x0 = images[idx]
        if flip:
            x0 = _flip_batch(x0, gen)
        t = torch.randint(0, abar.numel(), (batch,), generator=gen)
        n = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * n
        warm = min(1.0, step / 200)
        for g in opt.param_groups:
            g["lr"] = lr * warm
        loss = F.mse_loss(model(x_t, t).sample, n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, step)
        loss_sum, count = loss_sum + float(loss.detach()), count + 1
        if step % log_every == 0 or step == steps:
            _log(history, step, loss_sum, count, t0, tag, log_every)
            loss_sum, count = 0.0, 0
    return ema.module, history


def train_autoencoder_model(images: torch.Tensor, steps: int, batch: int, lr: float, seed: int,
                            kl_weight: float = 1e-6, log_every: int = 100):
    """MSE + KL training of the tiny AutoencoderKL with random flips; returns (model, history)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AutoencoderKL(**AUTOENCODER)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history, loss_sum, count, t0 = [], 0.0, 0, time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
        x = _flip_batch(images[idx], gen)
        post = model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = model.decode(z).sample
        kl = post.kl().mean() / math.prod(x.shape[1:])
        loss = F.mse_loss(rec, x) + kl_weight * kl
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / 100) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum, count = loss_sum + float(loss.detach()), count + 1
        if step % log_every == 0 or step == steps:
            _log(history, step, loss_sum, count, t0, "autoencoder", log_every)
            loss_sum, count = 0.0, 0
    return model.eval().requires_grad_(False), history


def _save_scheduler(path: Path, cfg: dict):
    from diffusers import DDPMScheduler

    DDPMScheduler(**cfg, clip_sample=False).save_pretrained(path / "scheduler")


def train_pixel(out: Path = WEIGHTS_DIR, steps: int = 3000, batch: int = 32, lr: float = 3e-4, seed: int = 0) -> dict:
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    images = data.load_split("train")
    ema, history = train_diffusion(UNet2DModel(**PIXEL_UNET), images, PIXEL_SCHEDULE, steps, batch, lr, seed, "pixel", flip=True)
    target = Path(out) / "pixel"
    ema.save_pretrained(target / "unet")
    _save_scheduler(target, PIXEL_SCHEDULE)
    (target / "train_log.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr, "seed": seed, "history": history}, indent=1))
    return {"pixel_final_loss": history[-1]["loss"], "pixel_seconds": history[-1]["seconds"]}


def train_autoencoder(out: Path = WEIGHTS_DIR, steps: int = 1500, batch: int = 32, lr: float = 1e-3, seed: int = 1) -> dict:
    images = data.load_split("train")
    model, history = train_autoencoder_model(images, steps, batch, lr, seed)
    target = Path(out) / "latent"
    model.save_pretrained(target / "vae")
    (target / "vae_train_log.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr, "seed": seed, "history": history}, indent=1))
    return {"autoencoder_final_loss": history[-1]["loss"], "autoencoder_seconds": history[-1]["seconds"]}


@torch.no_grad()
def encode_bank(vae, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Posterior means of the images and of their mirror images (the latent training set)."""
    both = torch.cat([images, images.flip(-1)])
    return torch.cat([vae.encode(both[i: i + chunk]).latent_dist.mean for i in range(0, len(both), chunk)])


def train_latent(out: Path = WEIGHTS_DIR, steps: int = 3000, batch: int = 64, lr: float = 3e-4, seed: int = 2) -> dict:
    from diffusers import AutoencoderKL, UNet2DModel

    target = Path(out) / "latent"
    vae = AutoencoderKL.from_pretrained(target / "vae").eval()
    latents = encode_bank(vae, data.load_split("train"))
    scale = float(1.0 / latents.std())
    (target / "latent_scale.json").write_text(json.dumps({"scale": scale}))
    ema, history = train_diffusion(UNet2DModel(**LATENT_UNET), latents * scale, LATENT_SCHEDULE, steps, batch, lr, seed, "latent", flip=False)
    ema.save_pretrained(target / "unet")
    _save_scheduler(target, LATENT_SCHEDULE)
    (target / "train_log.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr, "seed": seed, "scale": scale, "history": history}, indent=1))
    return {"latent_final_loss": history[-1]["loss"], "latent_seconds": history[-1]["seconds"], "latent_scale": scale}


def train_blur(out: Path = WEIGHTS_DIR, steps: int = 1500, seed: int = 3) -> dict:
    """The embedded nonlinear-blur network (operators.nonlinear_blur.train_blur_net)."""
    from operators.nonlinear_blur import train_blur_net

    target = Path(out) / "blur" / "blur_net.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    losses = train_blur_net(data.load_split("train"), target, steps=steps, seed=seed)
    return {"blur_seconds": round(time.time() - t0, 1), **{f"blur_{k}": v for k, v in dict(losses).items() if not isinstance(v, (list, dict))}}


STAGES = {"autoencoder": train_autoencoder, "latent": train_latent, "pixel": train_pixel, "blur": train_blur}
