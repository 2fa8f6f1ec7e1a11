"""LSH neuron merging (hashed-NN pruning): SimHash buckets of neurons become one activation-weighted neuron.

For every merge chain (:mod:`aimc_lsh.nn.fx_chains`: ``producer -> [BatchNorm] -> ReLU -> ... ->
consumer`` whose channels reach nothing else), each output channel of the producer is fingerprinted by
SimHash on its BatchNorm-folded vector ``[a_i, b_i]`` (``sign(P v_i)``, a seeded Gaussian ``P`` per layer);
neurons with identical fingerprints share a bucket and are replaced by one representative, the
consumer's input columns are summed with the members' scale factors, and the layer, its BatchNorm and
the consumer shrink to the bucket count (maths in :mod:`aimc_lsh.nn.merge_math`). Positive multiples of
a neuron always share its fingerprint and merge exactly. With calibration batches the vectors are hashed
and averaged in the geometry of the layer's inputs (:mod:`aimc_lsh.nn.merge_calibration`), i.e. by how
alike the neurons respond on the data.

Residual networks: channels that flow into a residual addition (ResNet stems, every block's
``conv2``/``bn2``, option-B downsample convolutions) are never chain members, so the residual stream keeps
its width and every addition keeps consistent shapes; only block-internal channels are merged.

Public API:
    MergeConfig; plan_merges(model, config, batches) -> MergePlan;
    apply_merge_plan(model, plan, inplace) -> (model, MergeReport);
    merge_neurons(model, config, batches, inplace) -> (model, MergeReport);
    layer_projection(seed, path, dim, bits); select_buckets(vectors, projection, config).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from aimc_lsh.kernels.random_proj import random_projection
from aimc_lsh.nn.digital import set_submodule
from aimc_lsh.nn.fx_chains import MergeChain, find_merge_chains
from aimc_lsh.nn.merge_calibration import Batches, calibrate_chains
from aimc_lsh.nn.merge_math import (
    bucket_assignment,
    bucket_count,
    fingerprint_bits,
    folded_vectors,
    merge_chain_modules,
)
from aimc_lsh.nn.patching import layer_seed
from aimc_lsh.utils import check_seed

__all__ = [
    "LayerMerge",
    "MergeConfig",
    "MergePlan",
    "MergeReport",
    "apply_merge_plan",
    "layer_projection",
    "merge_neurons",
    "plan_merges",
]

METRICS = ("auto", "inputs", "weights")
"""Allowed values of :attr:`MergeConfig.metric`."""


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class MergeConfig:
    """How many neurons to merge and how to hash them. Give exactly one of ``bits`` and ``target_ratio``."""

    bits: int | None = None
    """Fingerprint length m for every layer (more bits: smaller buckets, fewer merges)."""

    target_ratio: float | None = None
    """Fraction of each chain's neurons to keep, in (0, 1]: per layer the largest m in ``0 .. max_bits``
    whose bucket count is at most ``max(min_channels, floor(ratio * C))`` (bucket counts only grow with
    m, since the m bits are the first m rows of one projection; the choice is deterministic). 1.0 merges
    only neurons that agree on all ``max_bits`` bits (near-duplicates)."""

    seed: int = 0
    """Seed of the projections; layer ``path`` uses ``layer_seed(seed, path)``."""

    skip: tuple[str, ...] = ()
    """Module paths (or prefixes, e.g. ``"layer1"``): chains whose producer lies there are not merged."""

    min_channels: int = 1
    """No merged layer ends with fewer channels than this (in ``bits`` mode a layer gets more bits, up to
    ``max_bits``, until it has at least this many buckets)."""

    max_bits: int = 64
    """Rows of each layer's projection: the longest fingerprint considered."""

    metric: str = "auto"
    """Geometry of the neuron vectors for hashing and representatives: ``"inputs"`` measures angles and
    least-squares scales between the neurons' pre-activation outputs on the calibration data (see
    :mod:`aimc_lsh.nn.merge_calibration`; needs ``batches``), ``"weights"`` uses the raw folded vectors
    ``[a_i, b_i]``, ``"auto"`` is ``"inputs"`` when calibration batches are given, else ``"weights"``.
    Exact merges of positive multiples hold in both."""

    refine: bool = True
    """``target_ratio`` mode: after choosing m, split the largest buckets by bit m + 1 while the count
    stays within the target (one level of a prefix tree), so layers land close to the target instead of
    wherever the bucket count of a whole bit falls. False: exactly the largest m."""

    def __post_init__(self) -> None:
        """Validate the fields."""
        if (self.bits is None) == (self.target_ratio is None):
            raise ValueError(
                f"give exactly one of bits and target_ratio, got bits={self.bits!r}, "
                f"target_ratio={self.target_ratio!r}"
            )
        _positive_int(self.max_bits, "max_bits")
        if self.bits is not None:
            _positive_int(self.bits, "bits")
            if self.bits > self.max_bits:
                raise ValueError(f"bits must be at most max_bits={self.max_bits}, got {self.bits}")
        if self.target_ratio is not None:
            ratio = self.target_ratio
            if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 < ratio <= 1:
                raise ValueError(f"target_ratio must be a number in (0, 1], got {ratio!r}")
        check_seed(self.seed)
        _positive_int(self.min_channels, "min_channels")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if isinstance(self.skip, str) or not all(isinstance(s, str) for s in self.skip):
            raise ValueError(f"skip must be a sequence of module paths, got {self.skip!r}")
        object.__setattr__(self, "skip", tuple(self.skip))


