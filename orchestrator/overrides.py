"""Command-line overrides of a spec, Hydra style: ``KEY=VALUE`` after the spec, or ``--set KEY=VALUE``.

    equibench run configs/demo.yaml solvers.0.num_steps=50 dataset.count=16 --set seeds=[0,1]

* ``KEY`` is a dotted path into the spec's YAML: mapping keys by name, list entries by index
  (``solvers.0.num_steps``; ``solvers[0].num_steps`` reads the same). Missing mappings on the way
  are created (``dataset.count=16`` on a spec without ``dataset:``).
* ``VALUE`` is YAML: ``50`` is a number, ``[0, 1]`` a list, ``{operator: gaussian_blur}`` a
  mapping, ``yes`` a boolean, an empty value null; quote text YAML would read otherwise
  (``name='"yes"'``). An override replaces the value at its path whole (lists are not merged).
* Overrides apply, in order, to the YAML data before it is validated, so an overridden spec is
  checked exactly like a spec file; the positional ones come before the ``--set`` ones.

Mistakes are one-line ``OverrideError``s (a ``ValueError``) naming the override and the problem:
no ``=``, an unknown key (with the allowed ones, read from the pydantic models), an index out of
range, a path through a scalar, a value that is not YAML, the same key given twice.
"""
from __future__ import annotations

import argparse
import copy
import re
import typing
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

if TYPE_CHECKING:  # pydantic is imported when an override is applied, not to build a parser
    from pydantic import BaseModel

_INDEX = re.compile(r"\[(-?\d+)\]")
_INT = re.compile(r"^-?\d+$")


class OverrideError(ValueError):
    """A command-line override that cannot be applied."""

    def __init__(self, text: str, problem: str):
        super().__init__(f"override {text!r}: {problem}")


# ------------------------------------------------------------------------------------- parsing
def split(text: str) -> tuple[list[str], Any]:
    """``"solvers.0.num_steps=50"`` -> ``(["solvers", "0", "num_steps"], 50)``."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        example = f"{key}=VALUE" if key and not _INT.match(key) else "solvers.0.num_steps=50"
        raise OverrideError(text, f"no '=': write KEY=VALUE (e.g. {example}); KEY is a dotted path into the spec")
    if not key:
        raise OverrideError(text, "nothing before '=': write KEY=VALUE (e.g. dataset.count=16)")
    path = _INDEX.sub(r".\1", key).split(".")
    if any(not part for part in path):
        raise OverrideError(text, f"empty part in the path {key!r}: parts are separated by one '.'")
    return path, _value(text, raw)


def _value(text: str, raw: str):
    import yaml

    from orchestrator.spec import SpecError, _UniqueKeyLoader

    try:
        return yaml.load(raw, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecError as exc:
        raise OverrideError(text, f"the value {raw!r}: {exc.errors[0][1]}") from None
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark = getattr(exc, "problem_mark", None)
        at = f" at character {mark.column + 1}" if mark is not None else ""
        raise OverrideError(text, f"the value {raw!r} is not valid YAML: {problem}{at} (in a shell, quote "
                            "an override with spaces: 'tasks=[{operator: gaussian_blur}]')") from None


# ---------------------------------------------------------------------------- the models' shape
def _is_model(tp) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _unwrap(tp):
    """The model, list or mapping type inside ``Optional[...]`` / ``Union[...]`` (None: anything)."""
    if _is_model(tp):
        return tp
    origin = typing.get_origin(tp)
    if origin in (list, dict):
        return tp
    if origin is typing.Union:
        for arg in typing.get_args(tp):
            inner = _unwrap(arg)
            if inner is not None:
                return inner
    return None


def _child_type(tp, part: str):
    """The type of ``tp``'s entry ``part`` (None once the models say nothing more)."""
    tp = _unwrap(tp)
    if tp is None:
        return None
    if _is_model(tp):
        field = tp.model_fields.get(part)
        return None if field is None else field.annotation
    args = typing.get_args(tp)
    return args[-1] if args else None


def allowed_keys(model: "type[BaseModel]", extra: Iterable[str] = ()) -> list[str]:
    """The keys a mapping of ``model`` takes: its pydantic fields (plus ``extra``), sorted."""
    return sorted({*model.model_fields, *extra})


# ------------------------------------------------------------------------------------ applying
def _where(path: Sequence[str]) -> str:
    return ".".join(path) or "the spec"


def _describe(node) -> str:
    shown = repr(node) if len(repr(node)) <= 40 else repr(node)[:37] + "..."
    kind = type(node).__name__
    return f"{shown} ({'an' if kind[0] in 'aeiou' else 'a'} {kind})"


