"""aimc-lsh: locality-sensitive-hashing dot products on simulated analog in-memory computing hardware.

Subpackages (each imports only the ones above it in this list):
``kernels`` (math) <- ``hardware`` (aihwkit physics) <- ``nn`` (layers, patching) <- ``studies``;
beside them ``models``, ``data``, ``eval``, ``train`` and ``utils``.
Subpackages are imported lazily: ``import aimc_lsh as al; al.hardware.load_device("pcm")``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

_SUBPACKAGES = ("kernels", "hardware", "nn", "models", "data", "eval", "train", "studies", "utils")


def __getattr__(name: str) -> ModuleType:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"aimc_lsh.{name}")
    raise AttributeError(f"module 'aimc_lsh' has no attribute {name!r}")


__all__ = ["__version__", *_SUBPACKAGES]
