"""Calibrate the input references of hashed layers built with ``HashConfig(center_inputs=True)``.

A hashed layer estimates ``w . x`` with an error that scales with ``||x||``. Post-ReLU activations have
a large mean, so most of each patch's norm is a common part the estimate gains nothing from. A layer with
``center_inputs`` hashes ``x - c`` (``c`` one reference per input channel, the buffer ``input_center``)
and adds ``w . c`` exactly; :func:`calibrate_input_centers` sets ``c`` to the mean input of each layer,
measured on the digital counterpart of the model, so the centred patches are as short as one constant per
channel makes them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from aimc_lsh.nn.layers import HashedLayer
from aimc_lsh.nn.patching import hashed_layers, run_digital_inputs

BATCH_SIZE = 128
"""Images per forward pass while the means are measured."""


def centered_layers(model: nn.Module) -> dict[str, HashedLayer]:
    """Module path -> hashed layer, for the layers whose config has ``center_inputs=True``."""
    return {path: layer for path, layer in hashed_layers(model) if layer.input_center is not None}


@torch.no_grad()
def calibrate_input_centers(model: nn.Module, images: Tensor) -> dict[str, Tensor]:
    """Set every centred hashed layer's ``input_center`` to its mean input channel on ``images``.

    The inputs are those of the digital counterpart (``to_digital(model)``, exact layers), so one
    layer's estimation noise does not shift the next layer's reference. Same images: same references.

    Args:
        model: A model with hashed layers built with ``center_inputs=True``; changed in place.
        images: Inputs (N, ...) run in batches of :data:`BATCH_SIZE` (training images, not the test split).

    Returns:
        Module path -> the reference set (C,), a copy.

    Raises:
        ValueError: If no hashed layer is centred, ``images`` is empty, or an input holds NaN or inf.

    """
    layers = centered_layers(model)
    if not layers:
        raise ValueError(
            "no hashed layer has center_inputs=True: patch the model with HashConfig(center_inputs=True)"
        )
    if len(images) == 0:
        raise ValueError("calibrate_input_centers needs at least one image")
    sums: dict[str, Tensor] = {}
    counts = dict.fromkeys(layers, 0)

    def collector(path: str) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].double()
            if not bool(torch.isfinite(x).all()):
                raise ValueError(f"calibrate_input_centers: the input of {path} holds NaN or inf")
            channels = x.reshape(-1, x.shape[-1]) if x.dim() == 2 else x.transpose(0, 1).flatten(1).T
            sums[path] = sums.get(path, 0.0) + channels.sum(0)
            counts[path] += channels.shape[0]

        return hook

    run_digital_inputs(model, {p: collector(p) for p in layers}, images, BATCH_SIZE)
    centers = {}
    for path, layer in layers.items():
        mean = sums[path] / counts[path]
        layer.input_center.copy_(mean.to(layer.input_center.dtype))
        centers[path] = layer.input_center.clone()
    return centers
