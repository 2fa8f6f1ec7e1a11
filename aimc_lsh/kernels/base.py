"""The SimHash kernel base class: projection, codes and the cosine estimate.

A kernel owns one projection ``P`` (k x d). Hashing ``v`` gives ``h = sign(P v)`` in {-1, +1}^k; for
two vectors the fraction of agreeing bits estimates their angle: ``P[bit differs] = theta / pi``,
so with ``s = h_a . h_b / k`` in [-1, 1], ``cos(theta) ~ cos(pi/2 (1 - s))``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from aimc_lsh.kernels.ste import STE_MODES, sign_ste


def safe_norm(v: Tensor, dim: int = -1, keepdim: bool = False) -> Tensor:
    """Euclidean norm whose gradient is 0 (not NaN) at the zero vector."""
    return safe_sqrt((v * v).sum(dim=dim, keepdim=keepdim))


def safe_sqrt(v: Tensor) -> Tensor:
    """Square root that is 0 with a zero gradient where ``v <= 0`` (no NaN, no inf)."""
    positive = v > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, v, torch.ones_like(v))), 0.0)


def cosine_from_similarity(similarity: Tensor) -> Tensor:
    """Estimate ``cos(theta)`` from the code similarity ``s = h_a . h_b / k`` in [-1, 1].

    ``s = 1 - 2 theta / pi`` in expectation, hence ``cos(theta) = cos(pi/2 (1 - s))``.

    >>> cosine_from_similarity(torch.tensor([1.0, 0.5, -1.0])).round(decimals=4)
    tensor([ 1.0000,  0.7071, -1.0000])
    """
    return torch.cos(0.5 * math.pi * (1.0 - similarity))


class HashKernel(nn.Module):
    """Base class of SimHash kernels: a projection ``P`` (k x d) and what is derived from it.

    Subclasses decide where ``P`` comes from (a fixed random buffer, a learned parameter, ...) by
    implementing :attr:`projection`.

    Args:
        in_features: Length d of the hashed vectors.
        hash_length: Number of hash bits k.
        ste: Straight-through estimator used by :meth:`codes` (see :func:`sign_ste`).
        thresholds: Learn a comparator threshold per hash bit (the parameter ``threshold``, zeros at
            the start); input codes become ``sign(P v - t ||p|| ||v||)`` (:meth:`comparator_shift`).

    """

    def __init__(
        self, in_features: int, hash_length: int, *, ste: str = "identity", thresholds: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(in_features, int) or in_features <= 0:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if not isinstance(hash_length, int) or hash_length <= 0:
            raise ValueError(f"hash_length (k) must be a positive int, got {hash_length!r}")
        if ste not in STE_MODES:
            raise ValueError(f"unknown STE mode {ste!r}; allowed: {', '.join(STE_MODES)}")
        self.in_features = in_features
        self.hash_length = hash_length
        self.ste = ste
        if thresholds:
            self.threshold: nn.Parameter | None = nn.Parameter(torch.zeros(hash_length))
        else:
            self.register_parameter("threshold", None)

    @property
    def projection(self) -> Tensor:
        """The projection matrix ``P`` of shape (hash_length, in_features)."""
        raise NotImplementedError

    def project(self, v: Tensor) -> Tensor:
        """Return ``v @ P.T``: shape (..., k) for ``v`` of shape (..., d)."""
        if v.shape[-1] != self.in_features:
            raise ValueError(
                f"{type(self).__name__} hashes vectors of length {self.in_features}, "
                f"got shape {tuple(v.shape)}"
            )
        return v @ self.projection.T

    def codes(self, v: Tensor) -> Tensor:
        """Return the +-1 hash codes ``sign(v @ P.T)`` with a straight-through gradient."""
        return sign_ste(self.project(v), self.ste)

    def comparator_shift(self) -> Tensor | None:
        """Per-bit comparator reference per unit input norm, ``t_j ||p_j||`` (k,); None without thresholds.

        An input ``v`` gives bit j as ``sign(p_j . v - shift_j ||v||)``, that is ``cos(p_j, v) >= t_j``.
        """
        if self.threshold is None:
            return None
        return self.threshold * safe_norm(self.projection, dim=1)

    def input_codes(self, v: Tensor) -> Tensor:
        """Codes of inputs ``v`` (..., d): :meth:`codes`, against the comparator thresholds if learned."""
        shift = self.comparator_shift()
        if shift is None:
            return self.codes(v)
        return sign_ste(self.project(v) - safe_norm(v, keepdim=True) * shift, self.ste)

    def similarity(self, h_a: Tensor, h_b: Tensor) -> Tensor:
        """Return ``s = h_a @ h_b.T / k`` in [-1, 1] for codes (N, k) and (M, k)."""
        return h_a @ h_b.T / self.hash_length

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Approximate ``x @ weights.T`` by ``||x|| ||w|| cos(theta_hat)`` (the hackathon call).

        Rows of ``x`` and ``weights`` are normalised, hashed with the same ``P`` (the inputs against the
        comparator thresholds, if learned), and the estimated cosine is rescaled by both norms. Zero
        rows give 0, never NaN.

        Args:
            x: Inputs of shape (N, d) (or (..., d)).
            weights: Weight rows of shape (M, d).

        Returns:
            Approximate dot products of shape (N, M) (or (..., M)).

        """
        if weights.dim() != 2 or weights.shape[1] != self.in_features:
            raise ValueError(f"weights must have shape (M, {self.in_features}), got {tuple(weights.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("inputs contain NaN or inf")
        x_norm = safe_norm(x, keepdim=True)
        w_norm = safe_norm(weights, keepdim=True)
        h_x = self.input_codes(x / torch.where(x_norm > 0, x_norm, 1.0))
        h_w = self.codes(weights / torch.where(w_norm > 0, w_norm, 1.0))
        cos = cosine_from_similarity(h_x @ h_w.T / self.hash_length)
        return x_norm * w_norm.T * cos

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        thresholds = ", thresholds=True" if self.threshold is not None else ""
        return f"in_features={self.in_features}, hash_length={self.hash_length}, ste={self.ste!r}{thresholds}"
