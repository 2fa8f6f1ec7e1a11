"""aihwkit physics for hashed layers: devices, programmed tiles, drift, sense amps, ADCs, energy.

Public API:
    DeviceProfile, load_device(name_or_path), available_devices(), save_device(profile, path)
    SenseAmp, ADC, TileSpec, HardwareConfig (a HashConfig subclass), PLACEMENTS
    AnalogHashStages (fast path), AihwkitHashStages (aihwkit reference backend)
    program(model, seed), drift(model, t_inference), analog_layers(model)
    energy: EnergyTable, count_events(model, input_shape), energy_report(...)
"""

from aimc_lsh.hardware.api import analog_layers, drift, program
from aimc_lsh.hardware.config import BACKENDS, PLACEMENTS, HardwareConfig
from aimc_lsh.hardware.devices import (
    IDEAL_DEVICE,
    NOISE_MODELS,
    DeviceProfile,
    available_devices,
    load_device,
    save_device,
)
from aimc_lsh.hardware.specs import ADC, SenseAmp, TileSpec
from aimc_lsh.hardware.stages import AnalogHashStages

__all__ = [
    "ADC",
    "BACKENDS",
    "IDEAL_DEVICE",
    "NOISE_MODELS",
    "PLACEMENTS",
    "AnalogHashStages",
    "DeviceProfile",
    "HardwareConfig",
    "SenseAmp",
    "TileSpec",
    "analog_layers",
    "available_devices",
    "drift",
    "load_device",
    "program",
    "save_device",
]