@dataclass
class LayerMerge:
    """The buckets of one chain."""

    chain: MergeChain
    """The producer, norm and consumer paths."""
    bits: int
    """Fingerprint length used."""
    fingerprints: Tensor
    """(C, bits) bool fingerprints of the producer's neurons when the buckets were built."""
    assignment: Tensor
    """(C,) bucket index of every neuron (buckets numbered by first member)."""
    weights: Tensor | None = None
    """(C,) mean post-ReLU activation of every neuron on calibration data, or None (uniform)."""
    metric: Tensor | None = None
    """(D + 1, D + 1) lower factor ``L`` of the input second moments (vectors are hashed and averaged as
    ``v L``), or None for the plain weight geometry."""

    @property
    def channels_before(self) -> int:
        """Producer output channels before merging."""
        return int(self.assignment.numel())

    @property
    def channels_after(self) -> int:
        """Channels after merging (number of buckets)."""
        return int(self.assignment.max()) + 1 if self.assignment.numel() else 0


@dataclass(frozen=True)
class LayerReport:
    """One merged chain in a :class:`MergeReport`."""

    producer: str
    """Path of the merged layer."""
    consumer: str
    """Path of the layer whose inputs shrank with it."""
    bits: int
    """Fingerprint length used."""
    channels_before: int
    """Producer output channels before."""
    channels_after: int
    """Producer output channels after."""


@dataclass(frozen=True)
class MergeReport:
    """Channels before and after merging, per chain."""

    layers: tuple[LayerReport, ...]
    """One row per chain (skipped chains included, unchanged)."""

    @property
    def channels_before(self) -> int:
        """Mergeable channels before, summed over chains."""
        return sum(r.channels_before for r in self.layers)

    @property
    def channels_after(self) -> int:
        """Mergeable channels after, summed over chains."""
        return sum(r.channels_after for r in self.layers)

    @property
    def kept_fraction(self) -> float:
        """``channels_after / channels_before`` (1.0 without chains)."""
        return self.channels_after / self.channels_before if self.channels_before else 1.0

    def to_rows(self) -> list[dict[str, object]]:
        """The rows as dicts (for pandas or CSV)."""
        return [dict(vars(r)) for r in self.layers]


