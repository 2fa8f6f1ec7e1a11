"""``HardwareConfig``: a :class:`~aimc_lsh.kernels.HashConfig` plus where and on what it runs.

The config says which device the crossbars use, which placement is simulated, the periphery
(sense amplifiers, ADCs, tile size), the reconstruction precision and the simulation backend.
``patch_model(model, HardwareConfig(...))`` builds hashed layers whose stages are
:class:`~aimc_lsh.hardware.AnalogHashStages` (or, for ``placement="conventional"``, real weights on
analog tiles from :mod:`aimc_lsh.nn.conventional`). Per-layer variations go through ``patch_model``'s
``overrides`` (module path -> config or dict of field changes; nested fields may be given as dicts,
e.g. ``{"adc": {"bits": 4}}``).

Placements:

* ``codes_on_array`` (the design card): h_W (+-1) programmed as differential conductances; P x and the
  sign in the periphery (digital, or an analog tile with ``analog_projection=True``); the tile computes
  h_W . h_x, read out by an ADC.
* ``projection_on_array`` (the hackathon's hardware story): P programmed on a tile, sense amplifiers
  (1-bit ADCs) produce h_x, the Hamming distance to pre-stored h_W is computed digitally.
* ``conventional``: real weights on tiles with an n-bit ADC (the AIMC baseline).

With ``kernel="product_quantization"`` ``codes_on_array`` programs the layer's look-up table on the
tiles (the one-hot centroid codes drive its word lines); there is no projection, so
``projection_on_array`` is rejected (a kernel class lists what it supports in ``placements``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from aimc_lsh.hardware.devices import IDEAL_DEVICE, DeviceProfile, load_device
from aimc_lsh.hardware.programming import DRIFT_REFERENCES
from aimc_lsh.hardware.specs import ADC, SenseAmp, TileSpec, check_positive_int
from aimc_lsh.kernels import HASH_FIELDS, HashConfig, get_kernel_class
from aimc_lsh.utils import atomic_write_text

PLACEMENTS = ("codes_on_array", "projection_on_array", "conventional")
"""Allowed values of :attr:`HardwareConfig.placement`."""

BACKENDS = ("fast", "aihwkit")
"""Allowed values of :attr:`HardwareConfig.backend`."""

CONVENTIONAL_FULL_SCALE = 12.0
"""ADC full scale of the conventional baseline when ``ADC.full_scale`` is None: aihwkit's default
``IOParameters.out_bound`` (normalised units)."""


@dataclass
class HardwareConfig(HashConfig):
    """A hashed layer on simulated analog in-memory-computing hardware.

    Every :class:`~aimc_lsh.kernels.HashConfig` field (kernel, hash_length, tiling, ...) applies too.
    Fields left at None take the device profile's default.

    Example:
        >>> hw = HardwareConfig(device="ideal", hash_length=64, placement="projection_on_array")
        >>> hw.effective_sense_amp.ideal
        True

    """

    device: DeviceProfile = field(default_factory=lambda: IDEAL_DEVICE)
    """The memory technology (a :class:`DeviceProfile`, or a name / YAML path for :func:`load_device`)."""

    placement: str = "codes_on_array"
    """What is programmed on the crossbars: ``codes_on_array``, ``projection_on_array`` or
    ``conventional``."""

    analog_projection: bool | None = None
    """Compute P x on its own analog tile (same device) read by sense amplifiers. None: the placement's
    default (False for codes_on_array, True for projection_on_array, where False is an error)."""

    sense_amp: SenseAmp | None = None
    """Comparators producing h_x; None: the device's default. They act on the projection's output
    whether it is analog or digital (a digital projection with the ideal ``SenseAmp()`` is an exact sign)."""

    adc: ADC | None = None
    """Converters for multi-level read-outs (the code match, partial sums of split tiles, the
    conventional baseline); None: the device's default."""

    tile: TileSpec = field(default_factory=TileSpec)
    """Physical crossbar size; larger matrices are split and their partial results summed digitally."""

    norm_bits: int | None = None
    """Bits of the digital weight-row and input-patch norms used in the reconstruction (uniform, per
    tile pair / per sample); None keeps them in floating point."""

    drift_compensation: bool | None = None
    """Global drift compensation of multi-level read-outs (aihwkit's ``GlobalDriftCompensation``); None:
    the device's default. It has no effect on comparator outputs: the sign ignores a common scale, so
    after a sense amplifier only the spread of drift, read and programming noise can flip bits."""

    drift_reference: str | None = None
    """Inputs of the drift-compensation read-out (both at programming and after drift). ``random_sign``:
    :data:`~aimc_lsh.hardware.programming.DRIFT_REFERENCE_VECTORS` fixed +-1 vectors driving many rows at
    once (as many as the ADC range allows without clipping), so the read-outs are many ADC steps large
    (fast backend only). ``one_hot``: aihwkit's ``GlobalDriftCompensation``, every row driven alone; a
    single weight is often below one ADC step, so an n-bit ADC biases the factor (PCM, 1 day, 8-bit default
    ADC: 8-16% under-compensation on ResNet-20's conventional tiles; a no-op for +-1 codes read against a
    k-row full scale). None: ``random_sign`` on the fast backend, ``one_hot`` on the aihwkit backend (see
    :attr:`effective_drift_reference`)."""

    backend: str = "fast"
    """``fast``: physics applied to the weights once per programming/drift, convolutions for the
    arithmetic. ``aihwkit``: the same layer through real aihwkit ``TorchInferenceTile`` s (slow; the
    reference the fast path is tested against)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.device, str | os.PathLike):
            self.device = load_device(self.device)
        elif isinstance(self.device, dict):
            self.device = DeviceProfile.from_dict(self.device)
        elif not isinstance(self.device, DeviceProfile):
            raise TypeError(f"device must be a DeviceProfile, a name or a YAML path, got {self.device!r}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"unknown placement {self.placement!r}; allowed: {', '.join(PLACEMENTS)}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown backend {self.backend!r}; allowed: {', '.join(BACKENDS)}")
        if self.analog_projection is not None and not isinstance(self.analog_projection, bool):
            raise ValueError(f"analog_projection must be True, False or None, got {self.analog_projection!r}")
        self._check_kernel_support()
        if self.placement == "projection_on_array" and self.analog_projection is False:
            raise ValueError(
                "placement='projection_on_array' programs P on a tile, so analog_projection cannot be False "
                "(use placement='codes_on_array' for a digital projection)"
            )
        if self.sense_amp is not None:
            self.sense_amp = SenseAmp.from_dict(self.sense_amp)
        if self.adc is not None:
            self.adc = ADC.from_dict(self.adc)
        self.tile = TileSpec.from_dict(self.tile)
        check_positive_int("HardwareConfig", "norm_bits", self.norm_bits, allow_none=True)
        if self.drift_reference is not None and self.drift_reference not in DRIFT_REFERENCES:
            raise ValueError(
                f"unknown drift_reference {self.drift_reference!r}; allowed: {', '.join(DRIFT_REFERENCES)} "
                "or None (the backend's default)"
            )
        if self.drift_reference == "random_sign" and self.backend == "aihwkit":
            raise ValueError(
                f"drift_reference={self.drift_reference!r} is simulated by the fast backend only; the "
                "aihwkit backend reads drift with aihwkit's one-hot GlobalDriftCompensation "
                "(drift_reference='one_hot')"
            )
        if self.drift_compensation is not None and not isinstance(self.drift_compensation, bool):
            raise ValueError(
                f"drift_compensation must be True, False or None, got {self.drift_compensation!r}"
            )

    def _check_kernel_support(self) -> None:
        """Reject placements and backends the kernel class does not declare (``placements``, ``backends``)."""
        kernel_class = get_kernel_class(self.kernel)
        placements = getattr(kernel_class, "placements", PLACEMENTS)
        if self.placement not in placements:
            raise ValueError(
                f"kernel {self.kernel!r} cannot run with placement={self.placement!r}; "
                f"allowed for it: {', '.join(placements)}"
            )
        if self.analog_projection and "projection_on_array" not in placements:
            raise ValueError(
                f"kernel {self.kernel!r} has no projection to put on a tile: analog_projection must be "
                f"None or False, got {self.analog_projection!r}"
            )
        backends = getattr(kernel_class, "backends", BACKENDS)
        if self.placement != "conventional" and self.backend not in backends:
            raise ValueError(
                f"kernel {self.kernel!r} is simulated with backend {' or '.join(map(repr, backends))} only, "
                f"got backend={self.backend!r}"
            )

    # ------------------------------------------------------------------ resolved settings
    @property
    def effective_sense_amp(self) -> SenseAmp:
        """The sense amplifier in use (this config's, else the device's)."""
        return self.sense_amp if self.sense_amp is not None else self.device.sense_amp

    @property
    def effective_adc(self) -> ADC:
        """The ADC in use (this config's, else the device's)."""
        return self.adc if self.adc is not None else self.device.adc

    @property
    def effective_drift_reference(self) -> str:
        """The drift-compensation read-out used: this config's choice, else the backend's default."""
        if self.drift_reference is not None:
            return self.drift_reference
        return "one_hot" if self.backend == "aihwkit" else "random_sign"

    @property
    def effective_drift_compensation(self) -> bool:
        """Whether global drift compensation is applied (this config's choice, else the device's)."""
        if self.drift_compensation is not None:
            return self.drift_compensation
        return self.device.drift_compensation

    @property
    def projection_is_analog(self) -> bool:
        """Whether P x is computed on an analog tile."""
        if self.analog_projection is not None:
            return self.analog_projection
        return self.placement == "projection_on_array"

    @property
    def codes_are_analog(self) -> bool:
        """Whether the code match h_W . h_x is computed on an analog tile (read by the ADC)."""
        return self.placement == "codes_on_array"

    # ------------------------------------------------------------------ stages
    def build_stages(self) -> Any:
        """Return the stage object of a hashed layer with this config (fast or aihwkit backend).

        Raises:
            ValueError: For ``placement="conventional"``, which has no hash stages (use
                ``patch_model``, which converts such layers with :mod:`aimc_lsh.nn.conventional`).

        """
        if self.placement == "conventional":
            raise ValueError(
                "placement='conventional' keeps real weights on the tiles and has no hash stages; "
                "convert models with aimc_lsh.nn.patch_model or aimc_lsh.nn.conventional.convert_conventional"
            )
        if self.backend == "aihwkit":
            from aimc_lsh.hardware.reference import AihwkitHashStages

            return AihwkitHashStages(self)
        from aimc_lsh.hardware.stages import AnalogHashStages

        return AnalogHashStages(self)

    @classmethod
    def from_hash_config(cls, config: HashConfig | Mapping[str, Any], **hardware: Any) -> Self:
        """The hardware version of a hashed layer: every hashing field of ``config``, plus ``hardware``.

        Args:
            config: A layer's config, or its ``to_dict()`` (as checkpoints store it). Its
                :class:`~aimc_lsh.kernels.HashConfig` fields (kernel, k, seed, tiling, PQ settings) are
                kept; hardware fields it may have (a config trained on hardware) are not.
            **hardware: The hardware fields (``device``, ``placement``, ``sense_amp``, ...), as for
                :meth:`from_dict` (a device name, nested dicts accepted); unset ones take their defaults.

        Raises:
            ValueError: For a keyword that is not a field, or a field the config rejects.

        """
        if isinstance(config, HashConfig):
            settings = config.hash_settings()
        else:
            settings = {name: config[name] for name in HASH_FIELDS if name in config}
        return cls.from_dict({**settings, **hardware})

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a plain, YAML/JSON-serialisable dict (nested records as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from :meth:`to_dict` output (nested dicts, a device name or path accepted)."""
        return super().from_dict(dict(data))

    def to_yaml(self) -> str:
        """Return the config as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        """Build a config from YAML text written by :meth:`to_yaml` (or by hand)."""
        data = yaml.safe_load(text)
        if not isinstance(data, dict):
            raise ValueError(f"a HardwareConfig YAML document must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the config as YAML to ``path`` (atomically)."""
        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Self:
        """Read a config written by :meth:`save`."""
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))
