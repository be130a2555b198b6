"""The ``prior:`` part of a sweep spec: which prior each space uses, by loader kind.

A ``PriorRef`` is a kind of ``solvers.loaders.PRIOR_LOADERS`` (embedded, diffusers_pixel,
diffusers_ldm, guided_diffusion, mixture, and any a plugin registers) plus that loader's fields; the
slot it sits in (``pixel`` / ``latent`` / ``mpe``) gives the space, so nothing is ever inferred from
a path. Accepted forms::

    prior: embedded                                   # both spaces, the bundled world
    prior: "mixture:mog8"                             # <kind>:<name>, both spaces the kind provides
    prior: {kind: diffusers_ldm, path: /m/ldm}        # one ref: the spaces its kind provides
    prior: {pixel: {kind: guided_diffusion, path: /m/ffhq_10m.pt}, latent: embedded, mpe: embedded}
    prior: {pixel: {path: embedded}}                  # the first landing's form, embedded only

A dict without ``kind`` (other than ``{path: embedded}``) is refused, naming the allowed kinds.
``PriorRef.key`` is the prior's identity in a ``Config`` (``embedded`` for the embedded world, as
before kinds existed, so stored config ids are unchanged); ``PriorRef.from_key`` reads it back.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

SLOTS = ("pixel", "latent", "mpe")


def _loaders():
    from solvers import loaders

    return loaders


def _kinds() -> str:
    return "allowed kinds: " + ", ".join(repr(k) for k in sorted(_loaders().PRIOR_LOADERS))


def _as_ref(v) -> Any:
    """A slot's value as ``{"kind": ..., "fields": {...}}`` (other values are left to pydantic)."""
    if isinstance(v, str):
        try:
            d = _loaders().parse_ref(v)
        except ValueError as exc:
            raise ValueError(f"{exc}; {_kinds()}") from None
        return {"kind": d.pop("kind"), "fields": d}
    if isinstance(v, dict):
        if v == {"path": "embedded"}:  # the first landing's only dict form that named a kind
            return {"kind": "embedded", "fields": {}}
        if "kind" not in v:
            raise ValueError(f"a prior needs a kind (got keys {sorted(v)}); {_kinds()}")
        if set(v) == {"kind", "fields"} and isinstance(v["fields"], dict):
            return dict(v)
        return {"kind": v["kind"], "fields": {k: x for k, x in v.items() if k != "kind"}}
    return v


class PriorRef(BaseModel):
    """One prior: a loader ``kind`` and its ``fields`` (the slot supplies the space)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str = Field(description="a kind of solvers.loaders.PRIOR_LOADERS (plugins add kinds)")
    fields: dict[str, Any] = Field(default_factory=dict, description="the kind's own fields, written beside kind in "
                                   "YAML: {kind: diffusers_ldm, path: ...}; the slot gives the space")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        return _as_ref(v)

    @model_validator(mode="after")
    def _known(self):
        table = _loaders().PRIOR_LOADERS
        if self.kind not in table:
            raise ValueError(f"unknown prior kind {self.kind!r}; {_kinds()}")
        loader = table[self.kind]
        allowed = [f for f in loader.fields if f != loader.space_key]
        unknown = sorted(set(self.fields) - set(allowed))
        if unknown:
            why = f" ({loader.space_key!r} comes from the prior's slot)" if loader.space_key in unknown else ""
            raise ValueError(f"unknown field(s) {unknown} for prior kind {self.kind!r}{why}; allowed: {allowed}")
        missing = [f for f in loader.required if f != loader.space_key and f not in self.fields]
        if missing:
            raise ValueError(f"prior kind {self.kind!r} needs {missing}; allowed fields: {allowed}")
        return self

    @model_serializer
    def _flat(self) -> dict:
        return {"kind": self.kind, **self.fields}

    @property
    def loader(self):
        return _loaders().PRIOR_LOADERS[self.kind]

    @property
    def key(self) -> str:
        """The identity string: ``kind``, ``kind:name`` or ``kind:{canonical json of the fields}``."""
        if not self.fields:
            return self.kind
        if set(self.fields) == {"name"} and not str(self.fields["name"]).startswith("{"):
            return f"{self.kind}:{self.fields['name']}"
        return f"{self.kind}:" + json.dumps(self.fields, sort_keys=True, separators=(",", ":"), default=str)

    @classmethod
    def from_key(cls, key: str) -> "PriorRef":
        kind, _, rest = key.partition(":")
        fields = json.loads(rest) if rest.startswith("{") else ({"name": rest} if rest else {})
        return cls(kind=kind, fields=fields)

    def loader_spec(self, space: str) -> dict:
        """The ``solvers.loaders.load_prior`` spec of this prior in ``space``."""
        return self.loader.spec_for(dict(self.fields), space)

    def info(self, space: str) -> dict:
        """``PriorLoader.info``: image size, channels and the files the prior needs; loads nothing."""
        return self.loader.info(self.loader_spec(space))


def ref_spaces(v) -> tuple[str, ...]:
    """The spaces a single top-level ref fills: those its kind provides (both when unknown)."""
    kind = v.get("kind") if isinstance(v, dict) else None
    loader = _loaders().PRIOR_LOADERS.get(kind)
    return tuple(loader.spaces) if loader is not None else ("pixel", "latent")


class PriorSpec(BaseModel):
    """The priors a sweep may use, by space; a pixel solver uses ``pixel``, a latent one ``latent``.

    A single ref (``prior: embedded``) fills the spaces its kind provides. ``mpe`` is the latent
    prior whose autoencoder pixel-space solvers use as the EquiReg MPE function (default: ``latent``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    pixel: Optional[PriorRef] = None
    latent: Optional[PriorRef] = None
    mpe: Optional[PriorRef] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v):
        if isinstance(v, str) or (isinstance(v, dict) and ("kind" in v or v == {"path": "embedded"})):
            ref = _as_ref(v)
            return {space: ref for space in ref_spaces(ref)}
        return v

    @model_validator(mode="after")
    def _some(self):
        if self.pixel is None and self.latent is None:
            raise ValueError("give at least one of pixel, latent (e.g. prior: embedded)")
        return self

    def slot_space(self, slot: str) -> str:
        """The prior space a slot's ref must provide (``mpe`` is a latent prior's autoencoder)."""
        return "pixel" if slot == "pixel" else "latent"
