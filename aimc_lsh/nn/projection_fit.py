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

from aimc_lsh.kernels.subspace import check_energy, principal_basis, subspace_projection
from aimc_lsh.nn.layers import HashedLayer
from aimc_lsh.nn.patching import hashed_layers, to_digital

FITTABLE_KERNELS = ("random_projection", "learned_projection")
"""Registered kernels whose projection is a tensor ``P`` that :func:`fit_projections` can redraw."""

BATCH_SIZE = 128
"""Images per forward pass while the second moments are measured."""


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
    layers = dict(hashed_layers(model))
    if not layers:
        raise ValueError("the model has no hashed layers: patch it first with aimc_lsh.nn.patch_model")
    if len(images) == 0:
        raise ValueError("fit_projections needs at least one image")
    digital = to_digital(model).eval()
    modules = dict(digital.named_modules())
    sums = {p: [0.0] * len(layer.in_tiles) for p, layer in layers.items()}
    counts = {p: [0] * len(layer.in_tiles) for p, layer in layers.items()}

    def collector(path: str) -> object:
        def hook(module: nn.Module, args: tuple) -> None:
            for tile in range(len(layers[path].in_tiles)):
                rows = input_patches(module, _tile_input(layers[path], module, args[0], tile))
                sums[path][tile] = sums[path][tile] + rows.T @ rows
                counts[path][tile] += rows.shape[0]

        return hook

    handles = [modules[p].register_forward_pre_hook(collector(p)) for p in layers]
    try:
        for batch in images.split(BATCH_SIZE):
            digital(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {p: [s / max(n, 1) for s, n in zip(sums[p], counts[p], strict=True)] for p in layers}


@torch.no_grad()
def fit_projections(model: nn.Module, images: Tensor, *, energy: float = 0.9) -> dict[str, list[Tensor]]:
    """Redraw every hashed layer's projections inside the principal subspace of its inputs (in place).

    Args:
        model: A model with hashed layers whose kernels hold their projection as a tensor ``P``.
        images: Training inputs (never the test split you evaluate on), e.g. 512 CIFAR images.
        energy: Share in (0, 1] of the input patches' second moment the subspace holds.

    Returns:
        Module path -> the basis (d_i, r_i) of each input tile (``r_i``: the rank kept; 0 for a tile whose
        inputs were all zero, whose projections are left as they were).

    Raises:
        ValueError: For ``energy`` outside (0, 1], a model without hashed layers, no images, or a kernel
            without a tensor ``P``.

    """
    check_energy(energy)
    layers = dict(hashed_layers(model))
    for path, layer in layers.items():
        if not all(isinstance(getattr(k, "P", None), Tensor) for k in layer.kernels):
            raise ValueError(
                f"{path}: kernel {layer.config.kernel!r} has no projection tensor P to fit; "
                f"allowed: {', '.join(FITTABLE_KERNELS)}"
            )
    moments = input_second_moments(model, images)
    bases: dict[str, list[Tensor]] = {}
    for path, layer in layers.items():
        bases[path] = []
        for i, moment in enumerate(moments[path]):
            if not bool(moment.any()):  # the tile's inputs were all zero: any P is as good, keep it
                bases[path].append(moment.new_zeros(moment.shape[0], 0))
                continue
            basis = principal_basis(moment, energy)
            bases[path].append(basis)
            for j in range(len(layer.out_tiles)):
                kernel = layer.kernel(i, j)
                orthogonal = bool(getattr(kernel, "orthogonal", False))
                seed = layer.kernel_seed(i, j)  # the seed the layer drew P with
                fitted = subspace_projection(kernel.hash_length, basis, orthogonal=orthogonal, seed=seed)
                kernel.P.copy_(fitted.to(kernel.P))
    return bases
