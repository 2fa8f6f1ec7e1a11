"""Calibration statistics for neuron merging: mean activations and the input metric of every chain.

One pass over calibration batches records, per chain,

* the mean post-ReLU activation of each neuron (weights of the activation-weighted representatives);
* the second-moment matrix ``S = E[x~ x~^T]`` of the producer's augmented inputs ``x~ = [x_patch, 1]``
  (convolution patches as the layer sees them, with its stride, padding and dilation).

Neuron ``i``'s pre-activation is ``v_i . x~``, so ``v_i^T S v_j = E[(v_i . x~)(v_j . x~)]``: in the
coordinates ``v' = L^T v`` with ``S = L L^T`` (Cholesky), dot products and angles between neuron
vectors are those between the neurons' pre-activation outputs on the data. Hashing and averaging there
(``metric="inputs"`` in :class:`~aimc_lsh.nn.merging.MergeConfig`) groups neurons that *respond* alike
rather than neurons whose raw weights look alike; in plain weight space the bias coordinate, for
example, counts as much as the whole weight row although a typical input patch has norm 8-20 in a
CIFAR ResNet-20 (measured), which distorts the buckets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.nn.fx_chains import MergeChain

__all__ = ["Batches", "calibrate_chains", "iter_batches", "metric_factor"]

Batches = Tensor | Iterable[Tensor | tuple | list] | None
"""Calibration inputs: a tensor, or an iterable of tensors or ``(inputs, labels)`` pairs; None: none."""

MAX_ROWS = 16_384
"""Patches per batch and layer used for the second moments (evenly strided subsample beyond this)."""


def iter_batches(batches: Batches) -> Iterable[Tensor]:
    """The input tensors of ``batches`` (see :data:`Batches`)."""
    if batches is None:
        return
    if isinstance(batches, Tensor):
        batches = [batches]
    for batch in batches:
        yield batch[0] if isinstance(batch, tuple | list) else batch


def metric_factor(second_moment: Tensor, ridge: float = 1e-6) -> Tensor:
    """Lower Cholesky factor ``L`` of ``S + ridge * mean(diag S) * I`` (float64).

    Args:
        second_moment: (D, D) symmetric positive semi-definite matrix.
        ridge: Relative diagonal loading that makes rank-deficient statistics (dead inputs, padding)
            invertible.

    Returns:
        ``L`` (D, D) with ``L L^T`` the loaded matrix.

    """
    s = second_moment.double()
    load = ridge * float(s.diagonal().mean().clamp_min(1e-12))
    return torch.linalg.cholesky(s + load * torch.eye(len(s), dtype=s.dtype))


def _patches(module: nn.Module, x: Tensor) -> Tensor:
    if isinstance(module, nn.Conv2d):
        u = F.unfold(
            x, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
        )
        u = u.transpose(1, 2).reshape(-1, u.shape[1])
    else:
        u = x.reshape(-1, x.shape[-1])
    if len(u) > MAX_ROWS:
        u = u[:: -(-len(u) // MAX_ROWS)]
    return torch.cat([u.float(), u.new_ones(len(u), 1, dtype=torch.float32)], dim=1)


@torch.no_grad()
def calibrate_chains(
    model: nn.Module, chains: list[MergeChain], batches: Batches, *, metric: bool
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Mean activations and (optionally) input-metric factors of ``chains`` over ``batches``.

    Args:
        model: The network (run in eval mode; training flags are restored).
        chains: The chains to measure.
        batches: Calibration inputs (see :data:`Batches`).
        metric: Also accumulate the input second moments and return their Cholesky factors.

    Returns:
        ``(means, factors)``: producer path -> (C,) float64 mean post-ReLU activations, and producer path
        -> (D + 1, D + 1) float64 lower factor ``L``; both empty without batches.

    """
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    moments: dict[str, Tensor] = {}
    rows: dict[str, int] = {}
    handles = []

    def output_hook(path: str, channel_dim: int) -> Callable:
        def record(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            act = torch.relu(output.detach()).double().movedim(channel_dim, -1)
            act = act.reshape(-1, act.shape[-1])
            sums[path] = sums.get(path, 0) + act.sum(0).cpu()
            counts[path] = counts.get(path, 0) + act.shape[0]

        return record

    def input_hook(path: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, _output: Tensor) -> None:
            u = _patches(module, inputs[0].detach())
            moments[path] = moments.get(path, 0) + (u.T @ u).double().cpu()
            rows[path] = rows.get(path, 0) + len(u)

        return record

    for chain in chains:
        producer = model.get_submodule(chain.producer)
        watched = model.get_submodule(chain.norm) if chain.norm else producer
        channel_dim = 1 if isinstance(producer, nn.Conv2d) else -1
        handles.append(watched.register_forward_hook(output_hook(chain.producer, channel_dim)))
        if metric:
            handles.append(producer.register_forward_hook(input_hook(chain.producer)))
    flags = {m: m.training for m in model.modules()}
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for inputs in iter_batches(batches):
            model(inputs.to(device))
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.train(flag)
    means = {p: sums[p] / max(counts[p], 1) for p in sums}
    factors = {p: metric_factor(moments[p] / rows[p]) for p in moments}
    return means, factors
