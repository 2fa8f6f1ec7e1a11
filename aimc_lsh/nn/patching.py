"""Model surgery: ``patch_model`` swaps Linear/Conv2d for approximate layers, ``to_digital`` undoes it.

A swap registry maps digital layer types to the approximate classes of each layer family: hashed
(SimHash) layers by default, the classes registered for a kernel name in :data:`KERNEL_SWAPS` otherwise
(``product_quantization`` -> :class:`PQConv2d` / :class:`PQLinear`). The configuration of each layer is the
model-wide config, replaced per module path by ``overrides``, and its kernel picks the family. Hardware
configs whose placement is ``conventional`` are handed to :mod:`aimc_lsh.nn.conventional` (real weights
on analog tiles).
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn.digital import check_finite_parameters, set_submodule
from aimc_lsh.nn.layers import HashedConv2d, HashedLayer, HashedLinear
from aimc_lsh.nn.pq_layers import PQConv2d, PQLayer, PQLinear

SWAPS: dict[type[nn.Module], type[HashedLayer]] = {nn.Conv2d: HashedConv2d, nn.Linear: HashedLinear}
"""Digital layer type -> hashed class with a ``from_digital(module, config, seed)`` classmethod."""

KERNEL_SWAPS: dict[str, dict[type[nn.Module], type[nn.Module]]] = {
    "product_quantization": {nn.Conv2d: PQConv2d, nn.Linear: PQLinear},
}
"""Kernel name -> its own swap map (same keys as :data:`SWAPS`); kernels not listed use :data:`SWAPS`.
Every class needs ``from_digital(module, config, seed)`` and ``to_digital()``."""

PATCHED_TYPES: tuple[type[nn.Module], ...] = (HashedLayer, PQLayer)
"""Base classes of the layers ``patch_model`` creates (what :func:`to_digital` converts back)."""


def swaps_for(kernel: str) -> dict[type[nn.Module], type[nn.Module]]:
    """The swap map of a kernel name: digital layer type -> approximate class."""
    return KERNEL_SWAPS.get(kernel, SWAPS)


Override = HashConfig | Mapping[str, Any] | None


def layer_seed(base_seed: int, path: str) -> int:
    """Seed of the layer at module ``path``: stable across runs and distinct between layers."""
    return (int(base_seed) * 1_000_003 + zlib.crc32(path.encode())) % (2**63)


def _matches(path: str, prefixes: Iterable[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def patchable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Module paths and modules of every layer ``patch_model`` can swap (in ``named_modules`` order)."""
    return [(path, m) for path, m in model.named_modules() if path and type(m) in SWAPS]


def hashed_layers(model: nn.Module) -> Iterator[tuple[str, HashedLayer]]:
    """Yield ``(path, layer)`` for every hashed (SimHash) layer of ``model``."""
    for path, module in model.named_modules():
        if isinstance(module, HashedLayer):
            yield path, module


def patched_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(path, layer)`` for every layer ``patch_model`` created (hashed or product-quantized)."""
    for path, module in model.named_modules():
        if isinstance(module, PATCHED_TYPES):
            yield path, module


def _resolve(config: HashConfig, override: Override) -> HashConfig | None:
    if override is None:
        return None
    if isinstance(override, HashConfig):
        return override
    return config.replace(**dict(override))


def _check_arguments(model: object, config: object, overrides: Mapping[str, object]) -> None:
    """Raise a TypeError naming the argument (and module path) whose type ``patch_model`` cannot use."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, HashConfig):
        raise TypeError(f"config must be a HashConfig or a hardware config, got {type(config).__name__}")
    for path, override in overrides.items():
        if not (override is None or isinstance(override, HashConfig | Mapping)):
            raise TypeError(
                f"overrides[{path!r}] must be a HashConfig, a dict of field changes or None (leave the layer "
                f"digital), got {type(override).__name__}"
            )


def check_layer_paths(
    model: nn.Module, *, skip: Sequence[str] = (), overrides: Mapping[str, object] | None = None
) -> None:
    """Raise unless every path in ``skip`` and ``overrides`` names a patchable layer of ``model``.

    What :func:`patch_model` checks first; callers can check their options without patching.

    Raises:
        ValueError: Naming the unknown paths and the patchable layers.

    """
    paths = [path for path, _ in patchable_layers(model)]
    for name, requested in (("skip", list(skip)), ("overrides", list(overrides or {}))):
        unknown = [p for p in requested if not any(_matches(path, [p]) for path in paths)]
        if unknown:
            raise ValueError(
                f"{name} names no Linear/Conv2d layer: {', '.join(map(str, unknown))}; "
                f"patchable layers: {', '.join(paths)}"
            )


