"""The bitbybit hackathon score: accuracy drop versus hashed-operation efficiency.

The score (as specified for the hackathon, see ``shared/GUIDE.md`` section 3) is computed over every
tile pair of every hashed layer, each tile pair having its own projection with ``k`` hash bits:

* HDOPs (hashed operations) of a tile pair: ``2 * k * in_tile``;
* FLOPs of the dense tile it replaces: ``2 * in_tile * out_tile``;

where ``in_tile`` is the number of inputs the tile sees (for a convolution: input channels of the
tile times ``kh * kw``) and ``out_tile`` its number of outputs. Both are summed over all tile pairs of
all hashed layers, then

* ``r = FLOPs / HDOPs``, ``E = 2 r^gamma / (1 + r^gamma)`` (efficiency term),
* ``A = max(0, 1 - acc_drop / delta)`` (accuracy term; not clipped at 1, exactly as the hackathon
  defined it, so a model that *gains* accuracy gets ``A > 1``),
* ``score = 2 A E / (A + E)`` (harmonic mean; 0 when ``A + E == 0``).

Configurations with total HDOPs below total FLOPs (``k`` larger than the tile's output count on
average) were not allowed in the hackathon; they raise :class:`ValueError` here.

:func:`bitbybit_score_from_tiles` is the pure arithmetic; :func:`bitbybit_score` and
:func:`bitbybit_breakdown` collect the tile costs from a model patched with :mod:`aimc_lsh.nn`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

__all__ = [
    "ScoreBreakdown",
    "TileCost",
    "bitbybit_breakdown",
    "bitbybit_score",
    "bitbybit_score_from_tiles",
    "hashed_tile_costs",
]


@dataclass(frozen=True)
class TileCost:
    """Operation counts of one tile pair of a hashed layer."""

    layer: str
    """Module path of the hashed layer (as in ``model.named_modules()``); empty for bare tuples."""
    hash_length: int
    """Number of hash bits ``k`` of the tile pair's projection."""
    in_tile: int
    """Inputs the tile sees: input features (linear) or input channels x kh x kw (convolution)."""
    out_tile: int
    """Outputs of the tile: output features / output channels of the output tile."""

    @property
    def hdops(self) -> int:
        """Hashed operations of this tile pair, ``2 * k * in_tile``."""
        return 2 * self.hash_length * self.in_tile

    @property
    def flops(self) -> int:
        """Dense operations the tile pair replaces, ``2 * in_tile * out_tile``."""
        return 2 * self.in_tile * self.out_tile


@dataclass(frozen=True)
class ScoreBreakdown:
    """The score and every intermediate quantity it was computed from."""

    score: float
    """``2 A E / (A + E)``."""
    accuracy_term: float
    """``A = max(0, 1 - acc_drop / delta)``."""
    efficiency_term: float
    """``E = 2 r^gamma / (1 + r^gamma)``."""
    ratio: float
    """``r = FLOPs / HDOPs`` (at most 1)."""
    hdops: int
    """Total hashed operations over all tile pairs."""
    flops: int
    """Total dense operations replaced over all tile pairs."""
    n_tiles: int
    """Number of tile pairs counted."""
    acc_drop: float
    """Accuracy drop used, as a fraction (0.05 = 5 points)."""
    delta: float
    """Tolerated accuracy drop ``delta``."""
    gamma: float
    """Efficiency exponent ``gamma``."""


def _check_positive_int(value: object, name: str, index: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"tile {index}: {name} must be a positive integer, got {value!r}")
    return value


def _check_acc_drop(acc_drop: float) -> float:
    if isinstance(acc_drop, bool) or not isinstance(acc_drop, int | float):
        raise TypeError(f"acc_drop must be a real number (a fraction, 0.05 = 5 points), got {acc_drop!r}")
    acc_drop = float(acc_drop)
    if not math.isfinite(acc_drop) or not -1.0 <= acc_drop <= 1.0:
        raise ValueError(
            f"acc_drop must be a finite fraction in [-1, 1] (0.05 means 5 accuracy points), got {acc_drop}; "
            "did you pass percentage points? divide by 100"
        )
    return acc_drop


def _check_hyper(value: float, name: str) -> float:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if not is_number or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")
    return float(value)


def _as_tile_costs(tiles: Iterable[TileCost | Sequence[int]]) -> list[TileCost]:
    costs = []
    for index, tile in enumerate(tiles):
        if isinstance(tile, TileCost):
            layer, k, d_in, d_out = tile.layer, tile.hash_length, tile.in_tile, tile.out_tile
        else:
            if len(tile) != 3:
                raise ValueError(f"tile {index}: expected a (k, in_tile, out_tile) tuple, got {tile!r}")
            layer, (k, d_in, d_out) = "", tile
        costs.append(
            TileCost(
                layer=layer,
                hash_length=_check_positive_int(k, "k (hash length)", index),
                in_tile=_check_positive_int(d_in, "in_tile", index),
                out_tile=_check_positive_int(d_out, "out_tile", index),
            )
        )
    return costs


