"""Conventional AIMC layers (real weights on analog tiles, n-bit ADC) and the model conversion.

The baseline of every comparison: ``patch_model(model, HardwareConfig(placement="conventional"))``
dispatches here. With ``backend="fast"`` (default) each ``nn.Conv2d`` / ``nn.Linear`` becomes a
:class:`ConventionalConv2d` / :class:`ConventionalLinear` whose tiles are simulated by
:class:`aimc_lsh.hardware.conventional.ConventionalArray` (one convolution per row tile on the
programmed weights); with ``backend="aihwkit"`` the model goes through aihwkit's own
``convert_to_analog`` (:func:`aimc_lsh.hardware.reference.aihwkit_conventional`), the reference the
fast path is tested against. Program and drift either with :func:`aimc_lsh.hardware.program` and
:func:`aimc_lsh.hardware.drift`. Inference only: no gradients reach the weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from aimc_lsh.hardware.config import HardwareConfig
from aimc_lsh.hardware.conventional import ConventionalArray
from aimc_lsh.kernels import ConvGeometry
from aimc_lsh.nn.digital import (
    Conv2dFace,
    LinearFace,
    check_finite,
    check_zero_padding,
    conv_geometry,
    copy_parameters,
    new_weight,
    set_submodule,
)


class ConventionalLayer(nn.Module):
    """Common part of conventional analog layers: weight, bias and the tile array."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        geometry: ConvGeometry,
        bias: bool,
        config: HardwareConfig,
    ) -> None:
        super().__init__()
        if not isinstance(config, HardwareConfig):
            raise TypeError(f"config must be a HardwareConfig, got {type(config).__name__}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.geometry = geometry
        self.config = config
        self.array = ConventionalArray(config, out_channels, in_channels, kernel_size, geometry)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def weight_4d(self) -> Tensor:
        """The weight as (out, in, kh, kw)."""
        raise NotImplementedError

    def hardware_program(self, seed: int) -> None:
        """Program the tiles (called by :func:`aimc_lsh.hardware.program`)."""
        self.array.program(self.weight_4d(), seed)

    def hardware_drift(self, t_inference: float) -> None:
        """Drift the tiles (called by :func:`aimc_lsh.hardware.drift`); unprogrammed layers use seed 0."""
        if not self.array.programmed:
            self.hardware_program(0)
        self.array.drift(t_inference)

    def _forward_4d(self, x: Tensor) -> Tensor:
        check_finite(x, type(self).__name__)  # as hashed and PQ layers do: NaN is a bug upstream
        out = self.array(x.contiguous(memory_format=torch.channels_last))
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        return (
            f"{self.in_channels}, {self.out_channels}, device={self.config.device.name}, "
            f"adc_bits={self.array.adc.bits}, tiles={self.array.plan.n_tiles}, bias={self.bias is not None}"
        )


class ConventionalConv2d(Conv2dFace, ConventionalLayer):
    """``nn.Conv2d`` with its weights on analog tiles (use :meth:`from_digital`)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        bias: bool = True,
        config: HardwareConfig | None = None,
    ) -> None:
        kernel, geometry = conv_geometry("ConventionalConv2d", kernel_size, stride, padding, dilation)
        config = config or HardwareConfig(placement="conventional")
        super().__init__(in_channels, out_channels, kernel, geometry, bias, config)
        self.weight = new_weight(out_channels, in_channels, *kernel)

    @classmethod
    def from_digital(cls, conv: nn.Conv2d, config: HardwareConfig) -> ConventionalConv2d:
        """Copy of ``conv`` on analog tiles (weights and bias copied; program before use)."""
        if conv.groups != 1:
            raise ValueError(f"ConventionalConv2d supports groups=1 only, got groups={conv.groups}")
        check_zero_padding("ConventionalConv2d", conv)
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.bias is not None, config,
        )  # fmt: skip
        return copy_parameters(layer, conv)


class ConventionalLinear(LinearFace, ConventionalLayer):
    """``nn.Linear`` with its weights on analog tiles (computed as a 1x1 convolution)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, config: HardwareConfig | None = None
    ) -> None:
        config = config or HardwareConfig(placement="conventional")
        super().__init__(in_features, out_features, (1, 1), ConvGeometry(), bias, config)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = new_weight(out_features, in_features)

    @classmethod
    def from_digital(cls, linear: nn.Linear, config: HardwareConfig) -> ConventionalLinear:
        """Copy of ``linear`` on analog tiles (weights and bias copied; program before use)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, config)
        return copy_parameters(layer, linear)


CONVENTIONAL_SWAPS: dict[type[nn.Module], type[ConventionalLayer]] = {
    nn.Conv2d: ConventionalConv2d,
    nn.Linear: ConventionalLinear,
}
"""Digital layer type -> conventional analog class with a ``from_digital(module, config)`` classmethod."""


def _skipped(path: str, skip: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in skip)


def convert_conventional(
    model: nn.Module,
    config: HardwareConfig,
    *,
    skip: Iterable[str] = (),
    inplace: bool = False,
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
) -> nn.Module:
    """Put every ``nn.Conv2d`` / ``nn.Linear`` of ``model`` on analog tiles (conventional AIMC).

    Args:
        model: The digital model.
        config: A :class:`HardwareConfig` (its placement is not checked, so a hashed config can be
            reused for the baseline on the same device); ``backend="aihwkit"`` converts with aihwkit's
            ``convert_to_analog`` instead of the fast layers.
        skip: Module paths (or prefixes) left digital.
        inplace: Modify ``model`` itself instead of a deep copy.
        filter_fn: ``filter_fn(path, module) -> bool``; layers for which it is False stay digital
            (fast backend only).

    Returns:
        The converted model; program it with :func:`aimc_lsh.hardware.program` before use.

    Raises:
        ValueError: If a path in ``skip`` names no Conv2d/Linear layer.

    """
    if not isinstance(config, HardwareConfig):
        raise TypeError(f"config must be a HardwareConfig, got {type(config).__name__}")
    skip = [skip] if isinstance(skip, str) else list(skip)
    paths = [p for p, m in model.named_modules() if p and type(m) in CONVENTIONAL_SWAPS]
    unknown = [p for p in skip if not any(_skipped(path, [p]) for path in paths)]
    if unknown:
        raise ValueError(
            f"skip names no Linear/Conv2d layer: {', '.join(unknown)}; layers: {', '.join(paths)}"
        )
    if config.backend == "aihwkit":
        from aimc_lsh.hardware.reference import aihwkit_conventional

        if filter_fn is not None:
            raise ValueError("filter_fn is not supported with backend='aihwkit'; use skip")
        return aihwkit_conventional(model, config, skip=skip, inplace=inplace)
    if not inplace:
        model = copy.deepcopy(model)
    for path, module in [(p, m) for p, m in model.named_modules() if p in paths]:
        if _skipped(path, skip) or (filter_fn is not None and not filter_fn(path, module)):
            continue
        analog = CONVENTIONAL_SWAPS[type(module)].from_digital(module, config)
        analog.train(module.training)
        set_submodule(model, path, analog)
    return model
