"""``solvers.loaders`` kinds stored as diffusers folders: the embedded world, diffusers pixel
UNets, latent diffusion models (``diffusers_ldm``) and the autoencoders (``sd_vae``,
``diffusers_vae``, ``diffusers_ldm``, ``embedded``); the layouts, scale rules and failure modes are
``solvers.loaders``'s docstring. Each prior kind also says, from its config files alone, what a
spec check needs (``info``: image size, channels, the files it reads)."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Callable

from torch import nn

from .loaders import AUTOENCODER_LOADERS, EMBEDDED_ROOT, _first_keys, _read_json, _register, _spec_path, register_prior
from .priors import Autoencoder, LatentPrior, Prior, UNetPrior, VPSchedule

_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")
_SUPPORTED_PREDICTION = ("epsilon",)
_HAVE_ACCELERATE = importlib.util.find_spec("accelerate") is not None  # else diffusers nags on every load


def _weights_file(folder: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"diffusers weights: file not found: {folder / _WEIGHT_FILES[0]} "
                            f"(nor {', '.join(_WEIGHT_FILES[1:])})")



def _diffusers_classes() -> dict[str, type]:
    from diffusers import AutoencoderKL, UNet2DModel, VQModel
    return {"UNet2DModel": UNet2DModel, "VQModel": VQModel, "AutoencoderKL": AutoencoderKL}


def _load_diffusers(folder: Path, allowed: tuple[str, ...]) -> tuple[nn.Module, dict]:
    """Load a diffusers model folder strictly; returns (model, raw config.json dict).

    The class comes from the config's ``_class_name`` and must be one of ``allowed``.
    """
    cfg_path = folder / "config.json"
    cfg = _read_json(cfg_path, "diffusers model config")
    cls_name = cfg.get("_class_name")
    if cls_name not in allowed:
        raise ValueError(f"{cfg_path}: _class_name {cls_name!r} is not one of {list(allowed)}")
    weights = _weights_file(folder)
    cls = _diffusers_classes()[cls_name]
    try:
        model, info = cls.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                          low_cpu_mem_usage=_HAVE_ACCELERATE)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise ValueError(f"{weights}: does not load into {cls_name} as configured in {cfg_path}: "
                         f"{str(exc)[:800]}") from exc
    problems = []
    for label in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(label):
            problems.append(f"{label.replace('_', ' ')}: {_first_keys(info[label])}")
    if problems:
        raise ValueError(f"{weights}: state dict does not match {cls_name} ({cfg_path}); " + "; ".join(problems))
    return model, cfg


def _load_schedule(folder: Path) -> VPSchedule:
    cfg_path = folder / "scheduler_config.json"
    cfg = _read_json(cfg_path, "diffusers scheduler config")
    pred = cfg.get("prediction_type", "epsilon")
    if pred not in _SUPPORTED_PREDICTION:
        raise ValueError(f"{cfg_path}: prediction_type {pred!r} is not supported; allowed: {list(_SUPPORTED_PREDICTION)}")
    try:
        return VPSchedule.from_diffusers_config(cfg)
    except ValueError as exc:
        raise ValueError(f"{cfg_path}: {exc}") from exc


def _hw(size) -> tuple[int, int]:
    if isinstance(size, (list, tuple)):
        return int(size[0]), int(size[-1])
    return int(size), int(size)



# --------------------------------------------------------------------------- autoencoders
class KLCodec(nn.Module):
    """A diffusers ``AutoencoderKL`` as a deterministic map: ``encode`` returns the posterior mean.

    The mean (not a sample) keeps the MPE function and latent initialisations deterministic per row.
    """

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def encode(self, x):
        return self.vae.encode(x).latent_dist.mode()

    def decode(self, z):
        return self.vae.decode(z).sample


class VQCodec(nn.Module):
    """A diffusers ``VQModel``: ``encode`` gives the pre-quantisation latents (as LDM's
    ``VQModelInterface.encode``); ``decode`` quantises first unless ``quantize=False`` (the
    quantiser passes gradients straight through)."""

    def __init__(self, vae: nn.Module, quantize: bool = True):
        super().__init__()
        self.vae, self.quantize = vae, bool(quantize)

    def encode(self, x):
        return self.vae.encode(x).latents

    def decode(self, z):
        return self.vae.decode(z, force_not_quantize=not self.quantize).sample


def _codec_kl(vae, cfg, spec):
    return KLCodec(vae), cfg.get("latent_channels", 4)


def _codec_vq(vae, cfg, spec):
    return VQCodec(vae, spec.get("vq_quantize", True)), cfg.get("vq_embed_dim") or cfg.get("latent_channels", 3)


#: Per autoencoder class: the codec wrapper, whether ``config.json``'s ``scaling_factor`` means
#: anything, and the scale when nothing else gives one. diffusers' LDM pipelines never apply a
#: VQModel's ``scaling_factor`` (whose default 0.18215 every saved VQ config now carries), so VQ
#: latents are unscaled (1.0, as LDM-VQ-4 was trained) unless the spec says otherwise.
_CODECS: dict[str, tuple[Callable, bool, float | None]] = {
    "AutoencoderKL": (_codec_kl, True, None),
    "VQModel": (_codec_vq, False, 1.0),
}


def _build_autoencoder(folder: Path, spec: dict, default_scale: float | None = None,
                       scale_file: Path | None = None) -> Autoencoder:
    vae, cfg = _load_diffusers(folder, tuple(_CODECS))
    make, config_scale_counts, family_default = _CODECS[cfg["_class_name"]]
    codec, latent_ch = make(vae, cfg, spec)
    candidates = [
        ("spec", spec.get("scale")),
        (str(folder / "config.json"), cfg.get("scaling_factor") if config_scale_counts else None),
        ("default", default_scale),
        (f"{cfg['_class_name']} default", family_default),
    ]
    if scale_file is not None:
        candidates.insert(0, (str(scale_file), _read_json(scale_file, "latent scale").get("scale")))
    where, scale = next(((w, v) for w, v in candidates if v is not None), ("nowhere", None))
    try:
        ok = scale is not None and math.isfinite(float(scale)) and float(scale) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{folder / 'config.json'}: no usable latent scale (got {scale!r} from {where}); "
                         "give the spec a 'scale'")
    factor = 2 ** (len(cfg.get("block_out_channels", [0])) - 1)
    h, w = _hw(spec.get("image_size", cfg.get("sample_size", 256)))
    ae = Autoencoder(codec.encode, codec.decode, latent_shape=(int(latent_ch), h // factor, w // factor),
                     image_shape=(int(cfg.get("in_channels", 3)), h, w), modules=codec, scale=float(scale))
    ae.source = {"path": str(folder), "class": cfg["_class_name"], "scale": float(scale), "scale_from": str(where)}
    return ae


def _ldm_autoencoder_dir(root: Path, spec: dict) -> Path:
    names = [spec["autoencoder_subfolder"]] if spec.get("autoencoder_subfolder") else ["vqvae", "vae"]
    for name in names:
        if (root / name / "config.json").is_file():
            return root / name
    raise FileNotFoundError(f"LDM first stage: file not found: {root / names[0] / 'config.json'}"
                            + (f" (nor {root / names[1] / 'config.json'})" if len(names) > 1 else ""))


@_register(AUTOENCODER_LOADERS, "sd_vae")
def _ae_sd_vae(spec: dict) -> Autoencoder:
    path = _spec_path(spec)
    folder = path if (path / "config.json").is_file() or not (path / "vae").is_dir() else path / "vae"
    return _build_autoencoder(folder, spec, default_scale=0.18215)


@_register(AUTOENCODER_LOADERS, "diffusers_vae")
def _ae_diffusers(spec: dict) -> Autoencoder:
    return _build_autoencoder(_spec_path(spec), spec)


@_register(AUTOENCODER_LOADERS, "diffusers_ldm")
def _ae_ldm(spec: dict) -> Autoencoder:
    root = _spec_path(spec)
    return _build_autoencoder(_ldm_autoencoder_dir(root, spec), spec)


@_register(AUTOENCODER_LOADERS, "embedded")
def _ae_embedded(spec: dict) -> Autoencoder:
    root = Path(spec.get("root", EMBEDDED_ROOT)) / "latent"
    return _build_autoencoder(root / "vae", spec, scale_file=root / "latent_scale.json")


# --------------------------------------------------------------------------- priors
def _load_unet(folder: Path) -> tuple[nn.Module, dict]:
    return _load_diffusers(folder, ("UNet2DModel",))


def _pixel_prior(root: Path, name: str) -> UNetPrior:
    unet, cfg = _load_unet(root / "unet")
    schedule = _load_schedule(root / "scheduler")
    h, w = _hw(cfg.get("sample_size", 32))
    return UNetPrior(unet, schedule, (int(cfg.get("in_channels", 3)), h, w), name=name)


def _latent_prior(root: Path, ae: Autoencoder, name: str) -> LatentPrior:
    unet, cfg = _load_unet(root / "unet")
    schedule = _load_schedule(root / "scheduler")
    c, h, w = int(cfg.get("in_channels", 3)), *_hw(cfg.get("sample_size", ae.latent_shape[1]))
    if c != ae.latent_shape[0]:
        raise ValueError(f"{root / 'unet' / 'config.json'}: in_channels {c} != the autoencoder's "
                         f"{ae.latent_shape[0]} latent channels")
    factor = ae.image_shape[1] // ae.latent_shape[1]
    ae.latent_shape = (c, h, w)
    ae.image_shape = (ae.image_shape[0], h * factor, w * factor)
    return LatentPrior(unet, ae, schedule, name=name)


# --------------------------------------------------------------------------- info (no model loaded)
def _config(path: Path) -> dict:
    """A JSON config's contents ({} when absent or unreadable: the check names the missing file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _weights_or_first(folder: Path) -> Path:
    return next((folder / n for n in _WEIGHT_FILES if (folder / n).is_file()), folder / _WEIGHT_FILES[0])


