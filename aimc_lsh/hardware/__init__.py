"""aihwkit physics for hashed layers: devices, programmed tiles, drift, sense amps, ADCs, energy.

Public API:
    DeviceProfile, load_device(name_or_path), available_devices(), save_device(profile, path)
    SenseAmp, ADC, TileSpec, HardwareConfig (a HashConfig subclass), PLACEMENTS
    AnalogHashStages (fast path), AihwkitHashStages (aihwkit reference backend)
    program(model, seed), drift(model, t_inference), analog_layers(model)
    conventional AIMC: ConventionalArray (fast path); aimc_lsh.nn.conventional has the layers
    reference backend: aihwkit_conventional(model, config), reference_rpu_config(config)
    energy: EnergyTable, DEFAULT_ENERGY, count_events(model, example), energy_report(models, example)
"""

from aimc_lsh.hardware.api import analog_layers, drift, program
from aimc_lsh.hardware.config import BACKENDS, PLACEMENTS, HardwareConfig
from aimc_lsh.hardware.conventional import ConventionalArray
from aimc_lsh.hardware.devices import (
    IDEAL_DEVICE,
    NOISE_MODELS,
    DeviceProfile,
    available_devices,
    load_device,
    save_device,
)
from aimc_lsh.hardware.energy import DEFAULT_ENERGY, EnergyTable, LayerEvents, count_events, energy_report
from aimc_lsh.hardware.specs import ADC, SenseAmp, TileSpec
from aimc_lsh.hardware.stages import AnalogHashStages

__all__ = [
    "ADC",
    "BACKENDS",
    "DEFAULT_ENERGY",
    "IDEAL_DEVICE",
    "NOISE_MODELS",
    "PLACEMENTS",
    "AihwkitHashStages",
    "AnalogHashStages",
    "ConventionalArray",
    "DeviceProfile",
    "EnergyTable",
    "HardwareConfig",
    "LayerEvents",
    "SenseAmp",
    "TileSpec",
    "aihwkit_conventional",
    "analog_layers",
    "available_devices",
    "count_events",
    "drift",
    "energy_report",
    "load_device",
    "program",
    "reference_rpu_config",
    "save_device",
]

_REFERENCE = ("AihwkitHashStages", "aihwkit_conventional", "reference_rpu_config")


def __getattr__(name: str) -> object:
    # The aihwkit reference backend imports aihwkit's tile classes: load it on first use only.
    if name in _REFERENCE:
        from aimc_lsh.hardware import reference

        return getattr(reference, name)
    raise AttributeError(f"module 'aimc_lsh.hardware' has no attribute {name!r}")
