"""Weight copies between digital layers and their approximate or analog counterparts.

Every swapped layer family (hashed, product-quantized, conventional analog) keeps the digital layer's
``weight`` and ``bias`` under the same names and shapes; these helpers are the one place that copies
them in (``from_digital``) and back out (``to_digital``).
"""

from __future__ import annotations

from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)


def copy_parameters(dst: M, src: nn.Module) -> M:
    """Move ``dst`` to ``src``'s device and dtype and copy ``weight`` (and ``bias`` if any) into it.

    Returns:
        ``dst``.

    """
    dst.to(device=src.weight.device, dtype=src.weight.dtype)
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)
    return dst


def digital_conv2d(layer: nn.Module) -> nn.Conv2d:
    """An ``nn.Conv2d`` with the geometry, weight and bias of a swapped convolution ``layer``."""
    g = layer.geometry
    conv = nn.Conv2d(
        layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        g.stride,
        g.padding,
        g.dilation,
        bias=layer.bias is not None,
    )
    return copy_parameters(conv, layer)


def digital_linear(layer: nn.Module) -> nn.Linear:
    """An ``nn.Linear`` with the weight and bias of a swapped linear ``layer``."""
    linear = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    return copy_parameters(linear, layer)
