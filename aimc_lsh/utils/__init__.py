"""Small shared helpers: atomic file writes, checksums and seeding.

Public API:
    atomic_write_bytes(path, data), atomic_write_text(path, text), atomic_path(path) (context manager
    for writers that need a file name), sha256_file(path), file_digest(path, algorithm),
    set_seed(seed), make_generator(seed), check_seed(seed), tune_allocator(), exclusive_lock(path) (context
    manager: one process at a time), build_shared_library(source) (a C file compiled once per machine).
"""

from aimc_lsh.utils.allocator import tune_allocator
from aimc_lsh.utils.io import atomic_path, atomic_write_bytes, atomic_write_text, file_digest, sha256_file
from aimc_lsh.utils.locking import exclusive_lock
from aimc_lsh.utils.native import NativeBuildError, build_shared_library, native_cache_dir
from aimc_lsh.utils.seeding import check_seed, make_generator, set_seed

__all__ = [
    "NativeBuildError",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "build_shared_library",
    "check_seed",
    "exclusive_lock",
    "file_digest",
    "make_generator",
    "native_cache_dir",
    "set_seed",
    "sha256_file",
    "tune_allocator",
]
