"""Sweep specs: the YAML a researcher writes, parsed into validated models before any compute.

Two layers of checks, both before a model is loaded or a Ray worker started:

1. **Shape** (pydantic): types, ranges (batch size >= 1, lambdas >= 0, fractional resources),
   allowed literal values, unknown keys.
2. **Meaning** (``check``): names against the registries (``solvers.SOLVERS``,
   ``operators.OPERATORS``, ``operators.GROUPS``, datasets), a latent solver with no latent prior,
   a solver needing ``operator.transpose`` on an operator without one, operator parameters (each
   task's operator is built once at the prior's image size: cheap, no model), an image size the
   prior cannot take, missing weight files.

Every problem is reported at once, each as ``field.path: message (allowed: ...)``, in one
``SpecError`` (a ``ValueError``, so the CLI prints it without a traceback).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import yaml
from pydantic import ValidationError

from orchestrator import plugins as _plugins
from orchestrator.spec_check import check, solver_space  # noqa: F401  (re-exported)
from orchestrator.spec_models import (  # noqa: F401  (the models and constants, re-exported)
    ComputeSpec, DatasetSpec, MAX_NAME_LEN, METRICS, MPE_CHOICES, PriorRef, PriorSpec, REDUCTIONS, REG_KINDS,
    ROW_METRICS, RegSpec, Resources, SCHEDULES, SET_METRICS, SPEC_SUFFIXES, SolverSpec, SpecError,
    SweepSpec, TaskSpec, _Model, _allowed, check_sample_ids,
)


def _format_pydantic(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors():
        loc = ""
        for part in err["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg = f"got {err.get('input')!r}; {msg.lower()}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field"
        out.append((loc or "<spec>", msg))
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # an unhashable key: the base loader reports it
            if key in seen:
                raise SpecError([("<yaml>", f"duplicate key {key!r} at line {key_node.start_mark.line + 1} (first at line "
                                  f"{seen[key] + 1}); YAML would keep only the last one: remove one")])
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str | None = None):
    """YAML text as Python data; ``SpecError`` for a syntax error or a duplicate key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except SpecError as exc:
        raise SpecError(exc.errors, source) from None
    except yaml.YAMLError as exc:
        raise SpecError([("<yaml>", str(exc).replace("\n", " "))], source) from None


def _looks_like_path(data: str) -> bool:
    return "\n" not in data and (data.endswith(SPEC_SUFFIXES) or Path(data).exists() or ":" not in data)


def read_spec_file(path: Path) -> str:
    """The text of a spec file, or an error naming what is wrong with the path."""
    if path.is_dir():
        raise SpecError([("<path>", f"{path} is a directory; give a spec file ({', '.join(SPEC_SUFFIXES)})")], str(path))
    if not path.exists():
        raise FileNotFoundError(f"spec file not found: {path}")
    if path.suffix not in SPEC_SUFFIXES:
        raise SpecError([("<path>", f"{path.name} does not end in {' or '.join(SPEC_SUFFIXES)}; allowed: a YAML spec file "
                         f"(rename it to {path.stem if path.suffix == '.txt' else path.name}.yaml?)")], str(path))
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise SpecError([("<path>", f"{path} is not a text file")], str(path)) from None


def parse(data: Union[dict, str, Path], source: str | None = None, overrides: Sequence[str] = ()) -> SweepSpec:
    """A validated ``SweepSpec`` from a dict, a YAML file path or YAML text; ``SpecError`` otherwise.

    ``overrides``: command-line ``KEY=VALUE`` strings applied to the data before validation
    (``orchestrator.overrides``; ``OverrideError`` naming a bad one); the spec records them. The
    spec's ``plugins`` and ``$EQUIBENCH_PLUGINS`` are imported first (``orchestrator.plugins``), so
    their registry entries are known to both layers of checks.
    """
    if isinstance(data, Path) or (isinstance(data, str) and _looks_like_path(data)):
        path = Path(data)
        source = source or str(path)
        data = read_spec_file(path)
    if isinstance(data, str):
        data = load_yaml(data, source)
    if not isinstance(data, dict):
        raise SpecError([("<spec>", f"expected a mapping at the top level, got {type(data).__name__}")], source)
    if overrides:
        from orchestrator.overrides import apply

        data = apply(data, overrides, SweepSpec)
        source = f"{source or '<spec>'} + overrides"  # an error may come from an override: say so
    given = data.get("plugins")
    _plugins.load_requested(given if isinstance(given, list) and all(isinstance(n, str) for n in given) else ())
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_pydantic(exc), source) from None
    errors = check(spec)
    if errors:
        raise SpecError(errors, source)
    return spec.with_overrides(overrides)


def check_sweep(spec: SweepSpec) -> list[tuple[str, str]]:
    """Problems of a spec meant for ``run`` / ``plan`` (not for ``tune``, whose lambdas are searched)."""
    errors = []
    for k, reg in enumerate(spec.regularizers):
        given = "lambdas" in reg.model_fields_set
        if reg.kind == "none" and given and any(x != 0 for x in reg.lambdas):
            errors.append((f"regularizers[{k}].lambdas", f"{reg.lambdas} with kind none would be ignored (the baseline "
                           "runs lambda 0 only); move them to a kind: equi or equicon entry"))
        elif reg.kind != "none" and not given:
            errors.append((f"regularizers[{k}].lambdas", f"kind {reg.kind} needs lambdas (e.g. lambdas: [0.1, 1.0]); "
                           "without them it would run lambda 0, the baseline, under the EquiReg label"))
    return errors


def parse_sweep(data: Union[dict, str, Path], source: str | None = None, overrides: Sequence[str] = ()) -> SweepSpec:
    """``parse`` plus ``check_sweep``: the spec of a run."""
    spec = parse(data, source, overrides)
    errors = check_sweep(spec)
    if errors:
        raise SpecError(errors, source or (str(data) if isinstance(data, (str, Path)) else None))
    return spec


load = parse
