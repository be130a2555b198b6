"""``equibench list solvers|operators|groups|metrics|datasets`` and ``equibench spec --fields``.

``list`` prints each registry entry with its defaults and needs, straight from the registries
(``solvers.SOLVERS``, ``operators.OPERATORS`` / ``GROUPS``, ``spec.METRICS``,
``orchestrator.data``). ``spec --fields`` prints the spec reference generated from the pydantic
models (``orchestrator.spec_reference``; ``--format md`` is docs/SPEC-REFERENCE.md).
"""
from __future__ import annotations

import json

KINDS = ("solvers", "operators", "groups", "metrics", "datasets")


def _solvers() -> list[str]:
    from solvers import SOLVERS

    out = []
    for name, e in SOLVERS.items():
        needs = [f"a {e.space} prior" if e.space != "any" else "a pixel or latent prior"]
        if e.needs_transpose:
            needs.append("operator.transpose")
        out.append(f"{name}: {(e.doc or '').splitlines()[0] if e.doc else ''}\n    needs {', '.join(needs)}; "
                   f"EquiReg schedule default {e.reg_schedule}; per-row params {list(e.row_params)}\n"
                   f"    options (defaults): {json.dumps(e.defaults, default=str)}")
    return out


def _operators() -> list[str]:
    from operators import OPERATORS

    out = []
    for name, cls in OPERATORS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        kind = "linear" if getattr(cls, "linear", False) else "non-linear"
        tr = "has transpose" if getattr(cls, "has_transpose", False) else "no transpose"
        emb = getattr(cls, "EMBEDDED_DEFAULTS", None)
        paper = getattr(cls, "paper_defaults", None)
        out.append(f"{name}: {doc}\n    {kind}, {tr}; embedded defaults {json.dumps(emb, default=str)}"
                   + (f"; paper defaults {json.dumps(paper, default=str)}" if isinstance(paper, dict) else ""))
    return out


def _groups() -> list[str]:
    from operators import GROUPS

    return [f"{name}: {((getattr(g, '__doc__', None) or '').strip().splitlines() or [''])[0]}" for name, g in GROUPS.items()]


def _metrics() -> list[str]:
    from orchestrator.metrics import registry
    from orchestrator.spec import METRICS

    def line(m) -> str:
        need = f"; needs {m.weights.filename} (metric_weights.{m.weights.key} or $EQUIBENCH_WEIGHTS), else null" if m.weights else ""
        return f"{m.name}: {'per image' if m.kind == 'image' else 'per config (set)'}, {m.direction} is better{need}"

    return [line(registry.get(m)) for m in METRICS]


def _datasets() -> list[str]:
    from orchestrator import data

    out = []
    for name in data.DATASETS:
        info = data.info(name)
        splits = ", ".join(f"{s} ({info.sizes[s]} images, {info.roles.get(s, '?')})" for s in info.splits)
        out.append(f"{name}: image shape {tuple(info.image_shape)}; splits: {splits}")
    return out


def cmd_list(args) -> int:
    lines = {"solvers": _solvers, "operators": _operators, "groups": _groups, "metrics": _metrics,
             "datasets": _datasets}[args.kind]()
    print("\n".join(lines))
    return 0


def cmd_spec(args) -> int:
    from orchestrator import spec_reference

    print(spec_reference.render(args.format), end="")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("list", help="registry entries with defaults and needs: " + ", ".join(KINDS))
    p.add_argument("kind", choices=KINDS, help="what to list")
    p.set_defaults(func=cmd_list)
    p = subparsers.add_parser("spec", help="the sweep spec reference: every field, type, default, allowed values")
    p.add_argument("--fields", action="store_true", help="print every field (the default)")
    p.add_argument("--format", choices=("text", "md"), default="text", help="text (default) or md (docs/SPEC-REFERENCE.md)")
    p.set_defaults(func=cmd_spec)
