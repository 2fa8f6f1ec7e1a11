"""Parameter and FLOP counts of a network, per layer, measured with one forward pass.

Counting rules: parameters are all (unique) ``nn.Parameter`` elements of the model (BatchNorm affine
parameters included, running statistics and other buffers not). Multiply-accumulates (MACs) are
counted for plain ``nn.Conv2d`` (``output elements x in_channels / groups x kernel area``) and
``nn.Linear`` (``output elements x in_features``) per image; FLOPs are ``2 x MACs`` (the bitbybit
convention, ``2 in out`` per dense product). Bias additions, BatchNorm, activations, pooling and
residual additions are not counted. Hashed or analog layers are not counted either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["Complexity", "LayerCost", "count_params_flops"]


@dataclass(frozen=True)
class LayerCost:
    """Cost of one conv or linear layer for one image."""

    path: str
    """Module path."""
    kind: str
    """``Conv2d`` or ``Linear``."""
    params: int
    """Parameter elements of the layer (weight and bias)."""
    macs: int
    """Multiply-accumulates per image."""

    @property
    def flops(self) -> int:
        """``2 * macs``."""
        return 2 * self.macs


@dataclass(frozen=True)
class Complexity:
    """Totals and per-layer costs of a model."""

    params: int
    """All unique parameter elements of the model."""
    macs: int
    """Multiply-accumulates per image over the counted layers."""
    layers: tuple[LayerCost, ...]
    """Per conv/linear layer, in execution order."""

    @property
    def flops(self) -> int:
        """``2 * macs`` per image."""
        return 2 * self.macs

    def reduction(self, other: Complexity) -> tuple[float, float]:
        """Fractions ``(params, flops)`` saved by ``other`` relative to ``self`` (0.25 = 25% fewer)."""
        return 1 - other.params / self.params, 1 - other.macs / max(self.macs, 1)


def count_params_flops(model: nn.Module, input_shape: Sequence[int]) -> Complexity:
    """Count parameters and per-image FLOPs of ``model`` (see the module docstring for the rules).

    Args:
        model: The network (run once in eval mode on zeros; training flags are restored).
        input_shape: Shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.

    Returns:
        A :class:`Complexity`.

    Raises:
        ValueError: If ``input_shape`` is not a sequence of positive integers.

    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ValueError(
            f"input_shape must be positive integers without the batch dimension, got {input_shape!r}"
        )
    costs: list[LayerCost] = []
    handles = []

    def hook(path: str):
        def record(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            per_image = output.numel() // output.shape[0]
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = per_image * (module.in_channels // module.groups) * kh * kw
            else:
                macs = per_image * module.in_features
            params = sum(p.numel() for p in module.parameters(recurse=False))
            costs.append(LayerCost(path, type(module).__name__, params, macs))

        return record

    for path, module in model.named_modules():
        if type(module) in (nn.Conv2d, nn.Linear):
            handles.append(module.register_forward_hook(hook(path)))
    flags = {m: m.training for m in model.modules()}
    first = next(iter(model.parameters()), None)
    kw = {"device": first.device, "dtype": first.dtype} if first is not None else {}
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape, **kw))
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.train(flag)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params, sum(c.macs for c in costs), tuple(costs))