def _step(text: str, node, part: str, nxt: str | None, tp, done: list[str], top_keys: Sequence[str] | None):
    """The key of ``node``'s entry ``part`` (a mapping is created there when the path goes on,
    ``nxt``, and it is missing), or ``OverrideError``."""
    if isinstance(node, list):
        if not _INT.match(part):
            raise OverrideError(text, f"{_where(done)} is a list of {len(node)}: index it by number "
                                f"(e.g. {_where(done + ['0'])})")
        i = int(part)
        if not 0 <= i < len(node):
            have = f"indices 0..{len(node) - 1}" if node else "no entries"
            raise OverrideError(text, f"index {i} out of range: {_where(done)} has {len(node)} "
                                f"entr{'y' if len(node) == 1 else 'ies'} ({have}); set the whole list to add one")
        return i
    if not isinstance(node, dict):
        raise OverrideError(text, f"{_where(done)} is {_describe(node)}, not a mapping or a list: "
                            f"{part!r} cannot be looked up in it; set {_where(done)} whole")
    model = _unwrap(tp)
    if _is_model(model):
        keys = list(top_keys) if top_keys is not None else allowed_keys(model)
        if part not in keys:
            where = "the spec" if not done else _where(done)
            raise OverrideError(text, f"unknown key {part!r} in {where}; allowed: {', '.join(keys)}")
    key: Any = part
    if _INT.match(part) and part not in node and int(part) in node:
        key = int(part)
    if nxt is not None and node.get(key) is None:
        if _INT.match(nxt):
            raise OverrideError(text, f"index {nxt} out of range: {_where(done + [part])} is not set "
                                f"(no entries); set the whole list, e.g. {_where(done + [part])}=[...]")
        node[key] = {}
    return key


def apply(data: dict, overrides: Sequence[str], model: "type[BaseModel]", extra: Mapping[str, Any] | None = None) -> dict:
    """A copy of the spec data ``data`` with ``overrides`` applied in order; ``data`` is untouched.

    ``model`` is the pydantic model of the whole spec: its fields are the allowed top-level keys,
    and its nested models check the keys below. ``extra`` adds top-level keys that are not fields,
    each with its model (``{"tune": TuneSection}``; None checks nothing below it).
    """
    extra = dict(extra or {})
    out = copy.deepcopy(data)
    seen: dict[tuple[str, ...], str] = {}
    top = allowed_keys(model, extra)
    for text in overrides:
        path, value = split(text)
        norm = tuple(path)
        if norm in seen:
            raise OverrideError(text, f"{'.'.join(path)} is set twice (also by {seen[norm]!r}); give it once")
        seen[norm] = text
        node, tp, done = out, model, []
        for k, part in enumerate(path):
            nxt = path[k + 1] if k + 1 < len(path) else None
            key = _step(text, node, part, nxt, tp, done, top if k == 0 else None)
            if nxt is None:
                node[key] = value
            else:
                node, tp = node[key], (extra[part] if k == 0 and part in extra else _child_type(tp, part))
                done.append(part)
    return out


# --------------------------------------------------------------------------------- the command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` (its first positional is the spec) positional ``KEY=VALUE`` overrides and
    ``--set KEY=VALUE``, and let the overrides come after options (``run S --store D k=v``)."""
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override a spec value, Hydra style: a dotted path and a YAML value, e.g. "
                             "solvers.0.num_steps=50 dataset.count=16 'tasks=[{operator: gaussian_blur}]'")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_overrides",
                        help="the same as a positional override (repeatable)")
    plain = parser.parse_known_args
    inside: list[bool] = []

    def intermixed(args=None, namespace=None):
        # argparse matches `nargs="*"` positionals only next to each other; the intermixed parser
        # (which calls parse_known_args itself, hence the guard) takes them anywhere
        if inside:
            return plain(args, namespace)
        inside.append(True)
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            inside.pop()

    parser.parse_known_args = intermixed


def from_args(args) -> list[str]:
    """The overrides of a parsed command line, positional ones first; a spec argument that looks
    like an override (``equibench run k=v SPEC``) is refused with the order to use."""
    given = list(getattr(args, "overrides", None) or []) + list(getattr(args, "set_overrides", None) or [])
    spec = str(getattr(args, "spec", "") or "")
    if "=" in spec and not spec.endswith((".yaml", ".yml")):
        import os

        if not os.path.exists(spec):
            raise OverrideError(spec, "given where the spec file goes: the spec comes first "
                                f"(equibench {args.command} SPEC.yaml KEY=VALUE ...)")
    return given


def applied_line(name: str, overrides: Sequence[str]) -> str:
    """What ``run`` / ``plan`` print: the run and the overrides applied to its spec."""
    return f"{name}: overrides applied: {' '.join(overrides)}"
