"""A kernel whose projection ``P`` is a trainable parameter (gradients through the sign STE)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aimc_lsh.kernels.base import HashKernel
from aimc_lsh.kernels.random_proj import random_projection
from aimc_lsh.kernels.registry import register_kernel


@register_kernel("learned_projection")
class LearnedProjKernel(HashKernel):
    """SimHash with a learned projection, initialised like :class:`RandomProjKernel`.

    Both the input codes and the weight codes use the straight-through estimator, so ``P`` and the
    hashed weights receive gradients.

    Args:
        in_features: Length d of the hashed vectors.
        hash_length: Number of hash bits k.
        orthogonal: Initialise with orthonormal rows.
        seed: Seed of the initial projection.
        ste: Straight-through estimator for the sign.
        thresholds: Learn a comparator threshold per hash bit (see :class:`HashKernel`).

    """

    def __init__(
        self,
        in_features: int,
        hash_length: int,
        *,
        orthogonal: bool = False,
        seed: int = 0,
        ste: str = "identity",
        thresholds: bool = False,
    ) -> None:
        super().__init__(in_features, hash_length, ste=ste, thresholds=thresholds)
        self.orthogonal = orthogonal
        initial = random_projection(hash_length, in_features, orthogonal=orthogonal, seed=seed)
        self.P = nn.Parameter(initial)

    @property
    def projection(self) -> Tensor:
        """The trainable projection parameter (k x d)."""
        return self.P

    @torch.no_grad()
    def reset_projection(self, seed: int) -> None:
        """Redraw ``P`` from the random initialisation with another seed."""
        self.P.copy_(
            random_projection(self.hash_length, self.in_features, orthogonal=self.orthogonal, seed=seed)
        )
