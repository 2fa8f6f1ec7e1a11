"""Device profiles: which aihwkit noise model a memory technology uses, and its default periphery.

A :class:`DeviceProfile` names an aihwkit phenomenological noise model (programming noise, drift,
accumulated 1/f read noise) with its parameters, ``g_max``, whether global drift compensation is used,
a per-read weight noise, and default sense-amplifier and ADC figures. Profiles are YAML files: the
project ships ``devices/*.yaml`` (``pcm``, ``reram``, ``reram_wan2022``, ``hermes``, ``ideal``); users
add a device by dropping a file into that folder or into a folder listed in ``$AIMC_LSH_DEVICES``
(``os.pathsep``-separated), or by passing a path to :func:`load_device`.

Public API: ``DeviceProfile``, ``load_device(name_or_path)``, ``available_devices()``,
``save_device(profile, path)``, ``NOISE_MODELS``, ``IDEAL_DEVICE``.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from aimc_lsh.hardware.specs import ADC, SenseAmp, check_non_negative
from aimc_lsh.utils import atomic_write_text

NOISE_MODELS: dict[str, str] = {
    "PCMLikeNoiseModel": "aihwkit.inference.noise.pcm",
    "CustomDriftPCMLikeNoiseModel": "aihwkit.inference.noise.pcm",
    "HermesNoiseModel": "aihwkit.inference.noise.hermes",
    "ReRamWan2022NoiseModel": "aihwkit.inference.noise.reram",
    "ReRamCMONoiseModel": "aihwkit.inference.noise.reram",
    "StateIndependentNoiseModel": "aihwkit.inference.noise.custom",
}
"""aihwkit 1.1.0 noise-model class name -> module that defines it (the names a profile may use)."""

DEVICES_ENV = "AIMC_LSH_DEVICES"
"""Environment variable: extra folders (``os.pathsep``-separated) searched for ``<name>.yaml``."""

BUILTIN_DEVICES_DIR = Path(__file__).resolve().parents[2] / "devices"
"""The project's ``devices/`` folder (in a source checkout)."""


def noise_model_class(name: str) -> type:
    """Import and return the aihwkit noise-model class called ``name``.

    Raises:
        ValueError: For a name aihwkit does not provide (the message lists the known ones).

    """
    module = NOISE_MODELS.get(name)
    if module is None:
        raise ValueError(f"unknown aihwkit noise model {name!r}; known: {', '.join(sorted(NOISE_MODELS))}")
    return getattr(importlib.import_module(module), name)