@dataclass
class MergePlan:
    """Buckets for every chain of a model, from :func:`plan_merges` (or a :class:`RehashTracker`)."""

    config: MergeConfig
    """The configuration the buckets were built with."""
    layers: list[LayerMerge] = field(default_factory=list)
    """One entry per chain, in execution order."""

    def report(self) -> MergeReport:
        """Channels before and after, per chain."""
        return MergeReport(
            tuple(
                LayerReport(m.chain.producer, m.chain.consumer, m.bits, m.channels_before, m.channels_after)
                for m in self.layers
            )
        )


def layer_projection(seed: int, path: str, dim: int, bits: int) -> Tensor:
    """The SimHash projection (bits x dim, Gaussian) of the layer at ``path``."""
    return random_projection(bits, dim, seed=layer_seed(seed, path))


def _skipped(path: str, skip: Iterable[str]) -> bool:
    return any(path == s or path.startswith(s + ".") for s in skip)


def _check_skip(model: nn.Module, skip: tuple[str, ...]) -> None:
    paths = {p for p, _ in model.named_modules()}
    unknown = [s for s in skip if s not in paths]
    if unknown:
        raise ValueError(
            f"skip paths {unknown} match no module of {type(model).__name__}; allowed: module paths as in "
            "named_modules(), e.g. 'layer1' or 'layer1.0.conv1'"
        )


def chain_vectors(model: nn.Module, chain: MergeChain, metric: Tensor | None = None) -> Tensor:
    """Folded neuron vectors (C, D + 1) of a chain's producer (float64, detached; times ``metric``)."""
    norm = model.get_submodule(chain.norm) if chain.norm else None
    with torch.no_grad():
        vectors = folded_vectors(model.get_submodule(chain.producer), norm)[0].double().cpu()
    return vectors if metric is None else vectors @ metric


def select_buckets(vectors: Tensor, projection: Tensor, config: MergeConfig) -> tuple[int, Tensor, Tensor]:
    """Fingerprint length, fingerprints and buckets of one layer under ``config``.

    ``bits`` mode: the first ``bits`` projection rows (more, up to ``max_bits``, while the layer would
    have fewer than ``min_channels`` buckets). ``target_ratio`` mode: the largest m whose bucket count
    is at most the target; then, with ``refine``, the largest buckets that bit m + 1 splits are split
    (largest first, ties by first member) while the count stays within the target.

    Args:
        vectors: (C, D) neuron vectors.
        projection: (max_bits, D) projection of the layer.
        config: The merge configuration.

    Returns:
        ``(bits, fingerprints (C, bits) bool, assignment (C,) long)``; ``bits`` counts bit m + 1 when a
        refinement split used it.

    """
    all_bits = fingerprint_bits(vectors, projection)
    channels = vectors.shape[0]
    if config.target_ratio is None:
        m = int(config.bits or 0)
        while m < config.max_bits and bucket_count(all_bits[:, :m]) < min(config.min_channels, channels):
            m += 1
        return m, all_bits[:, :m], bucket_assignment(all_bits[:, :m])
    target = max(config.min_channels, math.floor(config.target_ratio * channels + 1e-9), 1)
    m = next((m for m in range(config.max_bits, -1, -1) if bucket_count(all_bits[:, :m]) <= target), 0)
    assignment = bucket_assignment(all_bits[:, :m])
    if not config.refine or m >= config.max_bits:
        return m, all_bits[:, :m], assignment
    count = int(assignment.max()) + 1 if channels else 0
    sizes = torch.bincount(assignment, minlength=count)
    next_bit = all_bits[:, m]
    split = torch.zeros(channels, dtype=torch.bool)
    for b in sorted(range(count), key=lambda b: (-int(sizes[b]), b)):
        if count >= target:
            break
        members = assignment == b
        if bool(next_bit[members].any()) and not bool(next_bit[members].all()):
            split |= members
            count += 1
    if not bool(split.any()):
        return m, all_bits[:, :m], assignment
    keys = torch.stack([assignment, (next_bit & split).long()], dim=1)
    return m + 1, all_bits[:, : m + 1], bucket_assignment(keys)


