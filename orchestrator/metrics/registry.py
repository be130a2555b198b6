"""The metric registry: every fact about a metric, stated once, in its ``MetricInfo``.

A metric module of this package calls ``register_metric(...)`` at import; the package imports
every one of its modules (``discover``), so adding a metric is one new file here. Everything that
names metrics reads this registry: the engine (``Metrics``), the worker's per-row and set lists,
the store schema's metric columns, spec validation of ``metrics:`` and ``metric_weights:``,
report labels and directions, and a search's objective direction.

Register metrics in a module of this package, not from a spec plugin: the store schema and the
names a spec may use are read from the registry when ``orchestrator.schema`` and
``orchestrator.spec_models`` are imported, so a metric registered later has no store column and a
spec naming it is refused (``unknown metrics``, naming the allowed ones).

Import-time rule: no module of ``orchestrator.metrics`` imports torch (or another heavy library)
at module level, only inside the functions that compute, so that spec parsing, the store schema
and ``equibench --help`` read the registry in milliseconds (``tests/test_metrics_registry.py``
checks it).
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

DIRECTIONS = ("higher", "lower")
KINDS = ("image", "set")


@dataclass(frozen=True)
class WeightsFile:
    """A network weights file a metric needs (looked up locally, never downloaded).

    ``key``: its name in a spec's ``metric_weights`` and in ``Metrics.weights`` (metrics sharing a
    network share the key); ``filename``: the file looked for; ``label``: how the one
    missing-weights warning names the metrics that go null; ``loader(path, device) -> module``.
    """

    key: str
    filename: str
    label: str
    loader: Callable


@dataclass(frozen=True)
class MetricInfo:
    """One metric.

    - ``name``: what a spec's ``metrics:`` (and ``Metrics(names=...)``) says.
    - ``label``: report header; ``decimals`` / ``percent``: how reports print it.
    - ``direction``: ``higher`` or ``lower`` is better (report bolding, config selection, a
      search's default mode).
    - ``kind``: ``image`` (one value per row) or ``set`` (one per config, from the sets table).
    - ``fn``: ``image``: ``fn(metrics, inputs) -> Tensor (B,) | None`` with ``inputs`` the dict
      ``x_hat``, ``x_true``, ``y``, ``operator``; ``set``: ``fn(metrics, f_fake, f_real) -> {column:
      value}`` on Inception features (``Metrics.inception_features``).
    - ``columns``: the store columns it writes (default ``(name,)``); the first is the value
      reports show; ``std_column`` (one of them) holds a set metric's spread.
    - ``weights``: the ``WeightsFile`` it needs, or ``None``.
    - ``needs``: inputs an image metric reads besides ``x_hat``.
    - ``from_solver``: the store's value is the solver's own ``SolveOutput.extras[name]`` (kept for
      every row); a spec's ``metrics:`` does not name it, the worker does not recompute it.
    """

    name: str
    label: str
    direction: str
    kind: str
    fn: Callable
    columns: tuple[str, ...] = ()
    weights: WeightsFile | None = None
    needs: tuple[str, ...] = ("x_true",)
    decimals: int = 3
    percent: bool = False
    std_column: str | None = None
    from_solver: bool = False

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name!r}: direction must be one of {DIRECTIONS}, got {self.direction!r}")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "columns", tuple(self.columns) or (self.name,))
        object.__setattr__(self, "needs", tuple(self.needs))
        if self.std_column is not None and self.std_column not in self.columns[1:]:
            raise ValueError(f"metric {self.name!r}: std_column {self.std_column!r} is not among its columns {self.columns}")
        if self.from_solver and self.kind != "image":
            raise ValueError(f"metric {self.name!r}: only an image metric can come from the solver")

    @property
    def column(self) -> str:
        """The store column reports show."""
        return self.columns[0]

    @property
    def lower_is_better(self) -> bool:
        return self.direction == "lower"


#: Every registered metric, by name, in registration order (the store's column order).
METRICS: dict[str, MetricInfo] = {}


def register_metric(name: str, *, label: str, direction: str, kind: str, fn: Callable, **fields) -> MetricInfo:
    """Register metric ``name`` (see ``MetricInfo`` for the fields); returns its entry.

    A name or a store column registered twice is an error (registering the same entry again, as a
    re-imported module does, is not).
    """
    info = MetricInfo(name, label, direction, kind, fn, **fields)
    old = METRICS.get(name)
    if old is not None and (old.fn.__module__, old.fn.__qualname__) != (fn.__module__, fn.__qualname__):
        raise ValueError(f"metric {name!r} is registered twice ({old.fn.__module__} and {fn.__module__})")
    taken = {c: m.name for m in METRICS.values() if m.name != name for c in m.columns}
    clash = [c for c in info.columns if c in taken]
    if clash:
        raise ValueError(f"metric {name!r}: store columns {clash} already belong to {sorted({taken[c] for c in clash})}")
    METRICS[name] = info
    return info


def discover() -> None:
    """Import every module of this package (each registers its metrics), in file-name order after
    the built-in ones the package imports first."""
    package = importlib.import_module(__package__)
    for mod in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{mod.name}")


# ------------------------------------------------------------------------------------ queries
class KindView(Mapping):
    """A live, read-only ``{name: MetricInfo}`` of one kind (metrics registered later show up)."""

    def __init__(self, kind: str):
        self.kind = kind

    def _items(self) -> dict[str, MetricInfo]:
        return {n: m for n, m in METRICS.items() if m.kind == self.kind}

    def __getitem__(self, name: str) -> MetricInfo:
        return self._items()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())


def names(kind: str | None = None, spec: bool = False) -> tuple[str, ...]:
    """Metric names of ``kind`` (None: all); ``spec=True``: those a spec's ``metrics:`` may name."""
    return tuple(n for n, m in METRICS.items() if (kind is None or m.kind == kind) and not (spec and m.from_solver))


def get(name: str, kind: str | None = None) -> MetricInfo:
    """The entry of ``name``; an unknown name is a ``ValueError`` naming the allowed ones."""
    info = METRICS.get(name)
    if info is None or (kind is not None and info.kind != kind):
        raise ValueError(f"unknown {kind + ' ' if kind else ''}metric {name!r}; allowed: "
                         + ", ".join(repr(n) for n in names(kind)))
    return info


def columns(kind: str) -> tuple[str, ...]:
    """The store columns the metrics of ``kind`` write, in registration order (``orchestrator.schema``)."""
    return tuple(c for m in METRICS.values() if m.kind == kind for c in m.columns)


def by_column() -> dict[str, MetricInfo]:
    """``{column reports show: entry}`` (``kid_mean`` -> KID)."""
    return {m.column: m for m in METRICS.values()}


def lower_is_better_columns() -> frozenset[str]:
    """The reported columns where lower is better."""
    return frozenset(m.column for m in METRICS.values() if m.lower_is_better)


def weights_files(metric_names=None) -> dict[str, WeightsFile]:
    """``{key: WeightsFile}`` the metrics ``metric_names`` need (None: every metric)."""
    chosen = METRICS.values() if metric_names is None else [get(n) for n in metric_names]
    return {m.weights.key: m.weights for m in chosen if m.weights is not None}


def needing(key: str) -> tuple[str, ...]:
    """Names of the metrics that need weights ``key``."""
    return tuple(n for n, m in METRICS.items() if m.weights is not None and m.weights.key == key)
