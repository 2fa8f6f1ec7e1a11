"""Data-fitted SimHash projections: random hyperplanes drawn inside the inputs' principal subspace.

SimHash's bit statistics (``P[bit differs] = theta / pi``) need only that the distribution of a row
``p`` of ``P`` look the same in every direction of the plane spanned by the two hashed vectors. When the
inputs ``x`` of a layer live (mostly) in an r-dimensional subspace with orthonormal basis ``B`` (d x r),
rows ``p = B g`` with ``g`` drawn like a random projection in r dimensions keep that property for
every pair inside the subspace, and ``p . w = g . (B^T w)`` sees only the part of a weight row the
inputs can meet (``x . w = x . B B^T w`` for ``x`` in the subspace). The cosine the bits estimate is
then ``x . w / (||x|| ||B^T w||)``: larger in magnitude than ``x . w / (||x|| ||w||)``, so the same k
bits estimate the dot product with less relative noise, and orthonormal ``g`` (k close to r) lowers it
further. Measured on the pretrained ResNet-20 in docs/training.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aimc_lsh.kernels.random_proj import random_projection


def check_energy(energy: float, name: str = "energy") -> None:
    """Raise unless ``energy`` is a number in (0, 1]."""
    if isinstance(energy, bool) or not isinstance(energy, int | float) or not 0.0 < float(energy) <= 1.0:
        raise ValueError(f"{name} must be a fraction in (0, 1] of the inputs' second moment, got {energy!r}")


def principal_basis(second_moment: Tensor, energy: float) -> Tensor:
    """Orthonormal basis (d, r) of the fewest leading eigenvectors holding ``energy`` of the trace.

    Args:
        second_moment: Symmetric positive semi-definite (d, d) matrix, e.g. ``X^T X / n`` of the inputs
            (uncentred: SimHash hyperplanes pass through the origin).
        energy: Fraction in (0, 1] of ``trace(second_moment)`` the basis must capture.

    Returns:
        A float64 tensor (d, r), columns orthonormal, ordered by decreasing eigenvalue.

    Raises:
        ValueError: For a non-square, non-finite or all-zero matrix, or ``energy`` outside (0, 1].

    >>> principal_basis(torch.diag(torch.tensor([1.0, 8.0, 1.0])), 0.8).abs().flatten().tolist()
    [0.0, 1.0, 0.0]

    """
    check_energy(energy)
    m = torch.as_tensor(second_moment)
    if m.dim() != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"second_moment must be a square (d, d) matrix, got shape {tuple(m.shape)}")
    m = m.detach().to(torch.float64)
    if not bool(torch.isfinite(m).all()):
        raise ValueError("second_moment contains NaN or inf")
    values, vectors = torch.linalg.eigh((m + m.T) / 2)
    values = values.flip(0).clamp_min(0.0)
    vectors = vectors.flip(1)
    total = float(values.sum())
    if total <= 0.0:
        raise ValueError("second_moment is zero: the inputs it was measured on are all zero")
    reached = values.cumsum(0) >= float(energy) * total * (1.0 - 1e-12)
    rank = int(torch.nonzero(reached)[0, 0]) + 1
    return vectors[:, :rank].contiguous()


def subspace_projection(
    hash_length: int, basis: Tensor, *, orthogonal: bool = False, seed: int = 0
) -> Tensor:
    """Draw ``P = G B^T`` (k x d): :func:`random_projection` rows in r dimensions, mapped by the basis.

    Rows have expected unit norm (exactly unit norm with ``orthogonal``), like :func:`random_projection`.

    Args:
        hash_length: Number of rows k.
        basis: Orthonormal columns (d, r), e.g. from :func:`principal_basis`.
        orthogonal: Orthonormal rows in blocks of at most r (see :func:`random_projection`).
        seed: Seed of ``G``; the same seed and basis give the same matrix.

    Returns:
        A float32 tensor of shape (hash_length, d).

    Raises:
        ValueError: For a basis that is not a (d, r) matrix with 1 <= r <= d.

    """
    if basis.dim() != 2 or not 1 <= basis.shape[1] <= basis.shape[0]:
        raise ValueError(f"basis must have shape (d, r) with 1 <= r <= d, got {tuple(basis.shape)}")
    g = random_projection(hash_length, basis.shape[1], orthogonal=orthogonal, seed=seed)
    return (g.double() @ basis.double().T).float()


def simhash_estimate(
    inputs: Tensor, weights: Tensor, projection: Tensor, weight_norms: Tensor | None = None
) -> Tensor:
    """What a hashed layer computes for every input row and weight row under ``projection`` (float64).

    ``||x|| ||w|| cos(pi/2 (1 - s))`` with ``s = sign(x P^T) . sign(w P^T) / k`` (sign of 0 is +1, as in the
    layers), for inputs (n, d), weights (m, d) and ``P`` (k, d).

    Args:
        inputs: Input rows (n, d).
        weights: Weight rows (m, d).
        projection: ``P`` (k, d).
        weight_norms: Scale of each weight row (m,) instead of ``||w||`` (e.g. ``||B^T w||`` for rows
            drawn in the subspace B, the ideal scale of a fitted projection).

    Returns:
        Estimates (n, m).

    Raises:
        ValueError: If the three matrices do not share d.

    """
    if inputs.dim() != 2 or weights.dim() != 2 or projection.dim() != 2:
        raise ValueError("inputs, weights and projection must be matrices (n, d), (m, d) and (k, d)")
    if not inputs.shape[1] == weights.shape[1] == projection.shape[1]:
        shapes = f"{tuple(inputs.shape)}, {tuple(weights.shape)}, {tuple(projection.shape)}"
        raise ValueError(f"inputs, weights and projection must share d (their last dimension), got {shapes}")
    x, w, p = inputs.double(), weights.double(), projection.double()
    one = x.new_ones(())
    s = torch.copysign(one, x @ p.T) @ torch.copysign(one, w @ p.T).T / p.shape[0]
    scale = w.norm(dim=1) if weight_norms is None else weight_norms.double()
    return x.norm(dim=1, keepdim=True) * scale * torch.sin(0.5 * torch.pi * s)


def affine_residual(estimate: Tensor, exact: Tensor) -> float:
    """Share of the exact outputs' variance that no per-column affine map of the estimate recovers.

    ``sum_c var(y_c) (1 - rho_c^2) / sum_c var(y_c)`` over the columns c (output channels) of ``exact``,
    ``rho_c`` the correlation of column c of ``estimate`` with it: 0 when every estimated channel is an
    exact rescaled, shifted copy (what BatchNorm after the layer absorbs), 1 when it carries nothing of it.

    >>> y = torch.tensor([[1.0, 0.0], [2.0, 1.0], [4.0, 0.0]])
    >>> affine_residual(3 * y + 1, y)
    0.0

    Raises:
        ValueError: If the shapes differ or ``exact`` is constant in every column.

    """
    if estimate.shape != exact.shape or exact.dim() != 2:
        raise ValueError(f"estimate and exact must be matrices of one shape, got {tuple(estimate.shape)} "
                         f"and {tuple(exact.shape)}")  # fmt: skip
    e = estimate.double() - estimate.double().mean(0)
    y = exact.double() - exact.double().mean(0)
    var_y, var_e = (y * y).sum(0), (e * e).sum(0)
    total = float(var_y.sum())
    if total <= 0.0:
        raise ValueError("exact is constant in every column: nothing to recover")
    explained = torch.where(var_e > 0, (e * y).sum(0) ** 2 / var_e.clamp_min(1e-300), 0.0)
    return max(0.0, float((var_y - explained).sum()) / total)
