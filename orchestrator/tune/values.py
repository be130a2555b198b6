"""Small value helpers shared by the search's modules: plain numbers, short number text, UTC now."""
from __future__ import annotations

import datetime as _dt
import math
import numbers


def plain(value, p=None):
    """A plain Python int/float from a Tune/numpy number (anything else is returned as is);
    ``p`` (a ``ParamSpec``) with ``integer`` rounds."""
    if p is not None and p.integer:
        return int(round(float(value)))
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return value
    return int(value) if isinstance(value, numbers.Integral) else float(value)


def fmt(v) -> str:
    """A float in 4 significant digits (``nan`` as is); anything else as ``str``."""
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
