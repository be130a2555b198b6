"""The embedded models' model card: what they were trained on, how well, and what they sample.

Also measures the claim EquiReg rests on (paper Sec. 5, Figure 4a): the autoencoder's flip
equivariance error ``||T f(x) - f(T x)||`` (f = D o E) is lower on clean validation images than on
degraded ones. Reported raw and normalised by ``||f(x)||``, mean and std over the validation set,
per degradation, whatever it shows: the measurement is not tuned to agree with the paper.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch

from . import data
from .train import WEIGHTS_DIR


def _prior(kind: str, root: Path):
    from solvers.loaders import load_prior

    return load_prior({"kind": "embedded", "name": kind, "root": str(root)})


@torch.no_grad()
def unconditional_samples(prior, n: int, num_steps: int, seed: int) -> torch.Tensor:
    """Ancestral (DDPM) samples through the shared sampler skeleton, decoded to images."""
    from solvers.api import RowMonitor
    from solvers.rng import make_generators, row_seed
    from solvers.sampler import guided_loop, initial_noise

    gens = make_generators([row_seed("card", seed, i) for i in range(n)])
    ctx = SimpleNamespace(prior=prior, num_steps=num_steps, generators=gens, monitor=RowMonitor(n, "cpu"))
    # clip_denoised as guided-diffusion samples by default (a pixel prior only: latents are unbounded)
    x = guided_loop(ctx, initial_noise(prior, gens, torch.float32, "cpu"), update="ddpm", clamp=prior.space == "pixel")
    return (prior.decode(x) if prior.space == "latent" else x).clamp(-1, 1)


def _degradations(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Off-manifold versions of the validation images (deterministic)."""
    from operators import build_operator

    g = torch.Generator().manual_seed(0)
    shape = tuple(x.shape[1:])
    out = {"clean": x}
    out["gaussian_blur_std1.5"] = build_operator("gaussian_blur", shape, seeds=0, std=1.5)(x)
    box = build_operator("box_inpainting", shape, seeds=list(range(len(x))))
    out["box_masked_16px"] = box(x)
    for s in (0.05, 0.1, 0.2, 0.4):
        out[f"noise_{s}"] = x + s * torch.randn(x.shape, generator=g)
    return out


@torch.no_grad()
def equivariance_errors(autoencoder, x: torch.Tensor) -> dict[str, dict]:
    """Flip equivariance error of ``f = D o E`` per degradation: mean/std, raw and relative."""
    def f(v):
        return autoencoder.decode(autoencoder.encode(v))

    rows, clean = {}, None
    for name, v in _degradations(x).items():
        fx = f(v)
        err = (fx.flip(-1) - f(v.flip(-1))).flatten(1).norm(dim=1)
        rel = err / fx.flatten(1).norm(dim=1)
        clean = clean if clean is not None else (err, rel)
        d_abs, d_rel = err - clean[0], rel - clean[1]  # paired per image against the clean input
        se = len(err) ** -0.5
        rows[name] = {"abs_mean": float(err.mean()), "abs_std": float(err.std()),
                      "rel_mean": float(rel.mean()), "rel_std": float(rel.std()),
                      "abs_diff_mean": float(d_abs.mean()), "abs_diff_se": float(d_abs.std() * se),
                      "rel_diff_mean": float(d_rel.mean()), "rel_diff_se": float(d_rel.std() * se),
                      "frac_images_higher_abs": float((d_abs > 0).float().mean())}
    return rows


@torch.no_grad()
def reconstruction_psnr(autoencoder, x: torch.Tensor) -> float:
    rec = autoencoder.decode(autoencoder.encode(x)).clamp(-1, 1)
    mse = ((rec - x) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1 / mse)).mean())


@torch.no_grad()
def denoiser_psnr(prior, x: torch.Tensor, t: int = 100, seed: int = 0) -> tuple[float, float]:
    """PSNR of the noisy input ``x_t / sqrt(abar)`` and of Tweedie's estimate at timestep ``t``."""
    g = torch.Generator().manual_seed(seed)
    a = float(prior.schedule.alphas_cumprod[t])
    n = torch.randn(x.shape, generator=g)
    x_t = math.sqrt(a) * x + math.sqrt(1 - a) * n
    x0 = prior.tweedie(x_t, torch.full((len(x),), t)).clamp(-1, 1)

    def psnr(v):
        return float((10 * torch.log10(4 / (v - x).pow(2).flatten(1).mean(1))).mean())

    return psnr((x_t / math.sqrt(a)).clamp(-1, 1)), psnr(x0)