Decide = Callable[[int, MergeChain, Tensor, Tensor], tuple[int, Tensor, Tensor]]


ChainStats = tuple[Tensor | None, Tensor | None]
"""Activation weights and input-metric factor of one chain (either may be None)."""


def walk_chains(
    model: nn.Module,
    chains: list[MergeChain],
    config: MergeConfig,
    decide: Decide,
    stats: dict[str, ChainStats],
    recalibrate: Callable[[nn.Module, MergeChain], ChainStats] | None = None,
) -> list[LayerMerge]:
    """Build buckets chain by chain, merging a chain before hashing a later chain that it feeds.

    A layer that is the consumer of one chain and the producer of a later one is hashed with its inputs
    already merged (on a scratch copy; ``model`` is never changed), so the buckets stay valid when the
    plan is applied in order. Independent chains (e.g. all of a ResNet's) need no copy.

    Args:
        model: The network.
        chains: The chains, in execution order.
        config: Merge configuration (projection seed, skip list).
        decide: ``(index, chain, vectors, projection) -> (bits, fingerprints, assignment)``.
        stats: Producer path -> (activation weights, metric factor); missing or None: uniform weights,
            weight geometry.
        recalibrate: ``(scratch, chain) -> stats`` for a chain whose input width changed upstream (its
            metric no longer fits); None drops the metric of such a chain.

    Returns:
        One :class:`LayerMerge` per chain.

    """
    producers = [c.producer for c in chains]
    scratch = model
    layers = []
    for index, chain in enumerate(chains):
        weights, metric = stats.get(chain.producer, (None, None))
        width = chain_vectors(scratch, chain).shape[1]
        if metric is not None and metric.shape[0] != width:
            weights, metric = recalibrate(scratch, chain) if recalibrate is not None else (weights, None)
        vectors = chain_vectors(scratch, chain, metric)
        if _skipped(chain.producer, config.skip):
            assignment = torch.arange(vectors.shape[0])
            layers.append(LayerMerge(chain, 0, torch.zeros(len(assignment), 0, dtype=torch.bool), assignment))
            continue
        projection = layer_projection(config.seed, chain.producer, width, config.max_bits)
        bits, fingerprints, assignment = decide(index, chain, vectors, projection)
        layer = LayerMerge(chain, bits, fingerprints, assignment, weights, metric)
        if chain.consumer in producers[index + 1 :] and layer.channels_after < layer.channels_before:
            if scratch is model:
                scratch = copy.deepcopy(model)
            _apply_layer(scratch, layer)
        layers.append(layer)
    return layers


def _apply_layer(model: nn.Module, layer: LayerMerge) -> None:
    chain = layer.chain
    if layer.channels_after == layer.channels_before:
        return  # nothing merged: leave the modules (and their exact parameters) alone
    producer = model.get_submodule(chain.producer)
    norm = model.get_submodule(chain.norm) if chain.norm else None
    consumer = model.get_submodule(chain.consumer)
    new_p, new_n, new_c = merge_chain_modules(
        producer, norm, consumer, layer.assignment, layer.weights, metric=layer.metric
    )
    set_submodule(model, chain.producer, new_p)
    if chain.norm and new_n is not None:
        set_submodule(model, chain.norm, new_n)
    set_submodule(model, chain.consumer, new_c)


def _fresh_decision(config: MergeConfig) -> Decide:
    def decide(
        _index: int, _chain: MergeChain, vectors: Tensor, projection: Tensor
    ) -> tuple[int, Tensor, Tensor]:
        return select_buckets(vectors, projection, config)

    return decide


def resolve_metric(config: MergeConfig, batches: Batches) -> bool:
    """Whether ``config`` hashes in the input metric given these batches (see :attr:`MergeConfig.metric`).

    Raises:
        ValueError: If ``metric="inputs"`` but no calibration batches are given.

    """
    if config.metric == "inputs" and batches is None:
        raise ValueError('metric="inputs" needs calibration batches (pass batches=, or use metric="weights")')
    return config.metric == "inputs" or (config.metric == "auto" and batches is not None)