def patch_model(
    model: nn.Module,
    config: HashConfig,
    *,
    overrides: Mapping[str, Override] | None = None,
    skip: Iterable[str] = (),
    filter_fn: Callable[[str, nn.Module], bool] | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Replace every ``nn.Conv2d`` and ``nn.Linear`` of ``model`` by its hashed (or PQ) counterpart.

    The layer family follows each layer's kernel: SimHash kernels give :class:`HashedConv2d` /
    :class:`HashedLinear`, ``product_quantization`` gives :class:`PQConv2d` / :class:`PQLinear` (calibrate
    those with :func:`aimc_lsh.nn.calibrate_pq` before use); see :data:`KERNEL_SWAPS`.

    Args:
        model: The digital model.
        config: Model-wide configuration (a :class:`HashConfig` or a hardware config).
        overrides: Per-layer configuration keyed by module path (as in ``named_modules()``): a
            full config, a dict of field changes applied to ``config``, or None to leave the layer
            digital.
        skip: Module paths (or path prefixes, e.g. ``"layer1"``) left digital.
        filter_fn: ``filter_fn(path, module) -> bool``; layers for which it is False stay digital.
        inplace: Modify ``model`` itself instead of a deep copy.

    Returns:
        The patched model (``model`` itself when ``inplace``).

    Raises:
        TypeError: If ``model``, ``config`` or a value of ``overrides`` has a type it cannot be.
        ValueError: If ``model`` holds no ``nn.Linear`` / ``nn.Conv2d`` below its root, a path in ``skip``
            or ``overrides`` names no patchable layer, an override sets an unknown field or a bad value, or
            a layer to swap holds NaN or inf weights.

    """
    overrides = dict(overrides or {})
    _check_arguments(model, config, overrides)
    skip = [skip] if isinstance(skip, str) else list(skip)
    if not patchable_layers(model):
        raise ValueError(_nothing_to_patch(model))
    check_layer_paths(model, skip=skip, overrides=overrides)
    if getattr(config, "placement", None) == "conventional":
        from aimc_lsh.nn.conventional import convert_conventional

        return convert_conventional(model, config, skip=skip, inplace=inplace)
    if not inplace:
        model = copy.deepcopy(model)
    for path, module in patchable_layers(model):
        if _matches(path, skip) or (filter_fn is not None and not filter_fn(path, module)):
            continue
        layer_config = _resolve(config, overrides[path]) if path in overrides else config
        if layer_config is None:
            continue
        check_finite_parameters(module, f"layer {path!r}")
        hashed = swaps_for(layer_config.kernel)[type(module)].from_digital(
            module, layer_config, seed=layer_seed(layer_config.seed, path)
        )
        hashed.train(module.training)
        set_submodule(model, path, hashed)
    return model


def _nothing_to_patch(model: nn.Module) -> str:
    """The error message for a model without a layer patch_model can swap, with what to do instead."""
    name = type(model).__name__
    if type(model) in SWAPS:
        return (
            f"patch_model swaps the layers inside a model, and got a bare {name}: build its hashed copy "
            f"with aimc_lsh.nn.{SWAPS[type(model)].__name__}.from_digital(layer, config), or wrap it in "
            "nn.Sequential"
        )
    already = sum(1 for _ in patched_layers(model))
    if already:
        return (
            f"patch_model found no nn.Linear / nn.Conv2d in this {name}: its {already} layer(s) are patched "
            "already; call aimc_lsh.nn.to_digital(model) first to patch it with another config"
        )
    return f"patch_model found no nn.Linear / nn.Conv2d layer in this {name}: there is nothing to hash"


def to_digital(model: nn.Module, *, inplace: bool = False, only: Iterable[str] | None = None) -> nn.Module:
    """Replace hashed or PQ layers of ``model`` by the digital layers with the same weights and bias.

    Args:
        model: A patched model.
        inplace: Change ``model`` itself instead of a copy.
        only: Module paths of the patched layers to replace (default: every patched layer).

    Raises:
        ValueError: If ``only`` names what is not a patched layer of ``model`` (the message lists those).

    """
    chosen = None if only is None else list(only)
    if chosen is not None:
        paths = [path for path, _ in patched_layers(model)]
        unknown = [p for p in chosen if p not in paths]
        if unknown:
            raise ValueError(
                f"to_digital: {', '.join(map(repr, unknown))} is not a hashed or PQ layer of this model; "
                f"patched layers: {', '.join(paths) or 'none'}"
            )
    if not inplace:
        model = copy.deepcopy(model)
    for path, layer in list(patched_layers(model)):
        if chosen is not None and path not in chosen:
            continue
        digital = layer.to_digital()
        digital.train(layer.training)
        if path:
            set_submodule(model, path, digital)
        else:
            return digital
    return model


@torch.no_grad()
def run_digital_inputs(
    model: nn.Module, hooks: Mapping[str, Callable[[nn.Module, tuple], None]], images: Tensor, batch_size: int
) -> None:
    """Run ``to_digital(model)`` (eval mode) over ``images`` in batches; hooks see the modules' inputs.

    ``hooks[path](module, args)`` is called before the digital module at ``path`` runs each batch (a forward
    pre-hook); the hooks are removed afterwards, also when one raises.
    """
    digital = to_digital(model).eval()
    modules = dict(digital.named_modules())
    handles = [modules[path].register_forward_pre_hook(hook) for path, hook in hooks.items()]
    try:
        for batch in images.split(batch_size):
            digital(batch)
    finally:
        for handle in handles:
            handle.remove()
