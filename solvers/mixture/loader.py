"""``solvers.loaders`` entries of kind ``mixture``: a world's exact prior or its autoencoder.

    load_prior({"kind": "mixture", "name": "mog8", "space": "pixel" | "latent"})   # or "mixture:mog8"
    load_autoencoder({"kind": "mixture", "name": "mog8"})

Nothing is read from disk: a world is built from its parameters (``solvers.mixture.presets``).
"""
from __future__ import annotations

from solvers.loaders import AUTOENCODER_LOADERS, register_prior
from solvers.mixture.presets import world_spec
from solvers.mixture.prior import world_autoencoder, world_prior


def _name(spec: dict) -> str:
    name = spec.get("name")
    if name is None:
        raise ValueError(f"a mixture spec needs a 'name' (a world), got keys {sorted(spec)}")
    return world_spec(str(name)).name


def _info(spec: dict) -> dict:
    """Image size and channels of the world's images (decoded ones for the latent prior); no files."""
    w = world_spec(_name(spec))
    return {"image_size": w.size, "channels": w.channels, "files": []}


@register_prior("mixture", info=_info, fields=("name", "space"), required=("name",), spaces=("pixel", "latent"),
                space_key="space")
def _prior(spec: dict):
    return world_prior(_name(spec), spec.get("space", "pixel"))


def _autoencoder(spec: dict):
    return world_autoencoder(_name(spec))


AUTOENCODER_LOADERS["mixture"] = _autoencoder
