"""Train the embedded world's models: pixel prior, autoencoder (the MPE function), latent prior.

Why diffusers modules: the embedded models are saved with ``save_pretrained`` in the same layout as
real checkpoints, so the embedded world exercises the real loaders (``solvers.loaders``).

- pixel prior: ``UNet2DModel`` (32/64/64 channels, attention at 8x8, 1.1 M parameters), eps
  prediction, DDPM linear betas 1e-4..0.02, T=1000 (the DPS/DAPS pixel setting), Adam, EMA.
- autoencoder: ``AutoencoderKL`` with MSE + a small KL weight and random horizontal flips (the
  EquiReg MPE function must see both orientations: paper Sec. 5). The shipped one is picked by
  ``select_autoencoder`` from ``AUTOENCODER_VARIANTS`` (f4 4ch, f4 8ch, f2 4ch) by a rule fixed
  before any solver ran on it: the most compressive variant whose validation reconstruction PSNR
  reaches ``MIN_RECON_PSNR``. Why a floor: a latent solver's output is ``D(z)``, so it can never be
  better than the autoencoder's reconstruction; the first embedded autoencoder (f4 4ch, 24.0 dB)
  sat below the blurred measurement itself (24.7 dB), which made every latent solver lose to the
  naive inverse by construction.
- latent prior: ``UNet2DModel`` on the scaled latents, LDM's sqrt-linear betas 0.0015..0.0195,
  shaped after the autoencoder's latent.

Every run is seeded; step counts are arguments so a quick reproduction and the full run share code.
``device`` moves training to a GPU (the shipped weights' card says where they were trained; GPU
kernels are not bitwise reproducible, so a CPU rerun gives statistically, not exactly, equal models).
"""
from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from solvers.psnr import psnr

from . import data

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

PIXEL_UNET = dict(
    sample_size=32, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
    up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=16, attention_head_dim=32,
)


def autoencoder_config(levels: int, latent_channels: int) -> dict:
    """AutoencoderKL kwargs: ``levels`` resolution levels (downsampling f = 2**(levels-1))."""
    widths = (32, 64, 64)[:levels]
    return dict(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=widths, layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=16, sample_size=32,
    )


#: candidates, most compressive first (32x32x3 = 3072 numbers per image)
AUTOENCODER_VARIANTS = {
    "f4c4": autoencoder_config(3, 4),  # 4x8x8 = 256 numbers (12x), the LDM-VQ-f4 shape
    "f4c8": autoencoder_config(3, 8),  # 8x8x8 = 512 (6x)
    "f2c4": autoencoder_config(2, 4),  # 4x16x16 = 1024 (3x)
}
#: the variant ``select_autoencoder`` kept for the shipped weights (MODEL_CARD.md)
SHIPPED_AUTOENCODER = "f2c4"
AUTOENCODER = AUTOENCODER_VARIANTS[SHIPPED_AUTOENCODER]
#: the floor of ``select_autoencoder``: 3 dB above the embedded blurred measurement's PSNR on photos (24.7 dB)
MIN_RECON_PSNR = 28.0
#: variants ``select_autoencoder`` trains by default. On the photo world both f4 variants missed the floor
#: (25.0 and 26.4 dB against f2c4's 29.0), so on the dead-leaves world (sharper edges) only f2c4 is trained,
#: a choice fixed before training; the floor is still checked, on the tune split, and reported.
SELECTED_VARIANTS = ("f2c4",)


def latent_unet_config(vae_config: dict) -> dict:
    """UNet2DModel kwargs for the latent of an autoencoder config (attention at half resolution)."""
    factor = 2 ** (len(vae_config["block_out_channels"]) - 1)
    c = int(vae_config["latent_channels"])
    return dict(
        sample_size=int(vae_config["sample_size"]) // factor, in_channels=c, out_channels=c, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"), norm_num_groups=16, attention_head_dim=32,
    )


LATENT_UNET = latent_unet_config(AUTOENCODER)
PIXEL_SCHEDULE = dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
LATENT_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear")


