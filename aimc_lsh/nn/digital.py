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


def check_finite_parameters(
    module: nn.Module,
    owner: str,
    advice: str = "only finite weights can be swapped (check the checkpoint or training run they came from)",
) -> None:
    """Raise a ValueError naming ``owner`` if ``module``'s weight or bias holds NaN or inf.

    A NaN weight would hash to a zero code and silently give wrong outputs instead of NaN ones.

    Args:
        module: The layer whose ``weight`` / ``bias`` are checked.
        owner: How the message names it.
        advice: The message's last clause (what to do about it).

    """
    for name in ("weight", "bias"):
        value = getattr(module, name, None)
        if isinstance(value, Tensor) and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            count = f"{bad} NaN or inf value(s) of {value.numel()}"
            raise ValueError(f"{owner}: its {name} holds {count}; {advice}")


def copy_parameters(dst: M, src: nn.Module) -> M:
    """Move ``dst`` to ``src``'s device and dtype and copy ``weight`` (and ``bias`` if any) into it.

    Returns:
        ``dst``.

    Raises:
        ValueError: If ``src``'s weight or bias holds NaN or inf.

    """
    check_finite_parameters(src, f"{type(dst).__name__} from {type(src).__name__}")
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


def check_finite(x: Tensor, name: str) -> None:
    """Raise if ``x`` holds NaN or inf; one read pass when it does not (a finite sum proves it).

    Raises:
        ValueError: Naming the layer ``name`` that received them.

    """
    x = x.detach()
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} received NaN or inf inputs")


def check_input_tensor(layer: nn.Module, x: object) -> None:
    """Raise unless ``x`` is a tensor of ``layer``'s weight dtype.

    A float64 or integer input would otherwise fail deep inside the kernels with a message about
    scalar types.

    Raises:
        TypeError: For a non-tensor or a tensor of another dtype (the message names both dtypes).

    """
    name = type(layer).__name__
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} expects a torch.Tensor input, got {type(x).__name__}")
    dtype = layer.weight.dtype
    if x.dtype != dtype:
        raise TypeError(
            f"{name} expects {dtype} inputs (the dtype of its weights), got {x.dtype}; convert the input "
            f"with x.to({dtype}) or the model with .to(dtype)"
        )


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
            TypeError: If ``x`` is not a tensor of the layer's dtype.
            ValueError: If ``x`` is not 4-D, has another number of channels than the layer, or is
                smaller than the (dilated, padded) kernel.

        """
        check_input_tensor(self, x)
        name = type(self).__name__
        if x.dim() != 4:
            raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} expects inputs with {self.in_channels} channels/features in dim 1, "
                f"got shape {tuple(x.shape)}"
            )
        self._check_spatial_size(x)
        return self._forward_4d(x)

    def _check_spatial_size(self, x: Tensor) -> None:
        g = self.geometry
        smallest = [
            d * (k - 1) + 1 - 2 * p for k, p, d in zip(self.kernel_size, g.padding, g.dilation, strict=True)
        ]
        if any(size < low for size, low in zip(x.shape[2:], smallest, strict=True)):
            raise ValueError(
                f"{type(self).__name__} expects inputs of at least {smallest[0]} x {smallest[1]} pixels "
                f"(kernel {tuple(self.kernel_size)}, padding {tuple(g.padding)}, "
                f"dilation {tuple(g.dilation)}), got shape {tuple(x.shape)}"
            )

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
            TypeError: If ``x`` is not a tensor of the layer's dtype.
            ValueError: If the last dimension of ``x`` is not ``in_features``.

        """
        check_input_tensor(self, x)
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
    """Replace the submodule at the dotted ``path`` of ``model`` by ``module``.

    Raises:
        AttributeError: If ``path`` is ``""`` or names no existing submodule (nothing is added).

    """
    parent_path, _, name = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if not name or name not in parent._modules:
        raise AttributeError(f"{type(model).__name__} has no submodule {path!r} to replace")
    setattr(parent, name, module)
