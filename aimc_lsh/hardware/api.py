"""Time API of a patched model: ``program(model, seed)`` at t = 0 and ``drift(model, t_inference)``.

``program`` samples, once for every analog layer, the programming noise and drift coefficients of
its tiles (aihwkit's noise model), the sense-amplifier offsets, and the seed of its per-read noise;
``drift`` moves every programmed tile to ``t_inference`` seconds after programming (power-law drift
with the coefficients drawn at programming, fresh accumulated 1/f noise, and global drift
compensation of multi-level read-outs where configured). Both are reproducible: a layer at module
path ``p`` uses ``derive_seed(seed, p)``; drifting to the same time twice gives the same weights.

Analog layers are found by duck typing, so this module needs nothing from :mod:`aimc_lsh.nn`:

* hashed layers whose ``stages`` is an :class:`~aimc_lsh.hardware.AnalogHashStages`;
* modules with ``hardware_program(seed)`` / ``hardware_drift(t)`` (the conventional-AIMC layers);
* aihwkit analog layers (the aihwkit reference of the conventional baseline), whose tiles are
  programmed with aihwkit's own ``program_weights`` / ``drift_weights`` under the same seeds.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from aimc_lsh.hardware.programming import derive_seed, seeded_rng
from aimc_lsh.hardware.stages import AnalogHashStages
from aimc_lsh.utils import check_seed


def _aihwkit_tiles(module: nn.Module) -> list[tuple[tuple[int, int], Any]] | None:
    """``[((r, c), tile)]`` of an aihwkit analog layer, None for other modules."""
    try:
        from aihwkit.nn.modules.base import AnalogLayerBase
        from aihwkit.simulator.tiles.array import TileModuleArray
    except ImportError:  # pragma: no cover - aihwkit is a dependency
        return None
    if not isinstance(module, AnalogLayerBase) or not hasattr(module, "analog_module"):
        return None
    analog = module.analog_module
    if isinstance(analog, TileModuleArray):
        return [((r, c), tile) for r, row in enumerate(analog.array) for c, tile in enumerate(row)]
    return [((0, 0), analog)]


def _program_aihwkit(module: nn.Module, layer_seed: int) -> None:
    """Program every tile of an aihwkit layer with aihwkit's ``program_weights`` (per-tile seeds)."""
    module._aimc_lsh_seed = layer_seed
    for block, tile in _aihwkit_tiles(module):
        periphery = getattr(tile.tile, "periphery", None)
        if periphery is not None:  # restart the per-read noise stream, as the fast path does
            periphery.generator.manual_seed(derive_seed(layer_seed, "reads", *block))
        with seeded_rng(derive_seed(layer_seed, *block)):
            tile.program_weights()


def analog_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` of every layer of ``model`` that holds programmable analog state."""
    found = []
    for path, module in model.named_modules():
        if isinstance(getattr(module, "stages", None), AnalogHashStages):
            found.append((path, module))
        elif hasattr(module, "hardware_program") and hasattr(module, "hardware_drift"):
            found.append((path, module))
        elif _aihwkit_tiles(module) is not None:
            found.append((path, module))
    return found


def _require_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    layers = analog_layers(model)
    if not layers:
        raise ValueError(
            "the model has no analog layers: patch it first, e.g. "
            "aimc_lsh.nn.patch_model(model, aimc_lsh.hardware.HardwareConfig(device='pcm'))"
        )
    return layers


def program(model: nn.Module, seed: int = 0) -> nn.Module:
    """Program every analog layer of ``model`` (t = 0); returns ``model`` for chaining.

    Args:
        model: A model patched with a :class:`~aimc_lsh.hardware.HardwareConfig`.
        seed: Seed of every draw (programming noise, drift coefficients, offsets, per-read noise).

    Raises:
        ValueError: If the model has no analog layers.

    """
    seed = check_seed(seed)
    for path, module in _require_layers(model):
        layer_seed = derive_seed(seed, path)
        if isinstance(getattr(module, "stages", None), AnalogHashStages):
            module.stages.program_layer(module, layer_seed)
        elif hasattr(module, "hardware_program"):
            module.hardware_program(layer_seed)
        else:
            _program_aihwkit(module, layer_seed)
    return model


def drift(model: nn.Module, t_inference: float) -> nn.Module:
    """Drift every programmed analog layer to ``t_inference`` seconds after programming.

    Layers never programmed are programmed first with seed 0. Global drift compensation (where the
    config enables it) rescales multi-level read-outs; it does nothing for comparator outputs, since
    a sign ignores a common scale.

    Raises:
        ValueError: For a negative time, or a time the device has no data for
            (``ReRamWan2022NoiseModel``: only 1 s, 1 day, 2 days).

    """
    layers = _require_layers(model)
    for path, module in layers:
        stages = getattr(module, "stages", None)
        if isinstance(stages, AnalogHashStages):
            stages.device_profile.check_time(t_inference)
            if not stages.programmed:
                stages.program_layer(module, derive_seed(0, path))
            stages.drift_layer(t_inference)
        elif hasattr(module, "hardware_drift"):
            module.hardware_drift(t_inference)
        else:
            layer_seed = getattr(module, "_aimc_lsh_seed", None)
            if layer_seed is None:  # never programmed: program as program(model, seed=0) would
                layer_seed = derive_seed(0, path)
                _program_aihwkit(module, layer_seed)
            for block, tile in _aihwkit_tiles(module):
                with seeded_rng(derive_seed(layer_seed, "drift", float(t_inference), *block)):
                    tile.drift_weights(t_inference)
    return model