def bitbybit_score_from_tiles(
    tiles: Iterable[TileCost | Sequence[int]],
    acc_drop: float,
    *,
    delta: float = 0.15,
    gamma: float = 0.5,
) -> ScoreBreakdown:
    """Compute the bitbybit score from per-tile-pair sizes (the pure arithmetic).

    Args:
        tiles: One entry per tile pair, either a :class:`TileCost` or a ``(k, in_tile, out_tile)`` tuple.
        acc_drop: FP32 accuracy minus hashed accuracy, as a fraction in [-1, 1] (0.05 = 5 points).
        delta: Tolerated accuracy drop (hackathon value 0.15).
        gamma: Efficiency exponent (hackathon value 0.5).

    Returns:
        A :class:`ScoreBreakdown`; ``.score`` is the number the hackathon reported.

    Raises:
        ValueError: If there are no tiles, a size is not a positive integer, ``acc_drop`` is not a
            fraction in [-1, 1], ``delta``/``gamma`` are not positive, or total HDOPs < total FLOPs.
        TypeError: If ``acc_drop`` is not a number.

    Example:
        One 16x16 tile with k = 64: r = 0.25, E = 2/3; a 5-point drop gives A = 2/3.

        >>> round(bitbybit_score_from_tiles([(64, 16, 16)], 0.05).score, 4)
        0.6667

    """
    acc_drop = _check_acc_drop(acc_drop)
    delta = _check_hyper(delta, "delta")
    gamma = _check_hyper(gamma, "gamma")
    costs = _as_tile_costs(tiles)
    if not costs:
        raise ValueError("bitbybit score needs at least one hashed tile pair; the model has no hashed layers")
    hdops = sum(c.hdops for c in costs)
    flops = sum(c.flops for c in costs)
    if hdops < flops:
        raise ValueError(
            f"total HDOPs ({hdops}) < total FLOPs ({flops}): the hackathon forbade hash lengths that make "
            "hashing cheaper than the dense layer it replaces (k below the output tile size on average)"
        )
    ratio = flops / hdops
    r_pow = ratio**gamma
    efficiency = 2.0 * r_pow / (1.0 + r_pow)
    accuracy = max(0.0, 1.0 - acc_drop / delta)
    score = 2.0 * accuracy * efficiency / (accuracy + efficiency) if accuracy + efficiency > 0 else 0.0
    return ScoreBreakdown(
        score=score,
        accuracy_term=accuracy,
        efficiency_term=efficiency,
        ratio=ratio,
        hdops=hdops,
        flops=flops,
        n_tiles=len(costs),
        acc_drop=acc_drop,
        delta=delta,
        gamma=gamma,
    )


def _slice_len(sl: slice, total: int) -> int:
    return len(range(*sl.indices(total)))


def hashed_tile_costs(model: nn.Module) -> list[TileCost]:
    """List the tile-pair costs of every hashed layer in ``model``.

    Hashed layers are instances of :class:`aimc_lsh.nn.HashedLayer` (``HashedLinear``,
    ``HashedConv2d``); each exposes ``tile_pairs()`` -> ``(i, j, in_slice, out_slice)`` over input
    and output channels, ``kernel_size`` and ``kernel(i, j)`` (the pair's kernel, with
    ``.hash_length`` and ``.in_features``).

    Args:
        model: A model, typically the output of :func:`aimc_lsh.nn.patch_model`.

    Returns:
        One :class:`TileCost` per tile pair, in ``named_modules()`` order; empty if nothing is hashed.

    """
    from aimc_lsh.nn import HashedLayer  # imported lazily: eval sits beside nn, not below it

    costs: list[TileCost] = []
    for name, module in model.named_modules():
        if not isinstance(module, HashedLayer):
            continue
        kh, kw = module.kernel_size  # (1, 1) for linear layers
        for i, j, in_slice, out_slice in module.tile_pairs():
            kernel = module.kernel(i, j)
            in_tile = _slice_len(in_slice, module.in_channels) * kh * kw
            kernel_in = getattr(kernel, "in_features", in_tile)
            if kernel_in != in_tile:
                raise ValueError(
                    f"layer {name!r} tile ({i}, {j}): kernel.in_features={kernel_in} "
                    f"but the tile sees {in_tile} inputs"
                )
            out_tile = _slice_len(out_slice, module.out_channels)
            costs.append(TileCost(name, int(kernel.hash_length), in_tile, out_tile))
    return costs


def bitbybit_breakdown(
    model: nn.Module, acc_drop: float, *, delta: float = 0.15, gamma: float = 0.5
) -> ScoreBreakdown:
    """Score a hashed model and return every intermediate term; see :func:`bitbybit_score`."""
    costs = hashed_tile_costs(model)
    if not costs:
        raise ValueError(
            f"{type(model).__name__} has no hashed layers (aimc_lsh.nn.HashedLinear/HashedConv2d); "
            "patch it with aimc_lsh.nn.patch_model before scoring"
        )
    return bitbybit_score_from_tiles(costs, acc_drop, delta=delta, gamma=gamma)


def bitbybit_score(model: nn.Module, acc_drop: float, *, delta: float = 0.15, gamma: float = 0.5) -> float:
    """Compute the bitbybit hackathon score of a hashed model.

    Args:
        model: Model containing hashed layers (:class:`aimc_lsh.nn.HashedLayer`).
        acc_drop: FP32 accuracy minus hashed accuracy, as a fraction (0.05 = 5 points).
        delta: Tolerated accuracy drop (hackathon value 0.15).
        gamma: Efficiency exponent (hackathon value 0.5).

    Returns:
        ``2 A E / (A + E)``; see the module docstring.

    Raises:
        ValueError: If the model has no hashed layers, total HDOPs < total FLOPs, or an argument is
            out of range.

    """
    return bitbybit_breakdown(model, acc_drop, delta=delta, gamma=gamma).score
