"""The embedded models' model card: what they were trained on, where, how well they generalise,
and what they sample (measurements in ``quality``).

Also reports the claim EquiReg rests on (paper Sec. 5, Figure 4a): the autoencoder's flip
equivariance error ``||T f(x) - f(T x)||`` (f = D o E) is lower on clean images than on degraded
ones, on the iid report split and on the ood photos, whatever it shows: the measurement is not
tuned to agree with the paper.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch

from . import data, quality
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


def _grid(path: Path, images: torch.Tensor, nrow: int):
    import torchvision

    torchvision.utils.save_image((images + 1) / 2, path, nrow=nrow, padding=1)


def _loss_line(log_path: Path) -> str:
    if not log_path.exists():
        return "(no log)"
    log = json.loads(log_path.read_text())
    h = log["history"]
    where = _where(log)
    return (f"{log['steps']} steps, batch {log['batch']}, lr {log['lr']}, seed {log['seed']}: loss "
            f"{h[0]['loss']:.4f} (step {h[0]['step']}) -> {h[-1]['loss']:.4f} (step {h[-1]['step']}), "
            f"{h[-1]['seconds'] / 60:.1f} min on {where}")


def _where(log: dict) -> str:
    """Where a model was trained, from its log (older logs carry only the device)."""
    host = log.get("host") or {}
    dev = str(host.get("device", log.get("device", "cpu")))
    if dev.startswith("cuda"):
        return host.get("name", "a GPU")
    if host:
        load = host.get("load_average_at_start")
        return (f"CPU ({host.get('torch_threads')} torch thread(s) of a {host.get('cores')}-core machine"
                + (f", load average {load[0]} at start" if load else "") + ")")
    return "CPU"


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
    tried = ", ".join(f"{k} {v.get('tune_recon_psnr', v.get('val_recon_psnr')):.2f} dB" for k, v in cands.items())
    return [f"- Autoencoder choice (`select_autoencoder`, rule fixed before training): the most compressive trained "
            f"variant whose *tune-split* reconstruction PSNR reaches {log.get('min_psnr', 28.0):.0f} dB; only f2c4 is "
            f"trained on this world (both f4 variants missed the floor on the photo world). Tried: {tried}; kept: "
            f"{log.get('variant')}. The report splits play no part in it."]


def write_card(weights: Path = WEIGHTS_DIR, n_samples: int = 64, sample_steps: int = 250, train_info: dict | None = None) -> Path:
    """Measure the embedded models and write ``MODEL_CARD.md``, ``card.json`` and sample grids."""
    torch.manual_seed(0)
    weights = Path(weights)
    sets = {"train": data.load_split("train", n=256), "tune": data.load_split("tune"),
            "tune_ood": data.load_split("tune_ood")}
    report, report_ood = data.load_split("report"), data.load_split("report_ood")
    pixel, latent = _prior("pixel", weights), _prior("latent", weights)
    results = {"data": data.describe(), "train": train_info or {}}
    _grid(weights / "samples_pixel.png", unconditional_samples(pixel, n_samples, sample_steps, 0), 8)
    _grid(weights / "samples_latent.png", unconditional_samples(latent, n_samples, sample_steps, 1), 8)
    _grid(weights / "data_examples.png", torch.cat([sets["tune"][:32], report_ood[::2]]), 8)
    results["generalization"] = quality.generalization(pixel, latent, sets)
    results["mpe_flip_equivariance"] = {"report": quality.equivariance_errors(latent.autoencoder, report),
                                        "report_ood": quality.equivariance_errors(latent.autoencoder, report_ood)}
    (weights / "card.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    (weights / "MODEL_CARD.md").write_text(_render(results, weights))
    return weights / "MODEL_CARD.md"


def _generalization_lines(g: dict) -> list[str]:
    b = g["bound"]
    lines = [f"Bound, stated before training: every held-out (tune-split) Tweedie PSNR within {b['psnr_gap_db']} dB of "
             f"the training images' and its eps-MSE at most {b['eps_mse_ratio']}x theirs; autoencoder reconstruction "
             f"within {b['psnr_gap_db']} dB. Images: " + ", ".join(f"{k} {n}" for k, n in g["images"].items()) + ".",
             "tune_ood (photos) is shown for the distribution shift; the bound is not applied to it.", "",
             "| model | figure | " + " | ".join(g["images"]) + " | gap train - tune | meets bound |",
             "|---|---|" + "---|" * len(g["images"]) + "---|---|"]
    for name in ("pixel", "latent"):
        figs, ok = g[name]["figures"], g[name]["meets_bound_tune"]
        for t in figs["train"]:
            psnr = [figs[k][t]["tweedie_psnr"] for k in g["images"]]
            mse = [figs[k][t]["eps_mse"] for k in g["images"]]
            lines.append(f"| {name} prior | Tweedie PSNR t={t} | " + " | ".join(f"{v:.2f}" for v in psnr)
                         + f" | {psnr[0] - figs['tune'][t]['tweedie_psnr']:+.2f} dB | {'yes' if ok else 'no'} |")
            lines.append(f"| {name} prior | eps-MSE t={t} | " + " | ".join(f"{v:.4f}" for v in mse)
                         + f" | x{figs['tune'][t]['eps_mse'] / mse[0]:.3f} | |")
    ae = g["autoencoder"]["recon_psnr"]
    lines.append("| autoencoder | reconstruction PSNR | " + " | ".join(f"{ae[k]:.2f}" for k in g["images"])
                 + f" | {ae['train'] - ae['tune']:+.2f} dB | {'yes' if g['autoencoder']['meets_bound_tune'] else 'no'} |")
    return lines


def _mpe_lines(mpe: dict, split: str) -> list[str]:
    def verdict(mean, se):
        return "yes" if mean > 2 * se else ("no (lower)" if mean < -2 * se else "no (within noise)")

    n = mpe["clean"].get("n", "?")
    lines = [f"On `{split}` ({n} images):", "",
             "| input | absolute | relative | paired diff abs | paired diff rel | images higher | holds? (abs / rel) |",
             "|---|---|---|---|---|---|---|"]
    for name, v in mpe.items():
        if name == "clean":
            lines.append(f"| clean | {v['abs_mean']:.3f} ({v['abs_std']:.3f}) | {v['rel_mean']:.3f} ({v['rel_std']:.3f}) | - | - | - | - |")
            continue
        lines.append(
            f"| {name} | {v['abs_mean']:.3f} ({v['abs_std']:.3f}) | {v['rel_mean']:.3f} ({v['rel_std']:.3f}) "
            f"| {v['abs_diff_mean']:+.3f} ({v['abs_diff_se']:.3f}) | {v['rel_diff_mean']:+.4f} ({v['rel_diff_se']:.4f}) "
            f"| {100 * v['frac_images_higher_abs']:.0f}% | {verdict(v['abs_diff_mean'], v['abs_diff_se'])} / "
            f"{verdict(v['rel_diff_mean'], v['rel_diff_se'])} |")
    return lines + [""]


def _render(r: dict, weights: Path) -> str:
    ae_arch, latent_arch = _architecture_lines(weights)
    d = r["data"]
    splits = "; ".join(f"`{s}` ({v['role']}, {v['images']} images, "
                       + (f"seeds {v['seeds'][0]}..{v['seeds'][1]}" if "seeds" in v else "photos " + ", ".join(v["photos"]))
                       + ")" for s, v in d["splits"].items())
    lines = [
        "# Embedded world: model card",
        "",
        "Tiny models trained by `equibench train-embedded`, so that every solver, sweep and report runs offline.",
        "They are *not* the paper's FFHQ/ImageNet models: numbers made with them test the machinery and show",
        "trends at 32x32, not the paper's absolute values. Where each was trained is in its row below.",
        "",
        "## Data (`solvers/embedded/data.py`)",
        f"- In distribution: {d['model']}; palette photos {', '.join(d['palette_photos'])} (used by no other role).",
        f"- Splits: {splits}.",
        f"- Training augmentation: {d['augmentation']}. Examples (tune split, then report_ood photos): `data_examples.png`.",
        "",
        "## Models (diffusers layout, loaded with `solvers.loaders.load_prior({'kind': 'embedded', 'name': 'pixel' | 'latent'})`)",
        "| model | architecture | schedule | training |",
        "|---|---|---|---|",
        f"| pixel prior (`pixel/`) | UNet2DModel 32/64/64, attention at 8x8, eps | linear 1e-4..0.02, T=1000 | {_loss_line(weights / 'pixel' / 'train_log.json')} |",
        f"| autoencoder (`latent/vae`) | {ae_arch} | - | {_loss_line(weights / 'latent' / 'vae_train_log.json')} |",
        f"| latent prior (`latent/unet`) | {latent_arch} | sqrt-linear 0.0015..0.0195 | {_loss_line(weights / 'latent' / 'train_log.json')} |",
        "| blur network (`blur/`) | the nonlinear-blur forward operator (not a prior) | - | trained on the earlier photo bank; an operator, kept |",
        "",
        "## Generalisation (train vs held-out)",
        *_generalization_lines(r["generalization"]),
        "",
        *_selection_lines(weights),
        "- Unconditional samples (250 ancestral steps; pixel x0 estimates clipped to [-1, 1] as guided-diffusion does): "
        "`samples_pixel.png`, `samples_latent.png`.",
        "",
        "## Is the autoencoder manifold-preferential? (paper Sec. 5, Figure 4a)",
        "Flip equivariance error of f = D o E, ||flip(f(x)) - f(flip(x))||, mean (std); relative = divided by ||f(x)||.",
        "Differences are paired per image against the clean input, mean (standard error); the claim holds for a",
        "degradation when the paired difference is positive by more than 2 standard errors.",
        "",
    ]
    for split, mpe in r["mpe_flip_equivariance"].items():
        lines += _mpe_lines(mpe, split)
    lines += ["Reproduce: `make train-embedded` (all stages, then this card; `equibench train-embedded --device cuda` "
              "on a GPU). GPU kernels are not bitwise reproducible: a rerun gives statistically, not exactly, equal models.", ""]
    return "\n".join(lines)