def _unet_info(root: Path) -> dict:
    """Image size, channels and files of a diffusers pixel model (``unet/`` + ``scheduler/``)."""
    cfg = _config(root / "unet" / "config.json")
    size = cfg.get("sample_size")
    return {"image_size": None if size is None else _hw(size)[0], "channels": cfg.get("in_channels", 3),
            "files": [root / "unet" / "config.json", _weights_or_first(root / "unet"),
                      root / "scheduler" / "scheduler_config.json"]}


def _ldm_info(root: Path, ae_dir: Path, image_size=None, scale_file: Path | None = None) -> dict:
    """``_unet_info`` of a latent model: images are the UNet's latent size times the autoencoder's
    downsampling, with the autoencoder's channels."""
    unet, ae_cfg = _unet_info(root), _config(ae_dir / "config.json")
    size = _hw(image_size)[0] if image_size is not None else None
    if size is None and unet["image_size"] is not None and ae_cfg:
        size = unet["image_size"] * 2 ** (len(ae_cfg.get("block_out_channels", [0])) - 1)
    files = unet["files"] + [ae_dir / "config.json", _weights_or_first(ae_dir)] + ([scale_file] if scale_file else [])
    return {"image_size": size, "channels": ae_cfg.get("in_channels", 3), "files": files}


