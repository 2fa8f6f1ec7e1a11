"""Neuron-merging arithmetic: folded neuron vectors, fingerprints, representatives, chain rewrites.

With BatchNorm folded in (eval-mode running statistics), neuron ``i`` of a producer computes
``ReLU(a_i . x + b_i)``; its *neuron vector* is ``v_i = [a_i, b_i]`` (weights flattened, bias appended).
If ``v_i = s_i v_r`` with ``s_i > 0`` then ``ReLU(a_i . x + b_i) = s_i ReLU(a_r . x + b_r)`` exactly, and
every op between the ReLU and the consumer (pooling, flatten, dropout) commutes with the positive scale,
so the consumer reads neuron ``i`` as ``s_i`` times the representative: its input column for the bucket
becomes ``sum_i s_i W_next[:, i]``.

Representative of a bucket (members ``i`` with weights ``w_i``: mean post-ReLU activation, or 1):
direction ``d = normalise(sum_i w_i v_i / |v_i|)``, length ``c = sum_i w_i |v_i| / sum_i w_i`` (so the
merged weights keep the members' magnitude), ``v_r = c d`` and ``s_i = max(0, v_i . d) / c`` -- the
least-squares scale of ``v_i`` along ``d`` (members pointing away from ``d`` are dropped, ``s_i = 0``).
Identical members give ``d = v / |v|``, ``c = |v|`` and ``s_i = 1``; a single-member bucket is copied
verbatim (weights, bias and BatchNorm parameters and statistics), so unmerged neurons are untouched.

A merged bucket keeps a BatchNorm channel: its weight row is ``a_r / k`` with ``k`` the members' mean
``|gamma / sqrt(var + eps)|`` (original magnitude), its running mean and variance are the members'
statistics mapped through ``s_i`` (``E[a_r x] ~ beta_i / s_i - b_r``, ``std ~ |gamma_i| / s_i``), and
``gamma``, ``beta`` are then solved so that the eval-mode output is exactly ``a_r . x + b_r``. Training
in BatchNorm train mode afterwards therefore starts from sensible batch statistics.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import skip_init

__all__ = [
    "bucket_assignment",
    "bucket_count",
    "fingerprint_bits",
    "folded_vectors",
    "merge_chain_modules",
    "new_like",
    "representatives",
]


def folded_vectors(producer: nn.Module, norm: _BatchNorm | None) -> tuple[Tensor, Tensor, Tensor]:
    """Neuron vectors ``[a_i, b_i]`` of a producer with its BatchNorm folded in (differentiable).

    Args:
        producer: ``nn.Conv2d`` or ``nn.Linear`` with C output channels.
        norm: The BatchNorm after it (running statistics are used), or None.

    Returns:
        ``(vectors, fold, beta)``: vectors (C, D + 1) in the producer's dtype; ``fold`` (C,) the factors
        ``gamma / sqrt(var + eps)`` (ones without a norm); ``beta`` (C,) the norm's bias (zeros without).

    """
    weight = producer.weight.reshape(producer.weight.shape[0], -1)
    channels = weight.shape[0]
    bias = producer.bias if producer.bias is not None else weight.new_zeros(channels)
    if norm is None:
        fold, beta = weight.new_ones(channels), weight.new_zeros(channels)
        return torch.cat([weight, bias[:, None]], dim=1), fold, beta
    fold = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    beta = norm.bias
    folded_bias = fold * (bias - norm.running_mean) + beta
    return torch.cat([weight * fold[:, None], folded_bias[:, None]], dim=1), fold, beta


def fingerprint_bits(vectors: Tensor, projection: Tensor) -> Tensor:
    """SimHash fingerprints: bit ``j`` of neuron ``i`` is ``(P v_i)_j > 0``.

    Args:
        vectors: (C, D) neuron vectors.
        projection: (m, D) projection rows.

    Returns:
        A bool tensor (C, m); a zero vector has all bits False.

    """
    return (vectors.detach().double() @ projection.double().T) > 0


def bucket_assignment(bits: Tensor) -> Tensor:
    """Bucket index of every row of ``bits`` (identical rows share a bucket), numbered by first member.

    Args:
        bits: (C, m) fingerprints or other keys (``m = 0`` puts everything in one bucket).

    Returns:
        A long tensor (C,) with values ``0 .. B - 1``; bucket ``b`` has a smaller first member than ``b + 1``.

    """
    seen: dict[tuple[bool, ...], int] = {}
    out = []
    for row in bits.tolist():
        out.append(seen.setdefault(tuple(row), len(seen)))
    return torch.tensor(out, dtype=torch.long)


def bucket_count(bits: Tensor) -> int:
    """Number of distinct rows of ``bits`` (1 if ``bits`` has no columns)."""
    if bits.shape[1] == 0:
        return 1 if bits.shape[0] else 0
    return int(torch.unique(bits, dim=0).shape[0])


def representatives(vectors: Tensor, assignment: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
    """Representative vector of every bucket and the scale ``s_i`` of every neuron (see module docstring).

    Args:
        vectors: (C, D) neuron vectors (float64 recommended).
        assignment: (C,) bucket indices ``0 .. B - 1``.
        weights: (C,) non-negative member weights, or None for uniform weights.

    Returns:
        ``(reps, scales)``: reps (B, D), scales (C,) with ``vectors[i] ~ scales[i] * reps[assignment[i]]``
        (exact for single-member buckets and for members that are positive multiples of each other).

    """
    vectors = vectors.detach().double()
    n_buckets = int(assignment.max()) + 1 if assignment.numel() else 0
    weights = torch.ones(len(vectors), dtype=torch.float64) if weights is None else weights.double()
    reps = vectors.new_zeros(n_buckets, vectors.shape[1])
    scales = vectors.new_zeros(len(vectors))
    norms = vectors.norm(dim=1)
    for b in range(n_buckets):
        members = torch.nonzero(assignment == b).flatten()
        if len(members) == 1:
            reps[b], scales[members] = vectors[members[0]], 1.0
            continue
        v, n = vectors[members], norms[members]
        w = weights[members]
        if float((w * (n > 0)).sum()) <= 0:
            w = torch.ones_like(w)
        units = torch.where(n[:, None] > 0, v / n.clamp_min(1e-300)[:, None], torch.zeros_like(v))
        direction = (w[:, None] * units).sum(0)
        if float(direction.norm()) == 0.0:  # members cancel out (or are all zero): keep the heaviest
            direction = units[int(torch.argmax(w * n))]
        length = float((w * n).sum() / w.sum())
        if float(direction.norm()) == 0.0 or length == 0.0:
            continue  # an all-zero bucket: the representative outputs ReLU(0) = 0
        direction = direction / direction.norm()
        reps[b] = length * direction
        scales[members] = (v @ direction).clamp_min(0.0) / length
    return reps, scales


def new_like(
    module: nn.Module, *, out_channels: int | None = None, in_channels: int | None = None
) -> nn.Module:
    """An uninitialised Conv2d, Linear or BatchNorm like ``module`` with other widths (same options, mode).

    BatchNorm layers take ``out_channels`` as their width (their own without it). Parameters are left
    uninitialised (no draw from the global RNG) and keep ``module``'s ``requires_grad``.
    """
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    kw = {"device": tensor.device, "dtype": tensor.dtype} if tensor is not None else {}
    if isinstance(module, nn.Conv2d):  # skip_init: no random init (leaves the global RNG alone)
        new: nn.Module = skip_init(
            nn.Conv2d,
            in_channels if in_channels is not None else module.in_channels,
            out_channels if out_channels is not None else module.out_channels,
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
            **kw,
        )
    elif isinstance(module, nn.Linear):
        new = skip_init(
            nn.Linear,
            in_channels if in_channels is not None else module.in_features,
            out_channels if out_channels is not None else module.out_features,
            bias=module.bias is not None,
            **kw,
        )
    else:  # BatchNorm1d / BatchNorm2d
        new = type(module)(
            out_channels if out_channels is not None else module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            **kw,
        )
    new.train(module.training)
    for name, param in new.named_parameters():
        param.requires_grad_(getattr(module, name).requires_grad)
    return new


def _weighted_mean(values: Tensor, weights: Tensor) -> float:
    return float((values * weights).sum() / weights.sum())


@torch.no_grad()
def merge_chain_modules(
    producer: nn.Module,
    norm: _BatchNorm | None,
    consumer: nn.Module,
    assignment: Tensor,
    weights: Tensor | None,
    *,
    metric: Tensor | None = None,
) -> tuple[nn.Module, _BatchNorm | None, nn.Module]:
    """Build the narrower producer, norm and consumer of one merged chain.

    Args:
        producer: The layer whose C output channels are merged (``nn.Conv2d`` / ``nn.Linear``).
        norm: Its BatchNorm, or None.
        consumer: The layer reading the channels; a linear consumer may read ``G`` consecutive inputs
            per channel (flattened feature maps, ``in_features = C * G``).
        assignment: (C,) bucket index of every channel (``0 .. B - 1``).
        weights: (C,) member weights for the representatives, or None for uniform.
        metric: (D + 1, D + 1) factor ``L``: representatives and scales are computed for ``v L`` and
            mapped back (see :mod:`aimc_lsh.nn.merge_calibration`); None: plain vectors.

    Returns:
        New ``(producer, norm, consumer)`` modules with B channels (same devices, dtypes, training flags).

    """
    # all arithmetic in float64 on the CPU; the new modules are created on the layers' device
    vectors, fold, beta = (t.double().cpu() for t in folded_vectors(producer, norm))
    assignment = assignment.cpu()
    weights = weights.double().cpu() if weights is not None else None
    gammas = means = variances = None
    if norm is not None:
        gammas, means, variances = (
            t.double().cpu() for t in (norm.weight, norm.running_mean, norm.running_var)
        )
    if metric is None:
        reps, scales = representatives(vectors, assignment, weights)
    else:
        factor = metric.double().cpu()
        reps, scales = representatives(vectors @ factor, assignment, weights)
        reps = torch.linalg.solve_triangular(factor.T, reps.T, upper=True).T  # back from v L to v
    n_buckets = reps.shape[0]
    w_uniform = torch.ones(len(assignment), dtype=torch.float64)
    w_all = w_uniform if weights is None else weights.double()
    new_producer = new_like(producer, out_channels=n_buckets)
    new_norm = new_like(norm, out_channels=n_buckets) if norm is not None else None
    weight = torch.empty(n_buckets, vectors.shape[1] - 1, dtype=torch.float64)
    bias = torch.zeros(n_buckets, dtype=torch.float64)
    old_w = producer.weight.reshape(len(assignment), -1).double().cpu()
    old_b = (
        producer.bias.double().cpu()
        if producer.bias is not None
        else torch.zeros(len(assignment), dtype=torch.float64)
    )
    norm_state: dict[str, Tensor] = {}
    if norm is not None:
        norm_state = {
            k: torch.empty(n_buckets, dtype=torch.float64) for k in ("weight", "bias", "mean", "var")
        }
    for b in range(n_buckets):
        members = torch.nonzero(assignment == b).flatten()
        if len(members) == 1:  # copy verbatim
            i = int(members[0])
            weight[b], bias[b] = old_w[i], old_b[i]
            if norm is not None:
                norm_state["weight"][b], norm_state["bias"][b] = gammas[i], beta[i]
                norm_state["mean"][b], norm_state["var"][b] = means[i], variances[i]
            continue
        a_r, b_r = reps[b, :-1], float(reps[b, -1])
        if norm is None:
            weight[b], bias[b] = a_r, b_r
            continue
        w = w_all[members] if float(w_all[members].sum()) > 0 else w_uniform[members]
        k = _weighted_mean(fold[members].abs(), w) or 1.0
        s = scales[members]
        live = s > 0
        mean_est, std_est = 0.0, 1.0
        if bool(live.any()):
            gamma = gammas[members]
            mean_est = _weighted_mean(beta[members][live] / s[live], w[live]) - b_r
            std_est = _weighted_mean(gamma[live].abs() / s[live], w[live])
        sigma = max(std_est / k, 2.0 * norm.eps**0.5)
        var = sigma**2 - norm.eps
        weight[b] = a_r / k
        norm_state["mean"][b] = mean_est / k
        norm_state["var"][b] = var
        norm_state["weight"][b] = k * (var + norm.eps) ** 0.5
        norm_state["bias"][b] = b_r + k * (mean_est / k)
    new_producer.weight.copy_(weight.reshape(new_producer.weight.shape))
    if new_producer.bias is not None:
        new_producer.bias.copy_(bias)
    if new_norm is not None and norm is not None:
        new_norm.weight.copy_(norm_state["weight"])
        new_norm.bias.copy_(norm_state["bias"])
        new_norm.running_mean.copy_(norm_state["mean"])
        new_norm.running_var.copy_(norm_state["var"])
        if norm.num_batches_tracked is not None and new_norm.num_batches_tracked is not None:
            new_norm.num_batches_tracked.copy_(norm.num_batches_tracked)
    new_consumer = _merge_consumer(consumer, assignment, scales, n_buckets)
    return new_producer, new_norm, new_consumer


def _merge_consumer(consumer: nn.Module, assignment: Tensor, scales: Tensor, n_buckets: int) -> nn.Module:
    channels = len(assignment)
    w = consumer.weight.double().cpu()
    if isinstance(consumer, nn.Conv2d):
        cols = w * scales.view(1, -1, 1, 1)
        merged = w.new_zeros(w.shape[0], n_buckets, *w.shape[2:]).index_add_(1, assignment, cols)
        new = new_like(consumer, in_channels=n_buckets)
    else:
        group = w.shape[1] // channels
        cols = w.view(w.shape[0], channels, group) * scales.view(1, -1, 1)
        merged = w.new_zeros(w.shape[0], n_buckets, group).index_add_(1, assignment, cols)
        merged = merged.reshape(w.shape[0], n_buckets * group)
        new = new_like(consumer, in_channels=n_buckets * group)
    new.weight.copy_(merged)
    if consumer.bias is not None:
        new.bias.copy_(consumer.bias)
    return new
