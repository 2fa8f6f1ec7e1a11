"""Fit hashed layers' projections to their inputs: random rows inside each input tile's principal subspace.

:func:`fit_projections` runs the digital counterpart of a hashed model over a few images, measures the
second moment of every hashed layer's input patches (per input tile), and redraws each tile pair's ``P``
with :func:`aimc_lsh.kernels.subspace.subspace_projection` from the seed the layer was built with. Same
images, energy and seeds: the same projections. Works for kernels whose projection is a tensor ``P``
(``random_projection``: a buffer; ``learned_projection``: the starting point of training). Fit before
:func:`aimc_lsh.hardware.program`, which programs the codes and projections the layer holds then.

The layers keep scaling by ``||w||``; the bits estimate ``x . w / (||x|| ||B^T w||)``, so each output
channel is scaled by ``||w|| / ||B^T w||`` (>= 1) until BatchNorm re-adapts (fine-tuning or
re-estimation does this): a starting point for training, not a drop-in for evaluation as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.kernels.subspace import (
    affine_residual,
    check_energy,
    principal_basis,
    simhash_estimate,
    subspace_projection,
)
from aimc_lsh.nn.layers import HashedLayer
from aimc_lsh.nn.patching import hashed_layers, run_digital_inputs

FITTABLE_KERNELS = ("random_projection", "learned_projection")
"""Registered kernels whose projection is a tensor ``P`` that :func:`fit_projections` can redraw."""

BATCH_SIZE = 128
"""Images per forward pass while the second moments are measured."""

SAMPLE_ROWS = 8192
"""Input patch rows per input tile on which ``fit_projections(only_where_better=True)`` compares."""

SAMPLE_SEED = 0
"""Seed of the random choice of those rows (one generator per layer)."""


def input_patches(layer: nn.Module, x: Tensor) -> Tensor:
    """Rows of the input patches a digital ``nn.Conv2d`` / ``nn.Linear`` multiplies, float64 (n, d)."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, x.shape[-1]).double()
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, padding=layer.padding, stride=layer.stride)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1]).double()


def _tile_input(layer: HashedLayer, digital: nn.Module, x: Tensor, tile: int) -> Tensor:
    c0, c1 = layer.in_tiles[tile]
    if isinstance(digital, nn.Linear):
        return x.reshape(-1, x.shape[-1])[:, c0:c1]
    return x[:, c0:c1]


@torch.no_grad()
def input_second_moments(model: nn.Module, images: Tensor) -> dict[str, list[Tensor]]:
    """``X^T X / n`` of each hashed layer's input patches, per input tile, on the digital model's activations.

    Args:
        model: A model with hashed layers.
        images: Inputs (N, ...) run through ``to_digital(model)`` in batches of :data:`BATCH_SIZE`.

    Returns:
        Module path -> one (d_i, d_i) float64 matrix per input tile.

    Raises:
        ValueError: If the model has no hashed layers or ``images`` is empty.

    """
    return _input_statistics(model, images, sample_rows=0)[0]


def _input_statistics(
    model: nn.Module, images: Tensor, *, sample_rows: int
) -> tuple[dict[str, list[Tensor]], dict[str, list[Tensor]]]:
    """Second moments (as :func:`input_second_moments`) and about ``sample_rows`` patch rows per input tile.

    The rows are a uniformly random share of each batch's patch rows (``sample_rows`` over the patch rows
    of all the images; every row when there are fewer), drawn from a generator seeded with
    :data:`SAMPLE_SEED` per layer, so the same images give the same rows, as float32. Not every s-th row:
    a convolution's patch rows run along the image rows, so a fixed stride that divides the positions per
    image picks the same columns in every image (the zero-padded left border for 32 x 32 maps).
    """
    layers = dict(hashed_layers(model))
    if not layers:
        raise ValueError("the model has no hashed layers: patch it first with aimc_lsh.nn.patch_model")
    if len(images) == 0:
        raise ValueError("fit_projections needs at least one image")
    sums = {p: [0.0] * len(layer.in_tiles) for p, layer in layers.items()}
    counts = {p: [0] * len(layer.in_tiles) for p, layer in layers.items()}
    samples: dict[str, list[list[Tensor]]] = {p: [[] for _ in layer.in_tiles] for p, layer in layers.items()}

    def collector(path: str) -> object:
        generator = torch.Generator().manual_seed(SAMPLE_SEED)

        def hook(module: nn.Module, args: tuple) -> None:
            for tile in range(len(layers[path].in_tiles)):
                rows = input_patches(module, _tile_input(layers[path], module, args[0], tile))
                sums[path][tile] = sums[path][tile] + rows.T @ rows
                counts[path][tile] += rows.shape[0]
                if sample_rows:
                    samples[path][tile].append(
                        _random_rows(rows, sample_rows * len(args[0]) / len(images), generator)
                    )

        return hook

    run_digital_inputs(model, {p: collector(p) for p in layers}, images, BATCH_SIZE)
    moments = {p: [s / max(n, 1) for s, n in zip(sums[p], counts[p], strict=True)] for p in layers}
    return moments, {p: [torch.cat(rows) if rows else torch.empty(0) for rows in samples[p]] for p in layers}


