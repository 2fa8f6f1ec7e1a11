"""Sweep points: parameter dicts, their stable keys and seeds, and cartesian grids of them.

A *point* is one independent job of a sweep: a flat dict of JSON scalars (str, int, float, bool, None)
naming everything its result depends on. Its key is a hash of its canonical JSON, so the same
parameters give the same key in every run, process and machine; the key decides what a resumed sweep
still has to compute, and the per-point seed derived from it makes every point's randomness independent
of the order (and the process) in which points run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = ["Params", "canonical_json", "check_params", "point_key", "point_seed", "product_grid"]

Params = dict[str, Any]
"""One sweep point: parameter name -> JSON scalar."""

_SCALARS = (str, int, float, bool, type(None))


def check_params(params: Mapping[str, Any]) -> Params:
    """Validate a point's parameters and return them as a plain dict.

    Args:
        params: Parameter name -> value; names must be non-empty strings, values JSON scalars
            (str, int, float, bool or None) and floats finite.

    Returns:
        A new dict with the same items.

    Raises:
        TypeError: If a name is not a string or a value is not a JSON scalar.
        ValueError: If a name is empty or a float is NaN/infinite.

    """
    if not isinstance(params, Mapping):
        raise TypeError(f"a sweep point must be a dict of parameters, got {type(params).__name__}")
    out: Params = {}
    for name, value in params.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"parameter names must be non-empty strings, got {name!r}")
        if not isinstance(value, _SCALARS):
            raise TypeError(
                f"parameter {name!r} must be a str, int, float, bool or None, got {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"parameter {name!r} must be finite, got {value!r}")
        out[name] = value
    return out


def canonical_json(params: Mapping[str, Any]) -> str:
    """The canonical JSON text of a point: sorted keys, no whitespace, exact float repr."""
    return json.dumps(check_params(params), sort_keys=True, separators=(",", ":"), allow_nan=False)


def point_key(params: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit key of a point (SHA-256 of its canonical JSON).

    The key depends only on the parameters (names and values, not their order), so it is the same in
    every run and process. ``1`` and ``1.0`` are different values (JSON keeps the type).
    """
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def point_seed(key: str) -> int:
    """Seed in [0, 2**63) derived from a point key, used to seed global RNGs before the point runs."""
    return int(hashlib.sha256(("seed:" + key).encode()).hexdigest()[:16], 16) % (2**63)


def product_grid(
    axes: Mapping[str, Sequence[Any]],
    *,
    base: Mapping[str, Any] | None = None,
    where: Iterable[Any] | None = None,
) -> list[Params]:
    """All combinations of ``axes`` values, each merged into ``base``, in a deterministic order.

    The first axis varies slowest (like nested for-loops in the order the axes are given).

    Args:
        axes: Axis name -> non-empty sequence of values.
        base: Parameters shared by every point (axes override same-named entries).
        where: Optional predicates ``pred(point) -> bool``; points for which any is False are dropped.

    Returns:
        The list of points, each validated with :func:`check_params`.

    Raises:
        ValueError: If an axis is empty or has duplicate values.

    """
    names = list(axes)
    for name in names:
        values = list(axes[name])
        if not values:
            raise ValueError(f"sweep axis {name!r} has no values")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise ValueError(f"sweep axis {name!r} has duplicate values: {values!r}")
    predicates = list(where or ())
    points = []
    for combo in itertools.product(*(list(axes[n]) for n in names)):
        point = check_params({**dict(base or {}), **dict(zip(names, combo, strict=True))})
        if all(pred(point) for pred in predicates):
            points.append(point)
    return points
