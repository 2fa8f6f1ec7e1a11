"""Kernels whose projection ``P`` is drawn once at random: Gaussian or orthogonal rows."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from aimc_lsh.kernels.base import HashKernel
from aimc_lsh.kernels.registry import register_kernel


def random_projection(
    hash_length: int, in_features: int, *, orthogonal: bool = False, seed: int = 0
) -> Tensor:
    """Draw a projection matrix (k x d) with rows of expected unit norm.

    Gaussian rows are N(0, 1/d). Orthogonal rows come from QR factorisations of Gaussian blocks:
    within each block of ``min(k, d)`` rows the rows are exactly orthonormal (with k > d, several
    independent blocks are stacked, since at most d rows can be mutually orthogonal).

    Args:
        hash_length: Number of rows k.
        in_features: Number of columns d.
        orthogonal: Orthonormal rows instead of i.i.d. Gaussian ones.
        seed: Seed of the generator; the same seed gives the same matrix.

    Returns:
        A float32 tensor of shape (hash_length, in_features).

    """
    generator = torch.Generator().manual_seed(int(seed))
    gaussian = torch.randn(hash_length, in_features, generator=generator, dtype=torch.float64)
    if not orthogonal:
        return (gaussian / math.sqrt(in_features)).float()
    blocks = []
    for start in range(0, hash_length, in_features):
        block = gaussian[start : start + in_features]  # (b, d) with b <= d
        q, r = torch.linalg.qr(block.T)  # q: (d, b) orthonormal columns
        q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones(()))
        blocks.append(q.T)
    return torch.cat(blocks).float()


@register_kernel("random_projection")
class RandomProjKernel(HashKernel):
    """SimHash with a fixed random projection (a buffer: saved in state_dict, not trained).

    Args:
        in_features: Length d of the hashed vectors.
        hash_length: Number of hash bits k.
        orthogonal: Use orthonormal rows (lower estimator variance for k <= d).
        seed: Seed of the projection.
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
        self.register_buffer(
            "P", random_projection(hash_length, in_features, orthogonal=orthogonal, seed=seed)
        )

    @property
    def projection(self) -> Tensor:
        """The fixed projection buffer (k x d)."""
        return self.P
