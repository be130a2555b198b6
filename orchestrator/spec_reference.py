"""The spec reference, generated from the pydantic models themselves (``docs/SPEC-REFERENCE.md``).

``render()`` walks ``SweepSpec`` and every nested model: each field with its type, default,
allowed values (``Literal`` members, numeric bounds, list lengths) and description. Regenerate
with ``equibench spec --fields --format md > docs/SPEC-REFERENCE.md``; a test checks the file is
current.
"""
from __future__ import annotations

import json
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from orchestrator import spec as _spec

EXAMPLE = """name: smoke                      # run id in the store: letters, digits, '_', '-', '.'
prior: embedded                  # or "mixture:mog8", {kind: diffusers_ldm, path: ...}, {pixel: ..., latent: ..., mpe: ...}
dataset: {name: embedded, split: report, count: 4}
tasks:
  - {operator: box_inpainting, sigma_y: [0.05]}
solvers:
  - {name: dps, num_steps: [10], step_sizes: [2.0]}
regularizers:
  - {kind: none}
  - {kind: equi, group: hflip, lambdas: [0.1, 1.0]}
metrics: [psnr, ssim]
resources: {num_actors: 2, num_cpus: 0.5}"""

#: Rules the models check beyond their types (``spec.check`` and the parser).
EXTRA_RULES = [
    "Duplicate keys anywhere in the YAML are refused (YAML would keep the last one silently).",
    "`name` must be a string: `name: yes` is YAML's boolean true, quote it (`name: \"yes\"`).",
    "A `none` regularizer takes no `lambdas`; an `equi`/`equicon` one needs them (no silent lambda 0).",
    "`metrics` must not be empty.",
    "The spec path must be a `.yaml`/`.yml` file, not a directory.",
    "Names (solvers, operators, groups, datasets, splits) are checked against the registries: "
    "`equibench list solvers|operators|groups|metrics|datasets`.",
    "A prior is a loader `kind` of `solvers.loaders.PRIOR_LOADERS` plus that kind's fields (`embedded`, "
    "`<kind>:<name>`, `{kind: ..., path: ...}`); a dict without `kind` is refused, nothing is inferred from a path.",
    "`plugins` (and `$EQUIBENCH_PLUGINS`, comma-separated) are imported before any check, by the driver and by "
    "every actor; a module that does not import is one line: `plugins: cannot import 'x' (...)`.",
]


def _type_name(tp) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is typing.Union or str(origin) == "types.UnionType":
        parts = [a for a in args if a is not type(None)]
        inner = " | ".join(_type_name(a) for a in parts)
        return f"{inner} | null" if len(parts) < len(args) else inner
    if origin in (list, tuple):
        return f"list[{', '.join(_type_name(a) for a in args)}]"
    if origin is dict:
        return f"map[{', '.join(_type_name(a) for a in args)}]"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp.__name__
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _default(info) -> str:
    if info.default_factory is not None:
        try:
            return json.dumps(info.default_factory(), default=lambda o: o.model_dump() if hasattr(o, "model_dump") else str(o))
        except TypeError:
            return "(computed)"
    if info.default is PydanticUndefined:
        return "required"
    return json.dumps(info.default)


def _bounds(info) -> str:
    out = []
    for m in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "min length")):
            v = getattr(m, attr, None)
            if v is not None:
                out.append(f"{sym} {v}")
    return ", ".join(out)


def _models(model, seen=None) -> list[type[BaseModel]]:
    seen = seen if seen is not None else []
    if model in seen:
        return seen
    seen.append(model)
    for info in model.model_fields.values():
        stack = [info.annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                _models(tp, seen)
            stack.extend(get_args(tp))
    return seen


def fields(model=None) -> list[dict[str, Any]]:
    """One dict per field of every model reachable from ``SweepSpec``."""
    rows = []
    for m in _models(model or _spec.SweepSpec):
        for name, info in m.model_fields.items():
            rows.append({"model": m.__name__, "field": name, "type": _type_name(info.annotation),
                         "default": _default(info), "bounds": _bounds(info), "description": info.description or ""})
    return rows


def render(fmt: str = "md") -> str:
    """The reference as Markdown (``md``) or plain text (``text``)."""
    rows = fields()
    lines = ["# Sweep spec reference", "",
             "Generated from the pydantic models in `orchestrator/spec.py` by `equibench spec --fields --format md`; "
             "do not edit by hand.", "", "## Example", "", "```yaml", EXAMPLE, "```", ""]
    if fmt == "text":
        lines = ["Sweep spec fields (model.field: type = default [bounds] description)", ""]
    current = None
    for r in rows:
        if r["model"] != current:
            current = r["model"]
            doc = (getattr(_spec, current).__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
            if fmt == "md":
                lines += [f"## {current}", ""] + ([doc, ""] if doc else []) + [
                    "| field | type | default | allowed | description |", "|---|---|---|---|---|"]
            else:
                lines += ["", f"{current}:" + (f" {doc}" if doc else "")]
        if fmt == "md":
            cells = [f"`{r['field']}`", r["type"].replace("|", "\\|"), f"`{r['default']}`", r["bounds"], r["description"]]
            lines.append("| " + " | ".join(c.replace("\n", " ") for c in cells) + " |")
        else:
            extra = f" [{r['bounds']}]" if r["bounds"] else ""
            lines.append(f"  {r['field']}: {r['type']} = {r['default']}{extra} {r['description']}".rstrip())
        if fmt == "md" and r is rows[-1] or (fmt == "md" and rows[rows.index(r) + 1]["model"] != current):
            lines.append("")
    head = "## Rules beyond the types" if fmt == "md" else "\nRules beyond the types:"
    lines += [head, ""] + [f"- {rule}" for rule in EXTRA_RULES]
    return "\n".join(lines).rstrip() + "\n"
