"""Mongoose-style rehashing of a merge plan while the weights train, and the bucket-cohesion penalty.

:class:`RehashTracker` keeps every chain's fingerprints. Every ``interval`` calls of :meth:`step` it
recomputes them from the current weights (same projections and lengths) and measures the fraction of
changed bits per layer; a layer whose fraction exceeds ``threshold`` is rehashed -- its fingerprint
length and buckets are rebuilt under the plan's :class:`~aimc_lsh.nn.merging.MergeConfig` -- while the
other layers keep their buckets (rebuilding them is what Mongoose saves when the hashes barely moved).

Merge-aware fine-tuning (:func:`aimc_lsh.train.merge_aware.merge_aware_fine_tune`) trains the full-width
model with :func:`cohesion_penalty`, which pulls the members of each bucket towards one direction, and
the tracker keeping the buckets current; merging the trained model with ``tracker.plan`` at the end then
loses little, since members that point the same way merge exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from aimc_lsh.nn.fx_chains import MergeChain
from aimc_lsh.nn.merge_calibration import Batches
from aimc_lsh.nn.merge_math import fingerprint_bits, folded_vectors
from aimc_lsh.nn.merging import (
    ChainStats,
    MergeConfig,
    MergePlan,
    chain_statistics,
    plan_merges,
    select_buckets,
    walk_chains,
)

__all__ = ["RehashEvent", "RehashTracker", "cohesion_penalty"]


@dataclass(frozen=True)
class RehashEvent:
    """One fingerprint check of one layer."""

    call: int
    """Value of the tracker's call counter at the check."""
    producer: str
    """Path of the layer."""
    changed_fraction: float
    """Fraction of fingerprint bits that changed since the layer was last (re)hashed."""
    rehashed: bool
    """Whether the layer's buckets were rebuilt."""
    channels_after: int
    """Bucket count after the check."""


