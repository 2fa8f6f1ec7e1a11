"""The math of product quantization (LUT-NN): k-means codebooks, the assignment STE, quantised tables.

An input vector of length d is split into ``n_books = d / V`` consecutive sub-vectors of length V; each
sub-vector is replaced by the nearest of the K centroids of its codebook. A dot product with a weight
row ``w`` then becomes a sum of table look-ups: ``x . w ~ sum_b T[b, j_b]`` with
``T[b, j] = c_{b, j} . w_b`` and ``j_b`` the centroid chosen for sub-vector b. Pure torch, no layers.

* :func:`kmeans` (batched over codebooks, k-means++ initialisation, seeded) builds the codebooks;
* :func:`assignment_ste` gives the hard one-hot assignment in the forward pass and the gradient of the
  soft assignment ``softmax(-distance / t)`` in the backward pass;
* :func:`lookup_table` and :func:`quantize_table` build the (optionally int-quantised) table.
"""

from __future__ import annotations

import torch
from torch import Tensor


def squared_distances(data: Tensor, centroids: Tensor) -> Tensor:
    """Squared Euclidean distances between every point and every centroid, per codebook.

    Args:
        data: Points, (B, n, V) for B codebooks.
        centroids: Centroids, (B, K, V).

    Returns:
        (B, n, K) distances, clamped at 0 against rounding.

    """
    cross = torch.baddbmm(
        (centroids * centroids).sum(-1).unsqueeze(1), data, centroids.transpose(1, 2), alpha=-2.0
    )
    return cross.add_((data * data).sum(-1, keepdim=True)).clamp_(min=0)