def chain_statistics(
    model: nn.Module, chains: list[MergeChain], batches: Batches, *, metric: bool
) -> dict[str, ChainStats]:
    """Producer path -> (activation weights, metric factor) from one calibration pass (empty without data)."""
    if batches is None:
        return {}
    if not isinstance(batches, Tensor):
        batches = list(batches)  # may be walked again for chains that are recalibrated
    means, factors = calibrate_chains(model, chains, batches, metric=metric)
    return {c.producer: (means.get(c.producer), factors.get(c.producer)) for c in chains}


def plan_merges(model: nn.Module, config: MergeConfig, batches: Batches = None) -> MergePlan:
    """Fingerprint every chain's neurons and group them into buckets (the model is not changed).

    Args:
        model: The network (plain conv/linear layers; see :func:`aimc_lsh.nn.fx_chains.find_merge_chains`).
        config: How much to merge.
        batches: Calibration inputs (a tensor or an iterable of tensors or ``(inputs, labels)`` pairs) for
            the activation weights of the representatives and the input metric; None: uniform weights,
            weight geometry.

    Returns:
        The plan; ``plan.report()`` gives channels before and after per chain.

    Raises:
        ValueError: If the model cannot be traced, a skip path names no module, or ``metric="inputs"``
            comes without batches.

    """
    if not isinstance(config, MergeConfig):
        raise ValueError(f"config must be a MergeConfig, got {type(config).__name__}")
    _check_skip(model, config.skip)
    use_metric = resolve_metric(config, batches)
    chains = find_merge_chains(model)
    if batches is not None and not isinstance(batches, Tensor):
        batches = list(batches)
    stats = chain_statistics(model, chains, batches, metric=use_metric)

    def recalibrate(scratch: nn.Module, chain: MergeChain) -> ChainStats:
        return chain_statistics(scratch, [chain], batches, metric=use_metric)[chain.producer]

    layers = walk_chains(model, chains, config, _fresh_decision(config), stats, recalibrate)
    return MergePlan(config, layers)


def apply_merge_plan(
    model: nn.Module, plan: MergePlan, *, inplace: bool = False
) -> tuple[nn.Module, MergeReport]:
    """Merge ``model``'s neurons into the plan's buckets; representatives come from the current weights.

    Args:
        model: The network the plan was made for (same layer widths; the weights may have changed since).
        plan: Buckets from :func:`plan_merges` or a :class:`~aimc_lsh.nn.rehash.RehashTracker`.
        inplace: Modify ``model`` instead of a deep copy.

    Returns:
        ``(merged_model, report)``.

    Raises:
        ValueError: If a chain of the plan does not match the model's layers.

    """
    target = model if inplace else copy.deepcopy(model)
    for layer in plan.layers:
        try:
            producer = target.get_submodule(layer.chain.producer)
        except AttributeError as err:
            raise ValueError(f"the plan's layer {layer.chain.producer!r} is not in the model") from err
        width = producer.weight.shape[0]
        if width != layer.channels_before:
            raise ValueError(
                f"the plan expects {layer.channels_before} channels at {layer.chain.producer!r}, the "
                f"model has {width} (was it merged already?)"
            )
        _apply_layer(target, layer)
    return target, plan.report()


def merge_neurons(
    model: nn.Module, config: MergeConfig, batches: Batches = None, *, inplace: bool = False
) -> tuple[nn.Module, MergeReport]:
    """Plan and apply neuron merging in one call (:func:`plan_merges` then :func:`apply_merge_plan`).

    Args:
        model: The network.
        config: How much to merge.
        batches: Calibration inputs (activation weights and, with ``metric="auto"``/``"inputs"``, the input
            metric), or None.
        inplace: Modify ``model`` instead of returning a merged deep copy.

    Returns:
        ``(merged_model, report)``.

    """
    plan = plan_merges(model, config, batches)
    return apply_merge_plan(model, plan, inplace=inplace)