def _random_rows(rows: Tensor, count: float, generator: torch.Generator) -> Tensor:
    """About ``count`` of ``rows`` (all if fewer), drawn without replacement, kept in order, as float32."""
    take = min(rows.shape[0], max(1, round(count)))
    if take == rows.shape[0]:
        return rows.float()
    index = torch.randperm(rows.shape[0], generator=generator)[:take].sort().values
    return rows[index].float()


def _better_fitted(layer: HashedLayer, tile: int, fitted: list[Tensor], rows: Tensor) -> bool:
    """Whether the fitted projections of input tile ``tile`` (one per output tile) estimate better.

    Compared by :func:`aimc_lsh.kernels.subspace.affine_residual` summed over the tile's output tiles, on
    the sampled input rows: what the layer's BatchNorm could not undo per channel.
    """
    current = candidate = 0.0
    rows = rows.double()
    for j, p_fit in enumerate(fitted):
        weights = layer.weight_tile(tile, j).detach().double()
        exact = rows @ weights.T
        if not bool((exact.var(0) > 0).any()):
            continue
        current += affine_residual(simhash_estimate(rows, weights, layer.kernel(tile, j).P.detach()), exact)
        candidate += affine_residual(simhash_estimate(rows, weights, p_fit), exact)
    return candidate < current


@torch.no_grad()
def fit_projections(
    model: nn.Module,
    images: Tensor,
    *,
    energy: float = 0.9,
    only_where_better: bool = False,
    sample_rows: int = SAMPLE_ROWS,
) -> dict[str, list[Tensor]]:
    """Redraw every hashed layer's projections inside the principal subspace of its inputs (in place).

    With ``only_where_better`` an input tile keeps the projections it has unless the fitted ones estimate
    its outputs better on about ``sample_rows`` of the images' input patches (less output variance that a
    per-channel affine map cannot recover, :func:`aimc_lsh.kernels.subspace.affine_residual`, summed
    over the tile's output tiles). Measured on ResNet-20 at k = 256: the fit loses for the first
    convolution (90% of the image patches' energy in 4 of 27 directions, while its edge filters look at
    the others), the classifier and two of the 18 block convolutions, and wins for the other 16
    (docs/training.md).

    Args:
        model: A model with hashed layers whose kernels hold their projection as a tensor ``P``.
        images: Training inputs (never the test split you evaluate on), e.g. 512 CIFAR images.
        energy: Share in (0, 1] of the input patches' second moment the subspace holds.
        only_where_better: Fit only the input tiles where it lowers the estimation error (above).
        sample_rows: Input patch rows per tile the comparison uses (only with ``only_where_better``).

    Returns:
        Module path -> the basis (d_i, r_i) of each input tile (``r_i``: the rank kept; 0 for a tile whose
        projections are left as they were: its inputs were all zero, or the fit did not estimate better).

    Raises:
        ValueError: For ``energy`` outside (0, 1], a model without hashed layers, no images, a kernel
            without a tensor ``P``, or ``sample_rows`` < 1 with ``only_where_better``.

    """
    check_energy(energy)
    if only_where_better and (
        isinstance(sample_rows, bool) or not isinstance(sample_rows, int) or sample_rows < 1
    ):
        raise ValueError(f"sample_rows must be a positive integer, got {sample_rows!r}")
    layers = dict(hashed_layers(model))
    for path, layer in layers.items():
        if not all(isinstance(getattr(k, "P", None), Tensor) for k in layer.kernels):
            raise ValueError(
                f"{path}: kernel {layer.config.kernel!r} has no projection tensor P to fit; "
                f"allowed: {', '.join(FITTABLE_KERNELS)}"
            )
    moments, samples = _input_statistics(model, images, sample_rows=sample_rows if only_where_better else 0)
    bases: dict[str, list[Tensor]] = {}
    for path, layer in layers.items():
        bases[path] = []
        for i, moment in enumerate(moments[path]):
            kept = moment.new_zeros(moment.shape[0], 0)
            if not bool(moment.any()):  # the tile's inputs were all zero: any P is as good, keep it
                bases[path].append(kept)
                continue
            basis = principal_basis(moment, energy)
            fitted = []
            for j in range(len(layer.out_tiles)):
                kernel = layer.kernel(i, j)
                orthogonal = bool(getattr(kernel, "orthogonal", False))
                seed = layer.kernel_seed(i, j)  # the seed the layer drew P with
                fitted.append(
                    subspace_projection(kernel.hash_length, basis, orthogonal=orthogonal, seed=seed)
                )
            if only_where_better and not _better_fitted(layer, i, fitted, samples[path][i]):
                bases[path].append(kept)
                continue
            bases[path].append(basis)
            for j, p_fit in enumerate(fitted):
                layer.kernel(i, j).P.copy_(p_fit.to(layer.kernel(i, j).P))
    return bases