def _ldm_dir_info(spec: dict) -> dict:
    root = _spec_path(spec)
    names = [spec["autoencoder_subfolder"]] if spec.get("autoencoder_subfolder") else ["vqvae", "vae"]
    ae_dir = next((root / n for n in names if (root / n / "config.json").is_file()), root / names[0])
    return _ldm_info(root, ae_dir, spec.get("image_size"))


def _embedded_info(spec: dict) -> dict:
    root = Path(spec.get("root", EMBEDDED_ROOT))
    if spec.get("name") == "latent":
        return _ldm_info(root / "latent", root / "latent" / "vae", scale_file=root / "latent" / "latent_scale.json")
    return _unet_info(root / "pixel")


#: The project's own models by name: each builds its prior from the weights root.
_EMBEDDED_PRIORS: dict[str, Callable[[Path], Prior]] = {
    "pixel": lambda root: _pixel_prior(root / "pixel", "embedded:pixel"),
    "latent": lambda root: _latent_prior(root / "latent", _ae_embedded({"root": root}), "embedded:latent"),
}


@register_prior("embedded", info=_embedded_info, fields=("name", "root"), required=("name",),
                spaces=("pixel", "latent"), space_key="name")
def _prior_embedded(spec: dict) -> Prior:
    which = spec.get("name")
    if which not in _EMBEDDED_PRIORS:
        raise ValueError(f"embedded prior name must be one of {sorted(_EMBEDDED_PRIORS)}, got {which!r}")
    return _EMBEDDED_PRIORS[which](Path(spec.get("root", EMBEDDED_ROOT)))


@register_prior("diffusers_pixel", info=lambda spec: _unet_info(_spec_path(spec)), fields=("path", "name"),
                required=("path",))
def _prior_diffusers_pixel(spec: dict) -> Prior:
    root = _spec_path(spec)
    return _pixel_prior(root, spec.get("name", f"diffusers_pixel:{root.name}"))


@register_prior("diffusers_ldm", info=_ldm_dir_info, required=("path",), spaces=("latent",),
                fields=("path", "name", "scale", "autoencoder_subfolder", "vq_quantize", "image_size"))
def _prior_diffusers_ldm(spec: dict) -> Prior:
    root = _spec_path(spec)
    ae = _build_autoencoder(_ldm_autoencoder_dir(root, spec), spec)
    return _latent_prior(root, ae, spec.get("name", f"diffusers_ldm:{root.name}"))