@dataclass
class DeviceProfile:
    """A memory technology as the simulator sees it (one YAML file in ``devices/``)."""

    name: str = "ideal"
    """Short name (the file stem for shipped profiles), e.g. ``pcm``."""

    noise_model: str | None = None
    """aihwkit noise-model class name (a key of :data:`NOISE_MODELS`), or None for an ideal device
    (programmed conductances equal their targets, no drift, no accumulated read noise)."""

    noise_params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the noise model's constructor (``g_max`` excluded: see :attr:`g_max`)."""

    g_max: float | None = None
    """Maximal conductance in microsiemens the largest weight is mapped to (passed to the noise model;
    None keeps the model's default)."""

    drift_compensation: bool = False
    """Apply aihwkit's global drift compensation (a digital output scale from a reference read-out)
    to multi-level read-outs. Meaningless before a comparator, whose sign ignores a common scale."""

    read_noise_std: float = 0.0
    """Per-read additive weight noise (in normalised weight units, the abs-max weight being 1), fresh
    for every read: aihwkit's ``forward.w_noise`` with ``WeightNoiseType.ADDITIVE_CONSTANT``."""

    sense_amp: SenseAmp = field(default_factory=SenseAmp)
    """Default sense amplifier of this technology's periphery (units: see :mod:`~aimc_lsh.hardware.specs`)."""

    adc: ADC = field(default_factory=ADC)
    """Default ADC for multi-level read-outs."""

    description: str = ""
    """One line saying what the profile models."""

    source: str = ""
    """Where the numbers come from (papers, aihwkit classes)."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"DeviceProfile.name must be a non-empty string, got {self.name!r}")
        if self.noise_model is not None and self.noise_model not in NOISE_MODELS:
            raise ValueError(
                f"device {self.name!r}: unknown noise_model {self.noise_model!r}; "
                f"known: {', '.join(sorted(NOISE_MODELS))} (or null for an ideal device)"
            )
        if not isinstance(self.noise_params, dict):
            raise ValueError(
                f"device {self.name!r}: noise_params must be a mapping, got {self.noise_params!r}"
            )
        if "g_max" in self.noise_params:
            raise ValueError(f"device {self.name!r}: give g_max as its own field, not inside noise_params")
        if self.noise_model is None and self.noise_params:
            raise ValueError(f"device {self.name!r}: noise_params given without a noise_model")
        if self.g_max is not None and check_non_negative("DeviceProfile", "g_max", self.g_max) == 0:
            raise ValueError(f"device {self.name!r}: g_max must be > 0, got {self.g_max!r}")
        if not isinstance(self.drift_compensation, bool):
            raise ValueError(f"device {self.name!r}: drift_compensation must be a bool")
        check_non_negative("DeviceProfile", "read_noise_std", self.read_noise_std)
        self.sense_amp = SenseAmp.from_dict(self.sense_amp)
        self.adc = ADC.from_dict(self.adc)
        if self.noise_model is not None:
            self.build_noise_model()  # fail now, with the parameter list, not at programming time

    # ------------------------------------------------------------------ physics
    @property
    def is_ideal(self) -> bool:
        """True when programming, drift and reads leave the weights exact."""
        return self.noise_model is None and self.read_noise_std == 0

    def build_noise_model(self) -> Any:
        """Return a fresh aihwkit noise-model instance (None for an ideal device).

        Raises:
            ValueError: When the parameters do not fit the model's constructor.

        """
        if self.noise_model is None:
            return None
        cls = noise_model_class(self.noise_model)
        kwargs = copy.deepcopy(self.noise_params)
        if self.g_max is not None:
            kwargs["g_max"] = self.g_max
        try:
            return cls(**kwargs)
        except (TypeError, AssertionError, ValueError) as error:
            accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
            raise ValueError(
                f"device {self.name!r}: cannot build {self.noise_model} with {sorted(kwargs)}: {error}; "
                f"accepted parameters: {', '.join(accepted)}"
            ) from error

    def allowed_times(self) -> list[float] | None:
        """Inference times (s) the noise model has data for, or None when any t >= 0 works.

        ``ReRamWan2022NoiseModel`` only has fits at t = 1 s, 1 day and 2 days (its ``coeff_dic`` keys).
        """
        if self.noise_model == "ReRamWan2022NoiseModel":
            return sorted(float(t) for t in self.build_noise_model().coeff_dic)
        return None

    def check_time(self, t_inference: float) -> float:
        """Validate an inference time for this device and return it as ``float``.

        Raises:
            ValueError: For a negative or non-finite time, or a time the device has no data for.

        """
        t = check_non_negative("drift", "t_inference", t_inference)
        allowed = self.allowed_times()
        if allowed is not None and t != 0 and t not in allowed:
            raise ValueError(
                f"device {self.name!r} ({self.noise_model}) only has data at t_inference = "
                f"{', '.join(f'{a:g}' for a in allowed)} s (1 s, 1 day, 2 days) besides 0; got {t:g} s. "
                f"Use the 'reram' profile (ReRamCMONoiseModel) for arbitrary times."
            )
        return t

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a plain, YAML-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Self) -> Self:
        """Build a profile from a dict (unknown keys raise a clear error)."""
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"a device profile must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"device profile has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def to_yaml(self) -> str:
        """Return the profile as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied (e.g. ``name="pcm_hot", g_max=20.0``)."""
        return type(self).from_dict({**self.to_dict(), **changes})


IDEAL_DEVICE = DeviceProfile(name="ideal", description="No programming noise, drift or read noise.")
"""The ideal device (the default of :class:`~aimc_lsh.hardware.HardwareConfig`)."""


def device_dirs() -> list[Path]:
    """Folders searched for ``<name>.yaml``: ``$AIMC_LSH_DEVICES`` entries first, then ``devices/``."""
    extra = [Path(p) for p in os.environ.get(DEVICES_ENV, "").split(os.pathsep) if p]
    return [*extra, BUILTIN_DEVICES_DIR]


def available_devices() -> dict[str, Path]:
    """Map every findable profile name to its file (earlier folders win on duplicate names)."""
    found: dict[str, Path] = {}
    for folder in device_dirs():
        if folder.is_dir():
            for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
                found.setdefault(path.stem, path)
    return found


def read_device_file(path: str | os.PathLike[str]) -> DeviceProfile:
    """Read a profile from a YAML file.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If the file is not a valid profile (the message names the file).

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"device file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"device file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ValueError(
            f"device file {path} must hold a mapping of profile fields, got {type(data).__name__}"
        )
    data.setdefault("name", path.stem)
    try:
        return DeviceProfile.from_dict(data)
    except (TypeError, ValueError) as error:
        raise ValueError(f"device file {path}: {error}") from error


def load_device(name_or_path: str | os.PathLike[str] | DeviceProfile) -> DeviceProfile:
    """Return a device profile by name (``"pcm"``), by YAML path, or pass a profile through.

    Raises:
        ValueError: For an unknown name; the message lists the available profiles and folders.

    """
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    if not isinstance(name_or_path, str | os.PathLike):
        raise TypeError(f"load_device expects a name, a path or a DeviceProfile, got {name_or_path!r}")
    text = os.fspath(name_or_path)
    looks_like_path = text.endswith((".yaml", ".yml")) or os.sep in text or Path(text).is_file()
    if looks_like_path:
        return read_device_file(text)
    available = available_devices()
    if text not in available:
        raise ValueError(
            f"unknown device {text!r}; available: {', '.join(sorted(available)) or '(none)'} "
            f"(searched {', '.join(str(d) for d in device_dirs())}; "
            f"add <name>.yaml there or set ${DEVICES_ENV})"
        )
    return read_device_file(available[text])


def save_device(profile: DeviceProfile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as YAML to ``path`` atomically and return the path."""
    return atomic_write_text(path, profile.to_yaml())
