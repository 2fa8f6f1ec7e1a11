"""The math of hashed dot products: SimHash kernels, sign STEs, configs and the ideal pipeline."""

from aimc_lsh.kernels.base import HashKernel, cosine_from_similarity, safe_norm, safe_sqrt
from aimc_lsh.kernels.config import HashConfig  # noqa: I001  (needs the registered kernels above)
from aimc_lsh.kernels.learned_proj import LearnedProjKernel
from aimc_lsh.kernels.random_proj import RandomProjKernel, random_projection
from aimc_lsh.kernels.registry import build_kernel, get_kernel_class, kernel_names, register_kernel
from aimc_lsh.kernels.stages import ConvGeometry, HashStages, TilePair
from aimc_lsh.kernels.ste import STE_MODES, hard_sign, sign_ste

__all__ = [
    "STE_MODES",
    "ConvGeometry",
    "HashConfig",
    "HashKernel",
    "HashStages",
    "LearnedProjKernel",
    "RandomProjKernel",
    "TilePair",
    "build_kernel",
    "cosine_from_similarity",
    "get_kernel_class",
    "hard_sign",
    "kernel_names",
    "random_projection",
    "register_kernel",
    "safe_norm",
    "safe_sqrt",
    "sign_ste",
]
