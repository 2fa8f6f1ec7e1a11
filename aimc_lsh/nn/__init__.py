"""Approximate layers and model surgery: hashed and product-quantized layers, patching, calibration.

``HashedLinear`` / ``HashedConv2d`` (SimHash), ``PQLinear`` / ``PQConv2d`` (product quantization),
``patch_model``, ``to_digital``, the calibration of PQ codebooks (``calibrate_pq``, generic
``prepare_model``) and of hashed layers' input references (``calibrate_input_centers``).
LSH neuron merging: ``merge_neurons``, ``plan_merges``, ``apply_merge_plan``, ``RehashTracker``.
"""

from aimc_lsh.nn.fx_chains import MergeChain, find_merge_chains
from aimc_lsh.nn.input_centering import calibrate_input_centers, centered_layers
from aimc_lsh.nn.layers import HashedConv2d, HashedLayer, HashedLinear, split_range
from aimc_lsh.nn.merging import (
    MergeConfig,
    MergePlan,
    MergeReport,
    apply_merge_plan,
    merge_neurons,
    plan_merges,
)
from aimc_lsh.nn.patching import (
    KERNEL_SWAPS,
    SWAPS,
    check_layer_paths,
    hashed_layers,
    layer_seed,
    patch_model,
    patchable_layers,
    patched_layers,
    swaps_for,
    to_digital,
)
from aimc_lsh.nn.pq_calibration import calibrate_pq, needs_data, pq_layers, prepare_model
from aimc_lsh.nn.pq_layers import PQConv2d, PQLayer, PQLinear
from aimc_lsh.nn.projection_fit import fit_projections
from aimc_lsh.nn.reference import unfold_forward, unfold_reference_model
from aimc_lsh.nn.rehash import RehashTracker, cohesion_penalty

__all__ = [
    "KERNEL_SWAPS",
    "SWAPS",
    "HashedConv2d",
    "HashedLayer",
    "HashedLinear",
    "MergeChain",
    "MergeConfig",
    "MergePlan",
    "MergeReport",
    "PQConv2d",
    "PQLayer",
    "PQLinear",
    "RehashTracker",
    "apply_merge_plan",
    "calibrate_input_centers",
    "calibrate_pq",
    "centered_layers",
    "check_layer_paths",
    "cohesion_penalty",
    "find_merge_chains",
    "fit_projections",
    "hashed_layers",
    "layer_seed",
    "merge_neurons",
    "needs_data",
    "patch_model",
    "patchable_layers",
    "patched_layers",
    "plan_merges",
    "pq_layers",
    "prepare_model",
    "split_range",
    "swaps_for",
    "to_digital",
    "unfold_forward",
    "unfold_reference_model",
]
