"""Programming and drifting weight matrices on tiles with aihwkit's own device physics.

A matrix (outputs x inputs) is cut into physical tiles (:class:`TilePlan`, aihwkit's equal-split rule)
and each tile is handled exactly as aihwkit's inference tiles do internally
(``InferenceTileWithPeriphery.program_weights`` / ``drift_weights``):

* programming: ``noise_model.apply_programming_noise(W_tile)`` -- the conductance converter maps the
  tile to conductances (abs-max -> ``g_max``), programming noise is applied per conductance and the drift
  coefficients are drawn, then the conductances are converted back;
* drift to ``t``: ``noise_model.apply_drift_noise(W_programmed, drift_params, t)`` (power-law drift with
  the coefficients drawn at programming, fresh accumulated 1/f noise);
* global drift compensation: the read-out of one-hot inputs (``GlobalDriftCompensation``: mean absolute
  output) at programming time divided by the same read-out after drift.

The physics runs on CPU float32 copies (aihwkit's ReRAM/custom-drift models call NumPy) under a
forked, seeded torch RNG, so the same seed gives the same conductances on every device and the global
RNG is left untouched; results are moved to the caller's device.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from aimc_lsh.hardware.specs import ADC, TileSpec, equal_splits

Block = tuple[int, int]
"""Index ``(r, c)`` of a physical tile: row block r (inputs), column block c (outputs)."""


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (same parts => same seed, across runs)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Run a block with torch's global CPU generator seeded with ``seed``, restoring it afterwards.

    aihwkit's noise models draw with ``torch.randn_like`` from the global generator; forking keeps
    the caller's random stream unchanged. CUDA generators are not touched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        yield


@dataclass(frozen=True)
class TilePlan:
    """How a matrix of ``n_out`` x ``n_in`` is laid out on physical tiles."""

    n_out: int
    """Outputs (columns of the crossbar)."""
    n_in: int
    """Inputs (rows of the crossbar)."""
    row_splits: tuple[tuple[int, int], ...]
    """Input ranges ``(start, stop)`` of the row blocks."""
    col_splits: tuple[tuple[int, int], ...]
    """Output ranges of the column blocks."""

    @classmethod
    def for_matrix(cls, n_out: int, n_in: int, tile: TileSpec) -> TilePlan:
        """Plan for a matrix with ``n_out`` outputs and ``n_in`` inputs on tiles of size ``tile``."""
        return cls(
            n_out,
            n_in,
            tuple(equal_splits(n_in, tile.rows)),
            tuple(equal_splits(n_out, tile.cols)),
        )

    @property
    def n_tiles(self) -> int:
        """Number of physical tiles."""
        return len(self.row_splits) * len(self.col_splits)

    def blocks(self) -> Iterator[tuple[Block, slice, slice]]:
        """Yield ``((r, c), out_slice, in_slice)`` for every tile, row blocks outermost."""
        for r, (i0, i1) in enumerate(self.row_splits):
            for c, (o0, o1) in enumerate(self.col_splits):
                yield (r, c), slice(o0, o1), slice(i0, i1)

    def rows_per_output(self) -> Tensor:
        """Rows of each row block, shape (n_row_blocks, 1)."""
        return torch.tensor([[float(i1 - i0)] for i0, i1 in self.row_splits])

    def per_output(self, values: dict[Block, float]) -> Tensor:
        """Expand per-tile scalars to a (n_row_blocks, n_out) table."""
        table = torch.empty(len(self.row_splits), self.n_out)
        for (r, c), out_slice, _ in self.blocks():
            table[r, out_slice] = values[(r, c)]
        return table


def _cpu(weights: Tensor) -> Tensor:
    return weights.detach().to(device="cpu", dtype=torch.float32).contiguous()


def program_matrix(noise_model: Any, weights: Tensor, plan: TilePlan, seed: int) -> tuple[Tensor, dict]:
    """Program every tile of ``weights`` (n_out x n_in) with aihwkit's programming noise.

    Args:
        noise_model: An aihwkit ``BaseNoiseModel`` (None: ideal, weights returned unchanged).
        weights: Target weights in any units (each tile is scaled to ``g_max`` by the converter).
        plan: The tile layout.
        seed: Seed; tile ``(r, c)`` uses ``derive_seed(seed, r, c)``.

    Returns:
        ``(programmed, drift_params)``: programmed weights (CPU float32, same units and shape) and the
        per-tile drift parameters (aihwkit's ``nu`` lists) keyed by tile.

    """
    target = _cpu(weights)
    if noise_model is None:
        return target.clone(), {}
    programmed = torch.empty_like(target)
    params: dict[Block, list] = {}
    for block, out_slice, in_slice in plan.blocks():
        with seeded_rng(derive_seed(seed, *block)):
            tile_w, nu = noise_model.apply_programming_noise(target[out_slice, in_slice].contiguous())
        programmed[out_slice, in_slice] = tile_w
        params[block] = nu
    return programmed, params


def differential_conductance(noise_model: Any, weights: Tensor, target: Tensor) -> Tensor:
    """Express programmed weights of one tile as conductances (uS): ``g+ - g-`` of each cell.

    aihwkit's converter maps the tile's target abs-max to ``g_max - g_min``; the same scale turns the
    programmed weights back into the conductance difference that was actually programmed.
    """
    _, params = noise_model.g_converter.convert_to_conductances(_cpu(target))
    return _cpu(weights) * params["scale_ratio"]


def drift_matrix(
    noise_model: Any, programmed: Tensor, params: dict, plan: TilePlan, t_inference: float, seed: int
) -> Tensor:
    """Drift every tile of a programmed matrix to ``t_inference`` seconds after programming.

    The drift coefficients are those drawn at programming; the accumulated 1/f noise is drawn from
    ``derive_seed(seed, "drift", t_inference, r, c)``, so drifting to the same time twice gives the
    same weights.
    """
    if noise_model is None:
        return programmed.clone()
    drifted = torch.empty_like(programmed)
    for block, out_slice, in_slice in plan.blocks():
        with seeded_rng(derive_seed(seed, "drift", float(t_inference), *block)):
            drifted[out_slice, in_slice] = noise_model.apply_drift_noise(
                programmed[out_slice, in_slice].contiguous(), params[block], t_inference
            )
    return drifted


DRIFT_REFERENCES = ("one_hot", "random_sign")
"""Allowed inputs of the drift-compensation read-out (``HardwareConfig.drift_reference``)."""

DRIFT_REFERENCE_VECTORS = 16
"""Number of +-1 input vectors of the ``random_sign`` drift-compensation read-out."""


def reference_inputs(n_in: int, reference: str = "one_hot", full_scale: float | None = None) -> Tensor:
    """Input vectors (rows) of the drift-compensation read-out of a tile with ``n_in`` rows.

    ``one_hot``: the identity (aihwkit's ``GlobalDriftCompensation``). ``random_sign``:
    :data:`DRIFT_REFERENCE_VECTORS` vectors of +-1 on ``m = min(n_in, ceil((full_scale / 3)^2))``
    random rows (0 elsewhere), fixed for given ``n_in`` and ``m`` (seeded by them), so the read-outs at
    programming and after drift use the same inputs. Even a tile of max-|W| weights then reads out with a
    standard deviation of at most ``full_scale / 3``, inside the converter's range, so clipping does not
    bias the factor; the entries stay +-1 (full input range, unchanged by abs-max noise management).

    Args:
        n_in: Rows of the tile.
        reference: ``one_hot`` or ``random_sign``.
        full_scale: The ADC's full scale in normalised units; None: the tile's natural range ``n_in``.

    Raises:
        ValueError: For an unknown ``reference``.

    """
    if reference == "one_hot":
        return torch.eye(n_in)
    if reference == "random_sign":
        scale = float(n_in if full_scale is None else full_scale)
        active = max(1, min(n_in, math.ceil((scale / 3.0) ** 2)))
        gen = torch.Generator().manual_seed(derive_seed("drift_reference", n_in, active))
        signs = torch.randint(0, 2, (DRIFT_REFERENCE_VECTORS, n_in), generator=gen).float().mul_(2).sub_(1)
        if active < n_in:
            mask = torch.zeros_like(signs)
            for row in mask:
                row[torch.randperm(n_in, generator=gen)[:active]] = 1.0
            signs.mul_(mask)
        return signs
    raise ValueError(f"unknown drift reference {reference!r}; allowed: {', '.join(DRIFT_REFERENCES)}")


def global_readouts(
    weights: Tensor,
    plan: TilePlan,
    adc: ADC,
    full_scale: float | Tensor,
    generator: torch.Generator | None = None,
    read_noise_std: float = 0.0,
    reference: str = "one_hot",
) -> dict[Block, Tensor]:
    """Read out every tile for global drift compensation: mean |ADC(W x)| over the reference inputs x.

    With ``one_hot`` inputs (aihwkit's ``GlobalDriftCompensation``) each row is driven alone at full
    scale and its weights are read on every column; ``random_sign`` drives many rows at once with fixed
    +-1 vectors (:func:`reference_inputs`). The mean absolute converted value (clamped at 1e-4 as aihwkit
    does) is the tile's reference.

    Args:
        weights: Tile-normalised weights (n_out x n_in) as stored on the crossbar.
        plan: The tile layout.
        adc: Converter reading the columns.
        full_scale: Its full scale (a number, or a (n_row_blocks,) tensor indexed by row block).
        generator: Source of the converter noise.
        read_noise_std: Per-read weight noise, seen scaled by the input vector's norm.
        reference: ``one_hot`` or ``random_sign``.

    """
    from aimc_lsh.hardware.periphery import adc_convert

    readouts = {}
    for block, out_slice, in_slice in plan.blocks():
        fs = full_scale[block[0]] if isinstance(full_scale, Tensor) and full_scale.dim() > 0 else full_scale
        tile = weights[out_slice, in_slice]
        if reference == "one_hot":
            values, noise = tile.T, read_noise_std
        else:
            inputs = reference_inputs(tile.shape[1], reference, float(fs)).to(tile)
            values = inputs @ tile.T
            noise = read_noise_std * float(inputs[0].norm())
        out = adc_convert(values, adc, fs, generator, noise or None)
        readouts[block] = out.abs().mean().clamp(min=1e-4)
    return readouts
