"""Measurements of the embedded models for the model card: generalisation and the MPE property.

- ``generalization``: per model, the same figures on training images and on held-out images
  (the tune split, and the tune-ood photos): eps-prediction MSE and the PSNR of Tweedie's
  estimate (decoded, for the latent prior) at fixed timesteps, with fixed noise; the autoencoder's
  reconstruction PSNR. ``GENERALIZATION_BOUND`` is the bound the card checks; it was written down
  before the first model of this world was trained.
- ``equivariance_errors``: the flip equivariance error ``||T f(x) - f(T x)||`` of f = D o E per
  degradation, raw and relative, paired per image against the clean input (paper Sec. 5, Fig. 4a);
  reported whatever it shows.
"""
from __future__ import annotations

import math

import torch

from solvers.psnr import psnr as _psnr  # the project's one PSNR (images in [-1, 1])

TIMESTEPS = (20, 50, 200)
#: held-out figures may trail the training ones by at most this much (stated before training)
GENERALIZATION_BOUND = {"psnr_gap_db": 1.5, "eps_mse_ratio": 1.15}
SETS = ("train", "tune", "tune_ood")


@torch.no_grad()
def diffusion_figures(prior, x: torch.Tensor, timesteps=TIMESTEPS, seed: int = 0, chunk: int = 64) -> dict:
    """``{t: {"eps_mse", "tweedie_psnr"}}`` on images ``x`` (a latent prior works on ``encode(x)``
    and its Tweedie estimate is decoded before the PSNR against ``x``)."""
    out = {}
    for t in timesteps:
        mse, psnr = [], []
        for i in range(0, len(x), chunk):
            xi = x[i: i + chunk]
            v = prior.encode(xi) if prior.space == "latent" else xi
            g = torch.Generator().manual_seed(seed * 1000 + t * 7 + i)
            n = torch.randn(v.shape, generator=g)
            a = float(prior.schedule.alphas_cumprod[t])
            v_t = math.sqrt(a) * v + math.sqrt(1 - a) * n
            tt = torch.full((len(v),), t)
            eps = prior.eps(v_t, tt)
            mse.append((eps - n).pow(2).flatten(1).mean(1))
            x0 = prior.x0_from_eps(v_t, tt, eps)
            psnr.append(_psnr(prior.decode(x0) if prior.space == "latent" else x0, xi))
        out[int(t)] = {"eps_mse": float(torch.cat(mse).mean()), "tweedie_psnr": float(torch.cat(psnr).mean())}
    return out


@torch.no_grad()
def reconstruction_psnr(autoencoder, x: torch.Tensor) -> float:
    """Mean PSNR of ``D(E(x))`` against ``x``."""
    return float(_psnr(autoencoder.decode(autoencoder.encode(x)), x).mean())


def _meets(train: dict, held: dict) -> bool:
    b = GENERALIZATION_BOUND
    return all(train[t]["tweedie_psnr"] - held[t]["tweedie_psnr"] <= b["psnr_gap_db"]
               and held[t]["eps_mse"] <= b["eps_mse_ratio"] * train[t]["eps_mse"] for t in train)


def generalization(pixel, latent, sets: dict[str, torch.Tensor]) -> dict:
    """Train vs held-out figures of the pixel prior, the latent prior and the autoencoder."""
    res = {"bound": dict(GENERALIZATION_BOUND), "images": {k: int(len(v)) for k, v in sets.items()}}
    for name, prior in (("pixel", pixel), ("latent", latent)):
        figs = {k: diffusion_figures(prior, v) for k, v in sets.items()}
        res[name] = {"figures": figs, "meets_bound_tune": _meets(figs["train"], figs["tune"])}
    ae = {k: reconstruction_psnr(latent.autoencoder, v) for k, v in sets.items()}
    res["autoencoder"] = {"recon_psnr": ae,
                          "meets_bound_tune": ae["train"] - ae["tune"] <= GENERALIZATION_BOUND["psnr_gap_db"]}
    return res


def _degradations(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Off-manifold versions of the images (deterministic)."""
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
                      "frac_images_higher_abs": float((d_abs > 0).float().mean()), "n": int(len(err))}
    return rows