def _grid(path: Path, images: torch.Tensor, nrow: int):
    import torchvision

    torchvision.utils.save_image((images + 1) / 2, path, nrow=nrow, padding=1)


def _loss_line(log_path: Path) -> str:
    if not log_path.exists():
        return "(no log)"
    log = json.loads(log_path.read_text())
    h = log["history"]
    where = log.get("device", "cpu")
    where = "2 CPU cores" if where == "cpu" else ("an NVIDIA H200 GPU" if where.startswith("cuda") else where)
    return (f"{log['steps']} steps, batch {log['batch']}, lr {log['lr']}, seed {log['seed']}: loss "
            f"{h[0]['loss']:.4f} (step {h[0]['step']}) -> {h[-1]['loss']:.4f} (step {h[-1]['step']}), "
            f"{h[-1]['seconds'] / 60:.1f} min on {where}")


def _config(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _architecture_lines(weights: Path) -> tuple[str, str]:
    """Autoencoder and latent-prior descriptions read from their saved configs."""
    from .train import latent_unet_config

    vae, unet = _config(weights / "latent" / "vae" / "config.json"), _config(weights / "latent" / "unet" / "config.json")
    widths = vae.get("block_out_channels", [])
    c, side = vae.get("latent_channels", "?"), latent_unet_config(vae)["sample_size"]
    ae = f"AutoencoderKL {'/'.join(map(str, widths))} -> {c}x{side}x{side} latent (f{vae.get('sample_size', 32) // side})"
    lat = (f"UNet2DModel {'/'.join(map(str, unet.get('block_out_channels', [])))} on {c}x{side}x{side}, "
           f"attention at {side // 2}x{side // 2}")
    return ae, lat


def _selection_lines(weights: Path) -> list[str]:
    log = _config(weights / "latent" / "vae_train_log.json")
    cands = log.get("candidates")
    if not cands:
        return []
    tried = ", ".join(f"{k} {v['val_recon_psnr']:.2f} dB ({v.get('steps', '?')} steps)" for k, v in cands.items())
    return [f"- Autoencoder choice (`select_autoencoder`, rule fixed before any solver ran on it): the most compressive "
            f"variant whose validation reconstruction PSNR reaches {log.get('min_psnr', 28.0):.0f} dB, so that a latent "
            f"solver's ceiling (D(z)) sits above the blurred measurement (24.7 dB). Tried: {tried}; kept: "
            f"{log.get('variant')}. {log.get('selection_note', '')}".rstrip()]


def write_card(weights: Path = WEIGHTS_DIR, n_samples: int = 64, sample_steps: int = 250, train_info: dict | None = None) -> Path:
    """Measure the embedded models and write ``MODEL_CARD.md``, ``card.json`` and sample grids."""
    torch.manual_seed(0)
    weights = Path(weights)
    val = data.load_split("val")
    pixel, latent = _prior("pixel", weights), _prior("latent", weights)
    results = {"data": data.describe(), "train": train_info or {}}
    _grid(weights / "samples_pixel.png", unconditional_samples(pixel, n_samples, sample_steps, 0), 8)
    _grid(weights / "samples_latent.png", unconditional_samples(latent, n_samples, sample_steps, 1), 8)
    _grid(weights / "val_examples.png", val[:n_samples], 8)
    results["autoencoder_val_psnr"] = reconstruction_psnr(latent.autoencoder, val)
    results["pixel_denoiser_t100"] = dict(zip(("noisy_psnr", "tweedie_psnr"), denoiser_psnr(pixel, val)))
    results["mpe_flip_equivariance"] = equivariance_errors(latent.autoencoder, val)
    (weights / "card.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    (weights / "MODEL_CARD.md").write_text(_render(results, weights))
    return weights / "MODEL_CARD.md"


def _render(r: dict, weights: Path) -> str:
    mpe = r["mpe_flip_equivariance"]
    ae_arch, latent_arch = _architecture_lines(weights)
    lines = [
        "# Embedded world: model card",
        "",
        "Tiny models trained by `equibench train-embedded` on 2 CPU cores, so that every solver, sweep and",
        "report runs offline. They are *not* the paper's FFHQ/ImageNet models: numbers made with them test",
        "the machinery and show trends at 32x32, not the paper's absolute values.",
        "",
        "## Data",
        f"- 32x32 RGB crops in [-1, 1]. Train: {r['data']['train_images']} crops of {len(r['data']['train_sources'])} scikit-image photos "
        f"({', '.join(r['data']['train_sources'])}), random horizontal flips.",
        f"- Validation: {r['data']['val_images']} crops of 4 *other* photos ({', '.join(r['data']['val_sources'])}): no validation photo is seen in training.",
        "",
        "## Models (diffusers layout, loaded with `solvers.loaders.load_prior({'kind': 'embedded', 'name': 'pixel' | 'latent'})`)",
        "| model | architecture | schedule | training |",
        "|---|---|---|---|",
        f"| pixel prior (`pixel/`) | UNet2DModel 32/64/64, attention at 8x8, eps | linear 1e-4..0.02, T=1000 | {_loss_line(weights / 'pixel' / 'train_log.json')} |",
        f"| autoencoder (`latent/vae`) | {ae_arch} | - | {_loss_line(weights / 'latent' / 'vae_train_log.json')} |",
        f"| latent prior (`latent/unet`) | {latent_arch} | sqrt-linear 0.0015..0.0195 | {_loss_line(weights / 'latent' / 'train_log.json')} |",
        "",
        "## Quality",
        f"- Autoencoder reconstruction PSNR on validation: {r['autoencoder_val_psnr']:.2f} dB.",
        *_selection_lines(weights),
        f"- Pixel denoiser at t=100: noisy input {r['pixel_denoiser_t100']['noisy_psnr']:.2f} dB -> Tweedie estimate "
        f"{r['pixel_denoiser_t100']['tweedie_psnr']:.2f} dB.",
        "- Unconditional samples (250 ancestral steps; pixel x0 estimates clipped to [-1, 1] as guided-diffusion does): `samples_pixel.png`, `samples_latent.png`; validation images for",
        "  comparison: `val_examples.png`.",
        "",
        "## Is the autoencoder manifold-preferential? (paper Sec. 5, Figure 4a)",
        "Flip equivariance error of f = D o E on the 64 validation images, ||flip(f(x)) - f(flip(x))||, mean (std);",
        "relative = divided by ||f(x)||. Differences are paired per image against the clean input, mean (standard",
        "error); the claim holds for a degradation when the paired difference is positive by more than 2 standard errors.",
        "",
        "| input | absolute | relative | paired diff abs | paired diff rel | images higher | holds? (abs / rel) |",
        "|---|---|---|---|---|---|---|",
    ]

    def verdict(mean, se):
        return "yes" if mean > 2 * se else ("no (lower)" if mean < -2 * se else "no (within noise)")

    for name, v in mpe.items():
        if name == "clean":
            lines.append(f"| clean | {v['abs_mean']:.3f} ({v['abs_std']:.3f}) | {v['rel_mean']:.3f} ({v['rel_std']:.3f}) | - | - | - | - |")
            continue
        lines.append(
            f"| {name} | {v['abs_mean']:.3f} ({v['abs_std']:.3f}) | {v['rel_mean']:.3f} ({v['rel_std']:.3f}) "
            f"| {v['abs_diff_mean']:+.3f} ({v['abs_diff_se']:.3f}) | {v['rel_diff_mean']:+.4f} ({v['rel_diff_se']:.4f}) "
            f"| {100 * v['frac_images_higher_abs']:.0f}% | {verdict(v['abs_diff_mean'], v['abs_diff_se'])} / "
            f"{verdict(v['rel_diff_mean'], v['rel_diff_se'])} |")
    lines += ["", "Reproduce: `make train-embedded` (all stages, then this card; `equibench train-embedded --device cuda` "
              "trains on a GPU as the shipped autoencoder and latent prior were, in `benchmarks/gpu_session.sh`). GPU "
              "kernels are not bitwise reproducible: a rerun gives statistically, not exactly, equal models.", ""]
    return "\n".join(lines)
