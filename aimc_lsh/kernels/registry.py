"""Registry from kernel names (as used in configs) to kernel classes.

New kernels plug in with ``@register_kernel("name")`` and become usable from every config,
``patch_model`` and the studies without editing them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

_KERNELS: dict[str, type[nn.Module]] = {}

K = TypeVar("K", bound=type[nn.Module])


def register_kernel(name: str) -> Callable[[K], K]:
    """Class decorator registering a kernel class under ``name``.

    Raises:
        ValueError: If another class is already registered under ``name``.

    """

    def decorate(cls: K) -> K:
        existing = _KERNELS.get(name)
        if existing is not None and existing is not cls:
            raise ValueError(f"kernel name {name!r} is already registered by {existing.__qualname__}")
        _KERNELS[name] = cls
        return cls

    return decorate


def kernel_names() -> list[str]:
    """Return the registered kernel names, sorted."""
    return sorted(_KERNELS)


def get_kernel_class(name: str) -> type[nn.Module]:
    """Return the kernel class registered under ``name``.

    Raises:
        ValueError: Naming the unknown kernel and listing the registered ones.

    """
    try:
        return _KERNELS[name]
    except KeyError:
        raise ValueError(
            f"unknown kernel {name!r}; registered kernels: {', '.join(kernel_names())}"
        ) from None


def build_kernel(name: str, in_features: int, hash_length: int, **options: Any) -> nn.Module:
    """Instantiate the kernel ``name`` for vectors of length ``in_features`` with ``hash_length`` bits."""
    return get_kernel_class(name)(in_features, hash_length, **options)
