"""Per-channel input normalisation as a module, so a model can take images in [0, 1].

:class:`Normalize` is deliberately neither ``nn.Conv2d`` nor ``nn.Linear``: model surgery
(``aimc_lsh.nn.patch_model``) leaves it alone. Its mean/std are non-persistent buffers, so a model's
``state_dict`` keeps exactly the keys of the upstream checkpoint it was loaded from.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["Normalize"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel on inputs of shape (N, C, H, W)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Create the module.

        Args:
            mean: One value per channel.
            std: One strictly positive value per channel.

        Raises:
            ValueError: If the lengths differ, are zero, or a std is not positive/finite.

        """
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32)
        std_t = torch.as_tensor(list(std), dtype=torch.float32)
        if mean_t.ndim != 1 or mean_t.numel() == 0 or mean_t.shape != std_t.shape:
            raise ValueError(
                f"mean and std need one value per channel and equal lengths, got {mean!r} and {std!r}"
            )
        if not torch.isfinite(mean_t).all() or not torch.isfinite(std_t).all() or (std_t <= 0).any():
            raise ValueError(f"std must be finite and > 0 and mean finite, got mean={mean!r} std={std!r}")
        self.register_buffer("mean", mean_t.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std_t.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x``; raises ``ValueError`` if its channel count does not match."""
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize expects (N, {self.mean.shape[1]}, H, W) images scaled to [0, 1], "
                f"got {tuple(x.shape)}"
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the per-channel mean and std."""
        mean = ", ".join(f"{v:.4f}" for v in self.mean.flatten().tolist())
        std = ", ".join(f"{v:.4f}" for v in self.std.flatten().tolist())
        return f"mean=({mean}), std=({std})"
