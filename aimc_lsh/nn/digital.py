"""What every swapped layer family shares with the digital layer it replaces.

Hashed, product-quantized and conventional analog layers keep the digital layer's ``weight`` and
``bias`` under the same names and shapes, and accept the same convolution geometry (zero padding,
groups=1). These helpers are the one place that checks that geometry, initialises a new weight,
copies weights in (``from_digital``) and back out (``to_digital``), and puts a swapped layer in its
place in a model (:func:`set_submodule`); :class:`Conv2dFace` and :class:`LinearFace` give every
family's convolution and linear layer the same weight view, input checks and ``to_digital``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import Tensor, nn
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


class Conv2dFace:
    """The ``nn.Conv2d`` face of a swapped convolution: weight view, input check, ``to_digital``.

    Mixed in before a family's base class, which computes ``_forward_4d`` on (N, C, H, W) inputs and
    sets ``in_channels``, ``geometry``, ``kernel_size``, ``weight`` (out, in, kh, kw) and ``bias``.
    """

    def weight_4d(self) -> Tensor:
        """The weight (out, in, kh, kw)."""
        return self.weight

    def forward(self, x: Tensor) -> Tensor:
        """The layer's convolution of ``x`` (N, C, H, W).

        Raises:
            ValueError: If ``x`` is not 4-D or has another number of channels than the layer.

        """
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects inputs with {self.in_channels} channels/features in dim 1, "
                f"got shape {tuple(x.shape)}"
            )
        return self._forward_4d(x)

    def to_digital(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` with this layer's geometry, weights and bias."""
        return digital_conv2d(self)


class LinearFace:
    """The ``nn.Linear`` face of a swapped linear layer, computed as a 1x1 convolution.

    Mixed in before a family's base class, which computes ``_forward_4d``; sets ``in_features``,
    ``out_features``, ``weight`` (out, in) and ``bias``.
    """

    def weight_4d(self) -> Tensor:
        """The weight viewed as (out, in, 1, 1)."""
        return self.weight[:, :, None, None]

    def forward(self, x: Tensor) -> Tensor:
        """The layer's ``x @ W.T + b`` for ``x`` of shape (..., in_features).

        Raises:
            ValueError: If the last dimension of ``x`` is not ``in_features``.

        """
        if x.dim() < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} expects inputs with {self.in_features} channels/features in "
                f"dim -1, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        y = self._forward_4d(x.reshape(-1, self.in_features, 1, 1))
        return y.reshape(*lead, self.out_features)

    def to_digital(self) -> nn.Linear:
        """An ``nn.Linear`` with this layer's weights and bias."""
        return digital_linear(self)


def set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``path`` of ``model`` (which must not be ``""``)."""
    parent_path, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, name, module)