def _d4_batch(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image under a uniformly random element of D4 (the dead-leaves law is D4-invariant)."""
    k = torch.randint(0, 4, (x.shape[0],), generator=gen)
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return torch.stack([torch.rot90(v, int(r), (-2, -1)) for v, r in zip(x, k)])


def _host(device) -> dict:
    """Where a model is being trained (written into its log and the model card)."""
    import os

    dev = torch.device(device)
    if dev.type == "cuda":
        return {"device": str(dev), "name": torch.cuda.get_device_name(dev)}
    return {"device": "cpu", "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}


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
                    seed: int, tag: str, flip: bool, log_every: int = 100, ema_decay: float = 0.999,
                    device: str = "cpu"):
    """Denoising-score-matching training of an eps-predicting UNet; returns (ema model on CPU, loss history).

    Random draws come from one seeded CPU generator whatever the device, so the data order and
    noise are the same on CPU and GPU.
    """
    from solvers.priors import VPSchedule

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    abar = VPSchedule.from_diffusers_config(schedule_cfg).alphas_cumprod.float()
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    ema = _EMA(model, ema_decay)
    history, loss_sum, count, t0 = [], 0.0, 0, time.time()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
        x0 = images[idx]
        if flip:
            x0 = _d4_batch(x0, gen)
        t = torch.randint(0, abar.numel(), (batch,), generator=gen)
        n = torch.randn(x0.shape, generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        x0, n, a, t = x0.to(device), n.to(device), a.to(device), t.to(device)
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
        loss_sum, count = loss_sum + loss.detach(), count + 1
        if step % log_every == 0 or step == steps:
            _log(history, step, float(loss_sum), count, t0, tag, log_every)
            loss_sum, count = 0.0, 0
    return ema.module.cpu(), history


def train_autoencoder_model(images: torch.Tensor, steps: int, batch: int, lr: float, seed: int,
                            kl_weight: float = 1e-6, log_every: int = 100, config: dict | None = None,
                            device: str = "cpu"):
    """MSE + KL training of the tiny AutoencoderKL with random flips; returns (model on CPU, history)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = AutoencoderKL(**(config or AUTOENCODER)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history, loss_sum, count, t0 = [], 0.0, 0, time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
        x = _d4_batch(images[idx], gen).to(device)
        post = model.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen).to(device)
        rec = model.decode(z).sample
        kl = post.kl().mean() / math.prod(x.shape[1:])
        loss = F.mse_loss(rec, x) + kl_weight * kl
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, step / 100) * (0.5 * (1 + math.cos(math.pi * step / steps)) * 0.9 + 0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum, count = loss_sum + loss.detach(), count + 1
        if step % log_every == 0 or step == steps:
            _log(history, step, float(loss_sum), count, t0, "autoencoder", log_every)
            loss_sum, count = 0.0, 0
    return model.cpu().eval().requires_grad_(False), history


def _save_scheduler(path: Path, cfg: dict):
    from diffusers import DDPMScheduler

    DDPMScheduler(**cfg, clip_sample=False).save_pretrained(path / "scheduler")


def train_pixel(out: Path = WEIGHTS_DIR, steps: int = 2500, batch: int = 32, lr: float = 5e-4, seed: int = 0,
                device: str = "cpu", n_images: int | None = None) -> dict:
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    images = data.load_split("train", n=n_images)
    host = _host(device)
    ema, history = train_diffusion(UNet2DModel(**PIXEL_UNET), images, PIXEL_SCHEDULE, steps, batch, lr, seed, "pixel",
                                   flip=True, device=device)
    target = Path(out) / "pixel"
    ema.save_pretrained(target / "unet")
    _save_scheduler(target, PIXEL_SCHEDULE)
    (target / "train_log.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr, "seed": seed,
                                                       "device": str(device), "host": host, "history": history}, indent=1))
    return {"pixel_final_loss": history[-1]["loss"], "pixel_seconds": history[-1]["seconds"]}


@torch.no_grad()
def reconstruction_psnr(vae, images: torch.Tensor, chunk: int = 256) -> float:
    """Mean per-image PSNR (images in [-1, 1], peak-to-peak 2) of ``D(E(x))`` with the posterior mean."""
    vals = []
    for i in range(0, len(images), chunk):
        x = images[i: i + chunk]
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        vals.append(psnr(rec, x))
    return float(torch.cat(vals).mean())


def _save_autoencoder(model, history: list, out: Path, record: dict) -> None:
    target = Path(out) / "latent"
    model.save_pretrained(target / "vae")
    (target / "vae_train_log.json").write_text(json.dumps({**record, "history": history}, indent=1))


def train_autoencoder(out: Path = WEIGHTS_DIR, steps: int = 1500, batch: int = 32, lr: float = 1e-3, seed: int = 1,
                      variant: str = SHIPPED_AUTOENCODER, device: str = "cpu", n_images: int | None = None) -> dict:
    """One autoencoder variant, saved as the embedded MPE function (no reconstruction floor)."""
    if variant not in AUTOENCODER_VARIANTS:
        raise ValueError(f"unknown autoencoder variant {variant!r}; allowed: {list(AUTOENCODER_VARIANTS)}")
    return select_autoencoder(out, steps, batch, lr, seed, variants=(variant,), min_psnr=-math.inf, device=device,
                              n_images=n_images)


