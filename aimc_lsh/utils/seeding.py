"""Seeding helpers: one call makes Python, NumPy and torch reproducible, and seeded generators.

Library code should prefer explicit generators (:func:`make_generator`) over global state so that
"same seed => same numbers" holds even when other code draws random numbers in between.
"""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["set_seed", "make_generator", "check_seed"]

_MAX_SEED = 2**63 - 1


def check_seed(seed: int, name: str = "seed") -> int:
    """Validate a seed: a non-negative Python/NumPy integer below 2**63.

    Args:
        seed: The value to check.
        name: Name used in the error message.

    Returns:
        The seed as a Python ``int``.

    Raises:
        TypeError: If ``seed`` is not an integer (``bool`` is rejected too).
        ValueError: If ``seed`` is negative or too large.

    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"{name} must be an integer, got {type(seed).__name__} ({seed!r})")
    seed = int(seed)
    if not 0 <= seed <= _MAX_SEED:
        raise ValueError(f"{name} must be in [0, 2**63 - 1], got {seed}")
    return seed


def set_seed(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Args:
        seed: Non-negative integer seed.
        deterministic: Also ask torch for deterministic algorithms
            (``torch.use_deterministic_algorithms(True, warn_only=True)``).

    """
    seed = check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def make_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Return a fresh :class:`torch.Generator` seeded with ``seed`` (independent of global state).

    Args:
        seed: Non-negative integer seed.
        device: Device the generator lives on.

    Returns:
        The seeded generator.

    """
    generator = torch.Generator(device=device)
    generator.manual_seed(check_seed(seed))
    return generator