def _check_data(data: Tensor, k: int) -> None:
    if data.dim() != 3:
        raise ValueError(f"k-means data must be (codebooks, points, V), got shape {tuple(data.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"the number of centroids K must be a positive int, got {k!r}")
    if data.shape[1] == 0:
        raise ValueError("k-means needs at least one point per codebook, got none")
    if not torch.isfinite(data).all():
        raise ValueError("k-means data contains NaN or inf")


def kmeans_plus_plus(data: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii, 2007), batched over codebooks.

    The first centroid is a uniformly drawn point; each next one is drawn with probability proportional
    to its squared distance to the nearest chosen centroid. When every point coincides with a chosen
    centroid (fewer distinct points than K) the draw is uniform, so centroids repeat.

    Args:
        data: Points (B, n, V).
        k: Number of centroids K.
        generator: CPU generator of the draws.

    Returns:
        Centroids (B, K, V), each a point of ``data``.

    """
    _check_data(data, k)
    books, n, _ = data.shape
    rows = torch.arange(books)
    first = data[rows, torch.randint(n, (books,), generator=generator)]
    centroids = [first]
    nearest = (data - first.unsqueeze(1)).square_().sum(-1)  # (B, n)
    for _ in range(1, k):
        total = nearest.sum(1, keepdim=True)
        weights = torch.where(total > 0, nearest, torch.ones_like(nearest))
        chosen = data[rows, torch.multinomial(weights, 1, generator=generator).squeeze(1)]
        centroids.append(chosen)
        nearest = torch.minimum(nearest, (data - chosen.unsqueeze(1)).square_().sum(-1))
    return torch.stack(centroids, dim=1)


@torch.no_grad()
def kmeans(data: Tensor, k: int, *, iterations: int = 25, seed: int = 0, tol: float = 1e-3) -> Tensor:
    """Lloyd's k-means on every codebook at once, seeded with :func:`kmeans_plus_plus`.

    Empty clusters are moved to the points farthest from their centroids. Iterations stop early once at
    most a fraction ``tol`` of the points change cluster. Same data and seed give the same centroids (all
    draws come from one CPU generator).

    >>> data = torch.tensor([[[0.0], [0.1], [5.0], [5.2]]])
    >>> kmeans(data, 2, seed=0).sort(dim=1).values.squeeze()
    tensor([0.0500, 5.1000])

    Args:
        data: Points (B, n, V) for B codebooks (on a CPU copy: float32 assignments, float64 means).
        k: Centroids per codebook K.
        iterations: Maximum Lloyd iterations.
        seed: Seed of the initialisation.
        tol: Stop when at most this fraction of the points changed cluster in the last iteration.

    Returns:
        Centroids (B, K, V) in ``data``'s dtype and device.

    Raises:
        ValueError: For a K that is not a positive int, empty or non-finite data.

    """
    _check_data(data, k)
    work = data.detach().to("cpu", torch.float64)
    single = work.float()  # assignments in float32 (6x faster matmuls), means accumulated in float64
    generator = torch.Generator().manual_seed(int(seed))
    centroids = kmeans_plus_plus(single, k, generator).double()
    books, n, v = work.shape
    previous: Tensor | None = None
    for _ in range(iterations):
        # argmin_j ||x - c_j||^2 = argmin_j (||c_j||^2 - 2 x . c_j): the point norm is not needed
        c = centroids.float()
        scores = torch.baddbmm(c.square().sum(-1).unsqueeze(1), single, c.transpose(1, 2), alpha=-2)
        assign = scores.argmin(-1)  # (B, n)
        if previous is not None and (assign != previous).float().mean() <= tol:
            break
        previous = assign
        sums = torch.zeros(books, k, v, dtype=work.dtype).scatter_add_(
            1, assign.unsqueeze(-1).expand(-1, -1, v), work
        )
        counts = torch.zeros(books, k, dtype=work.dtype).scatter_add_(
            1, assign, torch.ones_like(work[..., 0])
        )
        means = sums / counts.clamp(min=1).unsqueeze(-1)
        old = centroids
        centroids = torch.where(counts.unsqueeze(-1) > 0, means, centroids)
        for b in torch.nonzero((counts == 0).any(1)).flatten().tolist():
            empty = torch.nonzero(counts[b] == 0).flatten()
            own = (work[b] - old[b, assign[b]]).square().sum(-1)  # each point to its (old) centroid
            far = own.topk(min(len(empty), n)).indices
            centroids[b, empty[: len(far)]] = work[b, far]
    return centroids.to(data.device, data.dtype)


def distortion(data: Tensor, centroids: Tensor) -> Tensor:
    """Mean squared distance of every point to its nearest centroid (the k-means objective), per codebook.

    Args:
        data: Points (B, n, V).
        centroids: Centroids (B, K, V).

    Returns:
        (B,) mean squared quantisation errors.

    """
    return squared_distances(data, centroids).min(-1).values.mean(-1)


def hard_assignment(scores: Tensor, dim: int) -> Tensor:
    """One-hot of the largest score along ``dim`` (first index on ties), in ``scores``' dtype."""
    index = scores.argmax(dim, keepdim=True)
    return torch.zeros_like(scores).scatter_(dim, index, 1.0)


def assignment_ste(neg_distances: Tensor, temperature: Tensor | float, dim: int) -> Tensor:
    """Hard nearest-centroid one-hot forward, soft-assignment gradient backward (straight-through).

    Forward: the one-hot of the nearest centroid (largest ``-distance``). Backward: the gradient of
    ``softmax(-distance / t)``, so the centroids, the inputs and the temperature ``t`` learn. Distances
    may be shifted by any constant per point (e.g. the dropped ``||x||^2``): softmax and argmax ignore it.

    >>> scores = torch.tensor([[1.0, 0.0]], requires_grad=True)
    >>> t = torch.tensor(1.0, requires_grad=True)
    >>> a = assignment_ste(scores, t, dim=1)
    >>> a
    tensor([[1., 0.]], grad_fn=<AddBackward0>)
    >>> (a * torch.tensor([[1.0, 3.0]])).sum().backward()   # the gradient of the soft assignment
    >>> scores.grad.round(decimals=4), t.grad.round(decimals=4)
    (tensor([[-0.3932,  0.3932]]), tensor(0.3932))

    Args:
        neg_distances: Negative (squared) distances, any shape.
        temperature: Softmax temperature t > 0 (a tensor to learn it).
        dim: The centroid dimension.

    Returns:
        A tensor of ``neg_distances``' shape: one-hot along ``dim`` in value, soft in gradient.

    """
    soft = torch.softmax(neg_distances / temperature, dim=dim)
    hard = hard_assignment(neg_distances.detach(), dim)
    return soft + (hard - soft).detach()


def lookup_table(weight: Tensor, centroids: Tensor) -> Tensor:
    """The table ``T[o, b*K + j] = c_{b, j} . W[o, sub-vector b]`` of centroid-weight products.

    Args:
        weight: Weight rows (out, n_books * V), the sub-vectors consecutive.
        centroids: Codebooks (n_books, K, V).

    Returns:
        (out, n_books * K); differentiable in both arguments.

    """
    books, k, v = centroids.shape
    if weight.dim() != 2 or weight.shape[1] != books * v:
        raise ValueError(
            f"weight rows must be (out, {books * v}) for {books} codebooks of length {v}, "
            f"got {tuple(weight.shape)}"
        )
    return torch.einsum("obv,bkv->obk", weight.reshape(weight.shape[0], books, v), centroids).reshape(
        weight.shape[0], books * k
    )


def quantize_table(table: Tensor, bits: int | None) -> Tensor:
    """Symmetric per-row uniform quantisation of a look-up table, straight-through for the rounding.

    Each row (one output) is scaled so that its largest magnitude maps to ``2**(bits-1) - 1`` and
    rounded, giving at most ``2**bits - 1`` levels per row; the gradient passes unchanged.

    >>> quantize_table(torch.tensor([[1.0, 0.3, -0.6]]), 2)
    tensor([[ 1.,  0., -1.]])

    Args:
        table: (out, entries).
        bits: Integer bits (>= 2); None keeps the float table.

    Returns:
        The de-quantised table (same shape and dtype).

    Raises:
        ValueError: For ``bits`` that is not None or an int >= 2.

    """
    if bits is None:
        return table
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
        raise ValueError(f"table bits must be an int >= 2 or None (float table), got {bits!r}")
    top = 2 ** (bits - 1) - 1
    scale = table.detach().abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(table.dtype).tiny) / top
    quantised = torch.round(table.detach() / scale).clamp_(-top, top) * scale
    return table + (quantised - table).detach()
