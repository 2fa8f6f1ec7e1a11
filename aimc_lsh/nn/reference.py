"""Unfold (im2col) reference implementation of hashed layers, for tests and benchmarks.

The library computes hashed convolutions conv-shaped (:mod:`aimc_lsh.nn.layers`); this module
computes the same quantity the straightforward way — extract every patch with ``F.unfold``, hash it
with the kernel, match, rescale — to check the fast path and to measure its speed-up.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.kernels import cosine_from_similarity, safe_norm
from aimc_lsh.nn.digital import set_submodule
from aimc_lsh.nn.layers import HashedConv2d, HashedLayer


def unfold_forward(layer: HashedLayer, x: Tensor) -> Tensor:
    """Forward of a hashed layer via ``F.unfold`` (ideal digital hardware only).

    Args:
        layer: A :class:`HashedConv2d` or :class:`HashedLinear`.
        x: Input as the layer takes it.

    Returns:
        The layer's output computed patch by patch.

    """
    linear = not isinstance(layer, HashedConv2d)
    x4 = x.reshape(-1, layer.in_channels, 1, 1) if linear else x
    g = layer.geometry
    n = x4.shape[0]
    out_h = (x4.shape[2] + 2 * g.padding[0] - g.dilation[0] * (layer.kernel_size[0] - 1) - 1) // g.stride[
        0
    ] + 1
    out_w = (x4.shape[3] + 2 * g.padding[1] - g.dilation[1] * (layer.kernel_size[1] - 1) - 1) // g.stride[
        1
    ] + 1
    out = x4.new_zeros(n, layer.out_channels, out_h * out_w)
    for i, j, in_slice, out_slice in layer.tile_pairs():
        kernel = layer.kernel(i, j)
        patches = F.unfold(x4[:, in_slice], layer.kernel_size, g.dilation, g.padding, g.stride)
        patches = patches.transpose(1, 2)  # (N, L, d)
        weights = layer.weight_tile(i, j)  # (out_j, d)
        h_x = kernel.input_codes(patches)  # against the comparator thresholds, if learned
        h_w = kernel.codes(weights)
        cos = cosine_from_similarity(h_x @ h_w.T / kernel.hash_length)  # (N, L, out_j)
        y = cos * safe_norm(patches, keepdim=True) * safe_norm(weights)[None, None, :]
        out[:, out_slice] += y.transpose(1, 2)
    if layer.bias is not None:
        out = out + layer.bias.view(1, -1, 1)
    if linear:
        return out.reshape(*x.shape[:-1], layer.out_channels)
    return out.view(n, layer.out_channels, out_h, out_w)


class _UnfoldForward(nn.Module):
    """Wraps a hashed layer so that its forward runs :func:`unfold_forward`."""

    def __init__(self, layer: HashedLayer) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return unfold_forward(self.layer, x)


@torch.no_grad()
def unfold_reference_model(model: nn.Module) -> nn.Module:
    """Return a copy of a patched model whose hashed layers compute with :func:`unfold_forward`."""
    model = copy.deepcopy(model)
    for path, module in list(model.named_modules()):
        if isinstance(module, HashedLayer):
            set_submodule(model, path, _UnfoldForward(module))
    return model
