"""Hashed layers and model surgery: ``HashedLinear``, ``HashedConv2d``, ``patch_model``, ``to_digital``."""

from aimc_lsh.nn.layers import HashedConv2d, HashedLayer, HashedLinear, split_range
from aimc_lsh.nn.patching import SWAPS, hashed_layers, layer_seed, patch_model, patchable_layers, to_digital
from aimc_lsh.nn.reference import unfold_forward, unfold_reference_model

__all__ = [
    "SWAPS",
    "HashedConv2d",
    "HashedLayer",
    "HashedLinear",
    "hashed_layers",
    "layer_seed",
    "patch_model",
    "patchable_layers",
    "split_range",
    "to_digital",
    "unfold_forward",
    "unfold_reference_model",
]
