"""Hashed layers and model surgery: ``HashedLinear``, ``HashedConv2d``, ``patch_model``, ``to_digital``.

LSH neuron merging: ``merge_neurons``, ``plan_merges``, ``apply_merge_plan``, ``RehashTracker``.
"""

from aimc_lsh.nn.fx_chains import MergeChain, find_merge_chains
from aimc_lsh.nn.layers import HashedConv2d, HashedLayer, HashedLinear, split_range
from aimc_lsh.nn.merging import (
    MergeConfig,
    MergePlan,
    MergeReport,
    apply_merge_plan,
    merge_neurons,
    plan_merges,
)
from aimc_lsh.nn.patching import SWAPS, hashed_layers, layer_seed, patch_model, patchable_layers, to_digital
from aimc_lsh.nn.reference import unfold_forward, unfold_reference_model
from aimc_lsh.nn.rehash import RehashTracker, cohesion_penalty

__all__ = [
    "SWAPS",
    "HashedConv2d",
    "HashedLayer",
    "HashedLinear",
    "MergeChain",
    "MergeConfig",
    "MergePlan",
    "MergeReport",
    "RehashTracker",
    "apply_merge_plan",
    "cohesion_penalty",
    "find_merge_chains",
    "hashed_layers",
    "layer_seed",
    "merge_neurons",
    "patch_model",
    "patchable_layers",
    "plan_merges",
    "split_range",
    "to_digital",
    "unfold_forward",
    "unfold_reference_model",
]
