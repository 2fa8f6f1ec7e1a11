"""The math of approximate dot products: SimHash and product-quantization kernels, STEs, configs."""

from aimc_lsh.kernels.base import HashKernel, cosine_from_similarity, safe_norm, safe_sqrt
from aimc_lsh.kernels.config import HASH_FIELDS, HashConfig  # noqa: I001  (needs the registered kernels above)
from aimc_lsh.kernels.hamming import (
    cosine_table,
    hamming_cosine,
    hamming_weights,
    native_hamming,
    native_hamming_available,
    pack_code_bits,
)
from aimc_lsh.kernels.learned_proj import LearnedProjKernel
from aimc_lsh.kernels.pq import (
    assignment_ste,
    distortion,
    hard_assignment,
    kmeans,
    kmeans_plus_plus,
    lookup_table,
    quantize_table,
    squared_distances,
)
from aimc_lsh.kernels.pq_kernel import PQKernel
from aimc_lsh.kernels.precision import (
    PRODUCT_DTYPES,
    check_product_dtype,
    product_dtype,
    product_precision,
    slow_product_warning,
)
from aimc_lsh.kernels.random_proj import RandomProjKernel, random_projection
from aimc_lsh.kernels.registry import build_kernel, get_kernel_class, kernel_names, register_kernel
from aimc_lsh.kernels.stages import ConvGeometry, HashStages, TilePair, needs_grad, patch_norms
from aimc_lsh.kernels.ste import STE_MODES, hard_sign, sign_ste
from aimc_lsh.kernels.subspace import affine_residual, principal_basis, simhash_estimate, subspace_projection
from aimc_lsh.kernels.tiled import stacked_tiles_forward

__all__ = [
    "HASH_FIELDS",
    "PRODUCT_DTYPES",
    "STE_MODES",
    "ConvGeometry",
    "HashConfig",
    "HashKernel",
    "HashStages",
    "LearnedProjKernel",
    "PQKernel",
    "RandomProjKernel",
    "TilePair",
    "affine_residual",
    "assignment_ste",
    "build_kernel",
    "check_product_dtype",
    "cosine_from_similarity",
    "cosine_table",
    "distortion",
    "get_kernel_class",
    "hamming_cosine",
    "hamming_weights",
    "hard_assignment",
    "hard_sign",
    "kernel_names",
    "kmeans",
    "kmeans_plus_plus",
    "lookup_table",
    "native_hamming",
    "native_hamming_available",
    "needs_grad",
    "pack_code_bits",
    "patch_norms",
    "principal_basis",
    "product_dtype",
    "product_precision",
    "quantize_table",
    "random_projection",
    "register_kernel",
    "safe_norm",
    "safe_sqrt",
    "sign_ste",
    "simhash_estimate",
    "slow_product_warning",
    "stacked_tiles_forward",
    "squared_distances",
    "subspace_projection",
]
