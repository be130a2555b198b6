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

``mixture`` (``solvers.mixture.loader``): ``name`` (a world), ``space`` (``pixel`` | ``latent``).

Each kind is a ``PriorLoader`` in ``PRIOR_LOADERS`` (``register_prior``; plugins add their own): its
``fields`` (an unknown key is an error naming the allowed ones), the ``spaces`` it provides, the key
a sweep's prior slot sets (``space_key``: ``name`` for embedded, ``space`` for mixture) and
``info(spec)``: image size, channels and the files it reads, from config files alone (spec checks).
The string shorthand ``"<kind>"`` / ``"<kind>:<name>"`` (``"embedded:pixel"``, ``"mixture:mog8"``) is
accepted too; nothing is inferred from a path. Every spec may also give ``device`` and ``dtype``
(``float32`` default), and all but ``embedded`` and ``mixture`` a display ``name``. ``load_autoencoder(spec)`` does
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

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .guided_unet import GUIDED_CONFIGS, GuidedUNet, GuidedUNetConfig
from .priors import Autoencoder, Prior, UNetPrior, VPSchedule

__all__ = [
    "load_prior", "load_autoencoder", "PRIOR_LOADERS", "AUTOENCODER_LOADERS", "EMBEDDED_ROOT", "PriorLoader",
    "register_prior", "parse_ref", "prior_info", "GUIDED_FILENAMES", "KLCodec", "VQCodec", "load_guided_unet",
]

#: Where the project's own tiny models live (written by ``equibench train-embedded``).
EMBEDDED_ROOT = Path(__file__).resolve().parent / "embedded" / "weights"

#: The official file names and the guided-diffusion preset each one needs.
GUIDED_FILENAMES = {
    "ffhq_10m.pt": "ffhq256",
    "imagenet256.pt": "imagenet256",
    "256x256_diffusion_uncond.pt": "imagenet256",
}

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
#: keys every loader spec may carry besides its kind's own fields
COMMON_FIELDS = ("kind", "device", "dtype")


@dataclass(frozen=True)
class PriorLoader:
    """A prior kind: ``load(spec) -> Prior`` and what checks need without loading (module docstring).

    ``info(spec) -> {"image_size": int | None, "channels": int | None, "files": [Path, ...]}`` reads
    config files only. ``required`` fields must be given; ``space_key`` (None: the kind provides its
    one space) is the spec key a sweep's prior slot (pixel / latent) fills in.
    """

    kind: str
    load: Callable[[dict], Prior]
    info: Callable[[dict], dict]
    fields: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    spaces: tuple[str, ...] = ("pixel",)
    space_key: str | None = None

    def __call__(self, spec: dict) -> Prior:
        return self.load(spec)

    def spec_for(self, fields: dict, space: str) -> dict:
        """The loader spec of a sweep prior slot: the kind, its fields and the slot's space."""
        return {"kind": self.kind, **fields, **({self.space_key: space} if self.space_key else {})}

    def check(self, spec: dict) -> None:
        """``ValueError`` for an unknown or missing key of ``spec`` (before any file is read)."""
        unknown = sorted(set(spec) - set(self.fields) - set(COMMON_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {unknown} for prior kind {self.kind!r}; allowed: {list(self.fields)}")
        missing = [f for f in self.required if f not in spec]
        if missing:
            raise ValueError(f"prior kind {self.kind!r} needs {missing}, got keys {sorted(spec)}")


PRIOR_LOADERS: dict[str, PriorLoader] = {}
AUTOENCODER_LOADERS: dict[str, Callable[[dict], Autoencoder]] = {}


def register_prior(kind: str, *, info: Callable[[dict], dict], fields=(), required=(), spaces=("pixel",),
                   space_key: str | None = None):
    """Decorator registering ``fn(spec) -> Prior`` as prior kind ``kind`` (see ``PriorLoader``)."""
    bad = sorted(set(spaces) - {"pixel", "latent"})
    if not spaces or bad:
        raise ValueError(f"prior kind {kind!r}: spaces must be a non-empty subset of ('pixel', 'latent'), got {spaces}")
    if len(spaces) > 1 and space_key is None:
        raise ValueError(f"prior kind {kind!r} provides {spaces}: give the space_key its spec selects one with")

    def deco(fn):
        PRIOR_LOADERS[kind] = PriorLoader(kind, fn, info, tuple(fields), tuple(required), tuple(spaces), space_key)
        return fn

    return deco


def _register(table: dict, name: str):
    def deco(fn):
        table[name] = fn
        return fn
    return deco


# --------------------------------------------------------------------------- public entry points
def parse_ref(text: str) -> dict:
    """The shorthand ``"<kind>"`` or ``"<kind>:<name>"`` as a spec dict (the kind is not checked here)."""
    kind, sep, name = str(text).partition(":")
    if not kind or (sep and not name):
        raise ValueError(f"a prior shorthand is '<kind>' or '<kind>:<name>', got {text!r}")
    return {"kind": kind, **({"name": name} if sep else {})}


def _normalize_spec(spec: dict | str) -> dict:
    if isinstance(spec, str):
        spec = parse_ref(spec)
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a loader spec is a dict with a 'kind' key (or '<kind>:<name>'), got {spec!r}")
    if spec.get("dtype", "float32") not in _DTYPES:  # checked before any file is read
        raise ValueError(f"unknown dtype {spec['dtype']!r}; allowed: {sorted(_DTYPES)}")
    return dict(spec)


def prior_loader(spec: dict | str) -> tuple[PriorLoader, dict]:
    """The kind's ``PriorLoader`` and the normalized, checked spec; ``ValueError`` naming the allowed kinds."""
    spec = _normalize_spec(spec)
    kind = spec["kind"]
    if kind not in PRIOR_LOADERS:
        hint = " (an autoencoder kind: use load_autoencoder)" if kind in AUTOENCODER_LOADERS else ""
        raise ValueError(f"unknown prior kind {kind!r}{hint}; allowed: {sorted(PRIOR_LOADERS)}")
    loader = PRIOR_LOADERS[kind]
    loader.check(spec)
    return loader, spec


def prior_info(spec: dict | str) -> dict:
    """``PriorLoader.info`` of ``spec``: image size, channels, files; nothing is loaded."""
    loader, spec = prior_loader(spec)
    return loader.info(spec)


def load_prior(spec: dict | str, device: torch.device | str | None = None) -> Prior:
    """Build the prior ``spec`` describes (see the module docstring), on ``device``."""
    loader, spec = prior_loader(spec)
    prior = loader(spec)
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


def _first_keys(keys, n: int = 5) -> str:
    keys = list(keys)
    more = f" ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(map(str, keys[:n])) + more


# --------------------------------------------------------------------------- guided diffusion
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


def _guided_info(spec: dict) -> dict:
    path = _spec_path(spec)
    _, config = _guided_config(spec, path)
    return {"image_size": config.image_size, "channels": config.in_channels, "files": [path]}


@register_prior("guided_diffusion", info=_guided_info, fields=("path", "name", "config", "schedule"), required=("path",))
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


# The diffusers-folder kinds (embedded, diffusers_pixel, diffusers_ldm and the autoencoders) and the
# exact-posterior world's (kind ``mixture``: built from a world's parameters, no files) register
# from their own modules.
from solvers.loaders_diffusers import KLCodec, VQCodec  # noqa: E402,F401
from solvers.mixture import loader as _mixture_loader  # noqa: E402,F401
