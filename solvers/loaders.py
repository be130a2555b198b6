"""Build priors and autoencoders from local checkpoint files, strictly, offline.

``load_prior(spec)`` turns a spec dict into a :class:`~solvers.priors.Prior`; the ``kind`` key picks
a loader from ``PRIOR_LOADERS``:

==================  ==========================================================================
kind                spec keys (besides ``kind``)
==================  ==========================================================================
``embedded``        ``name``: ``"pixel"`` or ``"latent"``; optional ``root`` (default
                    ``solvers/embedded/weights``). Layout: ``pixel/{unet,scheduler}/``,
                    ``latent/{unet,vae,scheduler}/`` + ``latent/latent_scale.json``
                    (``{"scale": float}``), all saved with diffusers ``save_pretrained``.
``diffusers_pixel`` ``path``: a diffusers directory with ``unet/`` (UNet2DModel) and ``scheduler/``.
``diffusers_ldm``   ``path``: ``unet/`` + ``vqvae/`` or ``vae/`` (VQModel or AutoencoderKL) +
                    ``scheduler/`` (e.g. an exported ``CompVis/ldm-celebahq-256``); optional
                    ``scale``, ``autoencoder_subfolder``, ``vq_quantize`` (default True).
``guided_diffusion`` ``path``: an OpenAI guided-diffusion ``.pt`` state dict (``ffhq_10m.pt``,
                    ``imagenet256.pt``); optional ``config``: a preset name from
                    ``GUIDED_CONFIGS`` or a dict ``{"preset": ..., **overrides}`` (inferred from
                    the file name for the two known files); optional ``schedule`` (a diffusers
                    scheduler-config dict; default DDPM linear betas, T=1000, as the checkpoints
                    were trained).
==================  ==========================================================================

The string shorthand ``"embedded:pixel"`` / ``"embedded:latent"`` is accepted too. Every spec may
also give ``device`` and ``dtype``, and all but ``embedded`` a display ``name`` (``float32`` default). ``load_autoencoder(spec)`` does
the same for MPE functions, kinds in ``AUTOENCODER_LOADERS``: ``sd_vae`` (Stable Diffusion v1.5's
AutoencoderKL, scale 0.18215 unless its config or the spec says otherwise; ``path`` is the
``vae/`` directory or a pipeline directory holding it), ``diffusers_vae`` (any AutoencoderKL or
VQModel directory), ``diffusers_ldm`` (the first stage of an LDM directory) and ``embedded``.

Failure modes, all checked by ``tests/test_loaders.py``:

- a missing file raises ``FileNotFoundError`` naming the exact file that was looked for;
- a state dict that does not fit the architecture (missing, unexpected or wrongly shaped tensors)
  raises ``ValueError`` naming the file and the first offending keys. The official loaders do not:
  DPS's ``create_model`` catches the exception, prints "Got exception ... / Randomly initialize"
  and returns the random network, and diffusers' ``from_pretrained`` only logs a warning for
  missing keys ("newly initialized"). Here nothing random is ever returned: guided-diffusion
  models are built on the meta device and receive the loaded tensors (``assign=True``), and
  diffusers loads are checked through ``output_loading_info``.
- everything reads local files only (``local_files_only=True``), so ``HF_HUB_OFFLINE=1`` works.

Latent scales, first found wins: ``latent_scale.json`` (embedded), the spec's ``scale``, the raw
``config.json``'s ``scaling_factor`` (AutoencoderKL only), the kind's default (``sd_vae``:
0.18215), the family default (VQModel: 1.0). diffusers' ``VQModel`` writes ``scaling_factor``
0.18215 into every config it saves, yet its LDM pipelines never apply it and LDM-VQ-4 was trained
unscaled (SPEC: scale 1.0), so for VQ models that key is ignored. A KL autoencoder with no scale
anywhere is an error, not a guess.

Loaded networks are in eval mode with ``requires_grad=False`` on their parameters (solvers
differentiate with respect to their inputs only).
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .guided_unet import GUIDED_CONFIGS, GuidedUNet, GuidedUNetConfig
from .priors import Autoencoder, LatentPrior, Prior, UNetPrior, VPSchedule

__all__ = [
    "load_prior", "load_autoencoder", "PRIOR_LOADERS", "AUTOENCODER_LOADERS", "EMBEDDED_ROOT",
    "GUIDED_FILENAMES", "KLCodec", "VQCodec", "load_guided_unet",
]

#: Where the project's own tiny models live (written by ``equibench train-embedded``).
EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded" / "weights"

#: The official file names and the guided-diffusion preset each one needs.
GUIDED_FILENAMES = {
    "ffhq_10m.pt": "ffhq256",
    "imagenet256.pt": "imagenet256",
    "256x256_diffusion_uncond.pt": "imagenet256",
}

PRIOR_LOADERS: dict[str, Callable[[dict], Prior]] = {}
AUTOENCODER_LOADERS: dict[str, Callable[[dict], Autoencoder]] = {}

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
_WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")
_SUPPORTED_PREDICTION = ("epsilon",)
_HAVE_ACCELERATE = importlib.util.find_spec("accelerate") is not None  # else diffusers nags on every load


def _register(table: dict, name: str):
    def deco(fn):
        table[name] = fn
        return fn
    return deco


# --------------------------------------------------------------------------- public entry points
def _normalize_spec(spec: dict | str) -> dict:
    if isinstance(spec, str):
        kind, _, name = spec.partition(":")
        spec = {"kind": kind, **({"name": name} if name else {})}
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a loader spec is a dict with a 'kind' key (or 'embedded:pixel'), got {spec!r}")
    if spec.get("dtype", "float32") not in _DTYPES:  # checked before any file is read
        raise ValueError(f"unknown dtype {spec['dtype']!r}; allowed: {sorted(_DTYPES)}")
    return dict(spec)


def load_prior(spec: dict | str, device: torch.device | str | None = None) -> Prior:
    """Build the prior ``spec`` describes (see the module docstring), on ``device``."""
    spec = _normalize_spec(spec)
    kind = spec["kind"]
    if kind not in PRIOR_LOADERS:
        hint = " (an autoencoder kind: use load_autoencoder)" if kind in AUTOENCODER_LOADERS else ""
        raise ValueError(f"unknown prior kind {kind!r}{hint}; allowed: {sorted(PRIOR_LOADERS)}")
    prior = PRIOR_LOADERS[kind](spec)
    prior.source = {k: (str(v) if isinstance(v, Path) else v) for k, v in spec.items()}
    return _finish(prior, spec, device)


def load_autoencoder(spec: dict | str, device: torch.device | str | None = None) -> Autoencoder:
    """Build the autoencoder (MPE function) ``spec`` describes, on ``device``."""
    spec = _normalize_spec(spec)
    kind = spec["kind"]
    if kind not in AUTOENCODER_LOADERS:
        raise ValueError(f"unknown autoencoder kind {kind!r}; allowed: {sorted(AUTOENCODER_LOADERS)}")
    ae = AUTOENCODER_LOADERS[kind](spec)
    return _finish(ae, spec, device)


def _finish(module: nn.Module, spec: dict, device) -> nn.Module:
    module.requires_grad_(False)
    module.eval()
    module.to(dtype=_DTYPES[spec.get("dtype", "float32")])
    target = spec.get("device", device)
    return module.to(target) if target is not None else module


def _spec_path(spec: dict, key: str = "path") -> Path:
    if key not in spec:
        raise ValueError(f"{spec.get('kind')!r} spec needs a {key!r} entry, got keys {sorted(spec)}")
    return Path(spec[key]).expanduser()


# --------------------------------------------------------------------------- file helpers
def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: file not found: {path}")
    return path


def _read_json(path: Path, what: str) -> dict:
    _require(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: {path} is not valid JSON ({exc})") from exc


def _weights_file(folder: Path) -> Path:
    for name in _WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"diffusers weights: file not found: {folder / _WEIGHT_FILES[0]} "
                            f"(nor {', '.join(_WEIGHT_FILES[1:])})")


def _first_keys(keys, n: int = 5) -> str:
    keys = list(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(map(str, keys[:n])) + more


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


#: The project's own models by name: each builds its prior from the weights root.
_EMBEDDED_PRIORS: dict[str, Callable[[Path], Prior]] = {
    "pixel": lambda root: _pixel_prior(root / "pixel", "embedded:pixel"),
    "latent": lambda root: _latent_prior(root / "latent", _ae_embedded({"root": root}), "embedded:latent"),
}


@_register(PRIOR_LOADERS, "embedded")
def _prior_embedded(spec: dict) -> Prior:
    which = spec.get("name")
    if which not in _EMBEDDED_PRIORS:
        raise ValueError(f"embedded prior name must be one of {sorted(_EMBEDDED_PRIORS)}, got {which!r}")
    return _EMBEDDED_PRIORS[which](Path(spec.get("root", EMBEDDED_ROOT)))


@_register(PRIOR_LOADERS, "diffusers_pixel")
def _prior_diffusers_pixel(spec: dict) -> Prior:
    root = _spec_path(spec)
    return _pixel_prior(root, spec.get("name", f"diffusers_pixel:{root.name}"))


@_register(PRIOR_LOADERS, "diffusers_ldm")
def _prior_diffusers_ldm(spec: dict) -> Prior:
    root = _spec_path(spec)
    ae = _build_autoencoder(_ldm_autoencoder_dir(root, spec), spec)
    return _latent_prior(root, ae, spec.get("name", f"diffusers_ldm:{root.name}"))


def _guided_config(spec: dict, path: Path) -> tuple[str, GuidedUNetConfig]:
    cfg = spec.get("config")
    overrides: dict = {}
    if isinstance(cfg, dict):
        overrides = {k: v for k, v in cfg.items() if k != "preset"}
        cfg = cfg.get("preset")
    if cfg is None:
        cfg = GUIDED_FILENAMES.get(path.name)
    if cfg not in GUIDED_CONFIGS:
        raise ValueError(f"{path}: no guided-diffusion config: give spec['config'] as one of "
                         f"{sorted(GUIDED_CONFIGS)} (known files: {GUIDED_FILENAMES})")
    return cfg, GUIDED_CONFIGS[cfg].with_overrides(**overrides)


def load_guided_unet(path: str | Path, config: GuidedUNetConfig) -> GuidedUNet:
    """The guided-diffusion UNet of ``config`` with the tensors of ``path``, loaded strictly.

    The network is built on the meta device and takes the file's tensors by assignment, so a
    random initialisation never exists, let alone survives a failed load.
    """
    path = _require(Path(path).expanduser(), "guided-diffusion checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with non-tensor objects, ...
        raise ValueError(f"{path}: cannot be read as a state dict: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: is not a state dict of tensors (got {type(state).__name__})")
    with torch.device("meta"):
        model = GuidedUNet(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} (expected {expected[k]})"
                  for k in expected if k in state and tuple(state[k].shape) != expected[k]]
    problems = [f"{label}: {_first_keys(keys)}" for label, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    if problems:
        raise ValueError(f"{path}: state dict does not match the guided-diffusion UNet "
                         f"{config.to_dict()}; " + "; ".join(problems))
    model.load_state_dict(state, strict=True, assign=True)
    return model.float()


@_register(PRIOR_LOADERS, "guided_diffusion")
def _prior_guided(spec: dict) -> Prior:
    path = _spec_path(spec)
    preset, config = _guided_config(spec, path)
    model = load_guided_unet(path, config)
    sched = spec.get("schedule")
    schedule = VPSchedule.from_diffusers_config(sched) if sched else VPSchedule.linear(1000)
    shape = (config.in_channels, config.image_size, config.image_size)
    prior = UNetPrior(model, schedule, shape, name=spec.get("name", f"guided_diffusion:{preset}"))
    prior.config = config
    return prior


# The exact-posterior world's priors and autoencoders (kind ``mixture``: built from a world's
# parameters, no files), registered by their own module.
from solvers.mixture import loader as _mixture_loader  # noqa: E402,F401