def select_autoencoder(out: Path = WEIGHTS_DIR, steps: int = 1500, batch: int = 32, lr: float = 1e-3, seed: int = 1,
                       variants=SELECTED_VARIANTS, min_psnr: float = MIN_RECON_PSNR,
                       device: str = "cpu", n_images: int | None = None) -> dict:
    """Train the candidate autoencoders in order (most compressive first) and keep the first whose
    *tune-split* reconstruction PSNR reaches ``min_psnr`` (else the best one). The rule was fixed
    before any solver ran on the result; every candidate's PSNR is logged with the choice. The
    report splits are never seen here."""
    images, val = data.load_split("train", n=n_images), data.load_split("tune")
    host = _host(device)
    tried, chosen = {}, None
    for name in variants:
        model, history = train_autoencoder_model(images, steps, batch, lr, seed, config=AUTOENCODER_VARIANTS[name],
                                                 device=device)
        psnr = reconstruction_psnr(model, val)
        tried[name] = {"tune_recon_psnr": psnr, "final_loss": history[-1]["loss"], "seconds": history[-1]["seconds"]}
        print(f"[autoencoder {name}] tune-split reconstruction PSNR {psnr:.2f} dB", flush=True)
        if chosen is None or psnr > chosen[2] or psnr >= min_psnr:
            chosen = (name, model, psnr, history)
        if psnr >= min_psnr:
            break
    name, model, psnr, history = chosen
    _save_autoencoder(model, history, out, {"steps": steps, "batch": batch, "lr": lr, "seed": seed, "variant": name,
                                            "device": str(device), "host": host, "tune_recon_psnr": psnr,
                                            "min_psnr": min_psnr,
                                            "candidates": tried})
    return {"autoencoder_variant": name, "autoencoder_tune_psnr": psnr, "autoencoder_candidates": tried,
            "autoencoder_final_loss": history[-1]["loss"], "autoencoder_seconds": history[-1]["seconds"]}


@torch.no_grad()
def encode_bank(vae, images: torch.Tensor, chunk: int = 256, seed: int = 5) -> torch.Tensor:
    """Posterior means of the images and of one random D4 transform of each (the latent training set:
    a latent cannot be rotated, so the group enters through the images)."""
    both = torch.cat([images, _d4_batch(images, torch.Generator().manual_seed(seed))])
    return torch.cat([vae.encode(both[i: i + chunk]).latent_dist.mean for i in range(0, len(both), chunk)])


def train_latent(out: Path = WEIGHTS_DIR, steps: int = 1200, batch: int = 64, lr: float = 5e-4, seed: int = 2,
                 device: str = "cpu", n_images: int | None = None) -> dict:
    """The latent prior on the saved autoencoder's latents (its shape follows the autoencoder)."""
    from diffusers import AutoencoderKL, UNet2DModel

    target = Path(out) / "latent"
    vae = AutoencoderKL.from_pretrained(target / "vae").eval()
    latents = encode_bank(vae, data.load_split("train", n=n_images))
    scale = float(1.0 / latents.std())
    (target / "latent_scale.json").write_text(json.dumps({"scale": scale}))
    unet = UNet2DModel(**latent_unet_config(dict(vae.config)))
    host = _host(device)
    ema, history = train_diffusion(unet, latents * scale, LATENT_SCHEDULE, steps, batch, lr, seed, "latent", flip=False,
                                   device=device)
    ema.save_pretrained(target / "unet")
    _save_scheduler(target, LATENT_SCHEDULE)
    (target / "train_log.json").write_text(json.dumps({"steps": steps, "batch": batch, "lr": lr, "seed": seed, "scale": scale,
                                                       "device": str(device), "host": host, "history": history}, indent=1))
    return {"latent_final_loss": history[-1]["loss"], "latent_seconds": history[-1]["seconds"], "latent_scale": scale}


def train_blur(out: Path = WEIGHTS_DIR, steps: int = 1500, seed: int = 3) -> dict:
    """The embedded nonlinear-blur network (operators.nonlinear_blur.train_blur_net)."""
    from operators.nonlinear_blur import train_blur_net

    target = Path(out) / "blur" / "blur_net.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    losses = train_blur_net(data.load_split("train"), target, steps=steps, seed=seed)
    return {"blur_seconds": round(time.time() - t0, 1), **{f"blur_{k}": v for k, v in dict(losses).items() if not isinstance(v, (list, dict))}}


STAGES = {"autoencoder": select_autoencoder, "latent": train_latent, "pixel": train_pixel, "blur": train_blur}
