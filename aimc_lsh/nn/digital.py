"""What every swapped layer family shares with the digital layer it replaces.

Hashed, product-quantized and conventional analog layers keep the digital layer's ``weight`` and
``bias`` under the same names and shapes, and accept the same convolution geometry (zero padding,
groups=1). These helpers are the one place that checks that geometry, initialises a new weight,
copies weights in (``from_digital``) and back out (``to_digital``), and puts a swapped layer in its
place in a model (:func:`set_submodule`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from aimc_lsh.kernels import ConvGeometry

M = TypeVar("M", bound=nn.Module)


def conv_geometry(
    owner: str,
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int],
    padding: int | Sequence[int] | str,
    dilation: int | Sequence[int],
    groups: int = 1,
) -> tuple[tuple[int, int], ConvGeometry]:
    """Kernel size as a pair and the geometry of a swapped convolution named ``owner``.

    Raises:
        ValueError: For ``groups != 1`` or a string padding such as ``"same"``.

    """
    if groups != 1:
        raise ValueError(f"{owner} supports groups=1 only, got groups={groups}")
    if isinstance(padding, str):
        raise ValueError(f"{owner} needs explicit integer padding, got padding={padding!r}")
    geometry = ConvGeometry(tuple(_pair(stride)), tuple(_pair(padding)), tuple(_pair(dilation)))
    return tuple(_pair(kernel_size)), geometry


def check_zero_padding(owner: str, conv: nn.Conv2d) -> None:
    """Raise a ValueError unless ``conv`` pads with zeros (the only mode swapped layers compute)."""
    if conv.padding_mode != "zeros":
        raise ValueError(f"{owner} supports padding_mode='zeros' only, got {conv.padding_mode!r}")


def new_weight(*shape: int) -> nn.Parameter:
    """A weight of ``shape`` initialised as ``nn.Linear`` / ``nn.Conv2d`` initialise theirs."""
    weight = nn.Parameter(torch.empty(*shape))
    nn.init.kaiming_uniform_(weight, a=5**0.5)
    return weight


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


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` of ``model`` (which must not be ``""``)."""
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, module)