class RehashTracker:
    """Keep a merge plan's buckets current as a model trains; rehash layers whose fingerprints drifted.

    Args:
        model: The full-width model being trained.
        plan_or_config: A :class:`MergePlan` for ``model``, or a :class:`MergeConfig` to plan one now.
        threshold: Rehash a layer when more than this fraction of its fingerprint bits changed, in [0, 1).
        interval: Check the fingerprints every this many :meth:`step` calls (a positive integer).
        batches: Calibration inputs (activation weights and input metric) when planning from a config;
            kept to recalibrate a layer whose input width changes when an upstream layer is rehashed.

    Raises:
        ValueError: On a threshold outside [0, 1) or an interval that is not a positive integer.

    """

    def __init__(
        self,
        model: nn.Module,
        plan_or_config: MergePlan | MergeConfig,
        *,
        threshold: float = 0.1,
        interval: int = 50,
        batches: Batches = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold < 1:
            raise ValueError(f"threshold must be a fraction of bits in [0, 1), got {threshold!r}")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be a positive integer (calls between checks), got {interval!r}")
        if batches is not None and not isinstance(batches, torch.Tensor):
            batches = list(batches)
        self._batches = batches
        if isinstance(plan_or_config, MergePlan):
            self.plan = plan_or_config
        elif isinstance(plan_or_config, MergeConfig):
            self.plan = plan_merges(model, plan_or_config, batches)
        else:
            raise ValueError(f"expected a MergePlan or MergeConfig, got {type(plan_or_config).__name__}")
        self.threshold = float(threshold)
        self.interval = interval
        self.calls = 0
        """Calls of :meth:`step` so far."""
        self.checks = 0
        """Fingerprint checks done."""
        self.rehashes = 0
        """Layer rehashes done (one check may rehash several layers)."""
        self.history: list[RehashEvent] = []
        """Every layer's outcome at every check."""

    @property
    def config(self) -> MergeConfig:
        """The merge configuration of the plan."""
        return self.plan.config

    def step(self, model: nn.Module) -> bool:
        """Count one call; every ``interval`` calls check the fingerprints (see :meth:`check`).

        Args:
            model: The model being trained (the full-width model the plan was made for).

        Returns:
            True if a layer was rehashed at this call.

        """
        self.calls += 1
        if self.calls % self.interval:
            return False
        return self.check(model)

    @torch.no_grad()
    def check(self, model: nn.Module, *, force: bool = False) -> bool:
        """Recompute fingerprints now; rehash the layers above the threshold (every layer if ``force``).

        Args:
            model: The model being trained.
            force: Rehash every layer regardless of the threshold.

        Returns:
            True if a layer was rehashed.

        """
        self.checks += 1
        old = self.plan.layers
        events: list[RehashEvent] = []

        def decide(
            index: int, chain: MergeChain, vectors: Tensor, projection: Tensor
        ) -> tuple[int, Tensor, Tensor]:
            layer = old[index]
            current = fingerprint_bits(vectors, projection[: layer.bits])
            if current.shape != layer.fingerprints.shape:
                changed = 1.0  # the layer's input width changed with an upstream rehash
            else:
                changed = float((current != layer.fingerprints).double().mean()) if current.numel() else 0.0
            rehash = force or changed > self.threshold
            result = (
                select_buckets(vectors, projection, self.config)
                if rehash
                else (layer.bits, layer.fingerprints, layer.assignment)
            )
            after = int(result[2].max()) + 1 if result[2].numel() else 0
            events.append(RehashEvent(self.calls, chain.producer, changed, rehash, after))
            return result

        stats: dict[str, ChainStats] = {layer.chain.producer: (layer.weights, layer.metric) for layer in old}
        use_metric = any(layer.metric is not None for layer in old)

        def recalibrate(scratch: nn.Module, chain: MergeChain) -> ChainStats:
            if self._batches is None:
                return stats[chain.producer][0], None
            return chain_statistics(scratch, [chain], self._batches, metric=use_metric)[chain.producer]

        layers = walk_chains(model, [layer.chain for layer in old], self.config, decide, stats, recalibrate)
        self.plan = MergePlan(self.config, layers)
        self.history.extend(events)
        rehashed = sum(e.rehashed for e in events)
        self.rehashes += rehashed
        return rehashed > 0


def cohesion_penalty(model: nn.Module, plan: MergePlan) -> Tensor:
    """Mean ``1 - cos(v_i, d_bucket)`` over neurons in buckets of two or more (differentiable).

    ``v_i`` are the BatchNorm-folded neuron vectors of the current weights (in the plan's input metric,
    if it has one) and ``d_bucket`` the activation-weighted mean direction of the bucket's members (as
    for the representative). Zero when
    every bucket's members point the same way, i.e. when merging is exact.

    Args:
        model: The full-width model the plan was made for.
        plan: The buckets (e.g. ``tracker.plan``).

    Returns:
        A scalar tensor (0 if no bucket has two members).

    """
    total: Tensor | None = None
    count = 0
    for layer in plan.layers:
        sizes = torch.bincount(layer.assignment)
        shared = sizes[layer.assignment] > 1
        if not bool(shared.any()):
            continue
        chain = layer.chain
        norm = model.get_submodule(chain.norm) if chain.norm else None
        vectors = folded_vectors(model.get_submodule(chain.producer), norm)[0]
        if layer.metric is not None:
            vectors = vectors @ layer.metric.to(vectors)
        units = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-12)
        weights = layer.weights if layer.weights is not None else torch.ones(len(units))
        weights = weights.to(units).clamp_min(1e-8)  # an all-dead bucket: uniform weights
        assignment = layer.assignment.to(units.device)
        centers = units.new_zeros(len(sizes), units.shape[1]).index_add(
            0, assignment, weights[:, None] * units
        )
        centers = centers / centers.norm(dim=1, keepdim=True).clamp_min(1e-12)
        cosine = (units * centers[assignment]).sum(1)
        term = (1 - cosine)[shared.to(units.device)].sum()
        total = term if total is None else total + term
        count += int(shared.sum())
    if total is None:
        first = next(iter(model.parameters()), None)
        return torch.zeros((), device=first.device if first is not None else None)
    return total / count
