"""Scale-aware straight-through gradient for the input codes of hashed layers (training only).

The conv-shaped hashed layers binarise ``pre = P x`` without normalising ``x`` (the sign does not need
it). The identity STE then passes ``d h_x / d x = P``, whose scale grows with the patch norm ``||x||``,
while the layer's output depends on ``x`` only through its direction (and the separately computed
norm). :class:`NormalizedProjectionStages` divides ``pre`` by the patch norm before the sign, which
leaves every code unchanged but makes the STE gradient that of the normalised input, as in the
hackathon kernel, which hashes ``x / ||x||``. Evaluation passes through unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.kernels import ConvGeometry, HashStages, TilePair, safe_sqrt


class NormalizedProjectionStages(HashStages):
    """Wraps a layer's stages; in training mode returns ``(P x) / ||x_patch||`` from :meth:`project`.

    Args:
        inner: The wrapped stage object (kept as the submodule ``inner``).

    """

    def __init__(self, inner: HashStages) -> None:
        super().__init__(ste=inner.ste)
        self.inner = inner

    def project(self, x: Tensor, filters: Tensor, geometry: ConvGeometry, tile: TilePair) -> Tensor:  # noqa: D102
        pre = self.inner.project(x, filters, geometry, tile)
        if not self.training:
            return pre
        ones = torch.ones(1, x.shape[1], *filters.shape[2:], dtype=x.dtype, device=x.device)
        norm = safe_sqrt(F.conv2d(x * x, ones, None, geometry.stride, geometry.padding, geometry.dilation))
        return pre / norm.clamp_min(1e-12)

    def patch_norms(self, x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry) -> Tensor:
        """The wrapped stages' patch norms (analog stages keep them for their comparators)."""
        return self.inner.patch_norms(x, kernel_size, geometry)

    def apply_thresholds(self, pre: Tensor, x_norm: Tensor, shift: Tensor, tile: TilePair) -> Tensor:
        """The wrapped stages' references; in training per unit norm, as :meth:`project` divided ``pre``."""
        if self.training:
            x_norm = (x_norm > 0).to(x_norm.dtype)
        return self.inner.apply_thresholds(pre, x_norm, shift, tile)

    def binarize(self, pre: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.binarize(pre, tile)

    def match(self, h_x: Tensor, codes: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.match(h_x, codes, tile)

    def reconstruct(self, similarity: Tensor, w_norm: Tensor, x_norm: Tensor, tile: TilePair) -> Tensor:  # noqa: D102
        return self.inner.reconstruct(similarity, w_norm, x_norm, tile)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__("inner"), name)


def normalize_projection_gradients(model: nn.Module) -> int:
    """Wrap every hashed layer's stages in :class:`NormalizedProjectionStages` (in place); returns a count."""
    from aimc_lsh.nn import hashed_layers

    count = 0
    for _path, layer in hashed_layers(model):
        if not isinstance(layer.stages, NormalizedProjectionStages):
            layer.stages = NormalizedProjectionStages(layer.stages).train(layer.training)
            count += 1
    return count


def unwrap_stages(model: nn.Module) -> list[tuple[nn.Module, HashStages]]:
    """Replace every hashed layer's stages by the innermost wrapped stage object (in place).

    Returns:
        ``(layer, previous stages)`` pairs for :func:`rewrap_stages`.

    """
    from aimc_lsh.nn import hashed_layers

    saved = []
    for _path, layer in hashed_layers(model):
        stages = layer.stages
        inner = stages
        while "inner" in inner._modules:
            inner = inner._modules["inner"]
        if inner is not stages:
            saved.append((layer, stages))
            layer.stages = inner
    return saved


def rewrap_stages(saved: list[tuple[nn.Module, HashStages]]) -> None:
    """Undo :func:`unwrap_stages`."""
    for layer, stages in saved:
        layer.stages = stages
