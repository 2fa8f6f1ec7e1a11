"""Gradual hashing: blend every hashed layer's output with its exact (digital) output while training.

A freshly hashed network is dominated by hash noise (every layer's SimHash estimate has an error as
large as its signal at k = 64..256), so its loss gives almost no useful gradient. Blending
``y = (1 - lam) * exact(x) + lam * hashed(x)`` with ``lam`` ramped from ``start`` to 1 lets the network
adapt while the noise grows, like gradual quantisation. Only training forwards are blended; evaluation
always runs the pure hashed layers. The ramp is a function of the optimiser step, so resumed runs
reproduce it exactly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def blend_factor(step: int, total_steps: int, fraction: float, start: float = 0.0) -> float:
    """``lam`` at optimiser ``step``: linear from ``start`` to 1 over the first ``fraction`` of the steps.

    >>> [round(blend_factor(s, 10, 0.5), 2) for s in (0, 1, 5, 9)]
    [0.0, 0.2, 1.0, 1.0]
    """
    if fraction <= 0:
        return 1.0
    ramp = max(1.0, fraction * total_steps)
    return min(1.0, start + (1.0 - start) * step / ramp)


def _exact_output(layer: nn.Module, x: Tensor) -> Tensor:
    from aimc_lsh.nn import HashedLinear

    if isinstance(layer, HashedLinear):
        return F.linear(x, layer.weight, layer.bias)
    g = layer.geometry
    return F.conv2d(x, layer.weight, layer.bias, g.stride, g.padding, g.dilation)


class HashBlend:
    """Forward hooks blending exact and hashed outputs of every hashed layer of a model (training only).

    Args:
        model: The patched model (hooks are registered on its hashed layers).
        lam: Initial blend factor (1 = pure hashed, no effect).

    """

    def __init__(self, model: nn.Module, lam: float = 1.0) -> None:
        from aimc_lsh.nn import hashed_layers

        self.lam = float(lam)
        self.handles = [layer.register_forward_hook(self._hook) for _, layer in hashed_layers(model)]

    def _hook(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor | None:
        if not module.training or self.lam >= 1.0:
            return None
        return (1.0 - self.lam) * _exact_output(module, inputs[0]) + self.lam * output

    def remove(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
