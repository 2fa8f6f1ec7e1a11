"""Names of aihwkit noise models used to measure hardware-aware-training noise levels.

Only aihwkit's pure-python noise models are used (no C++ tiles), so this works with any torch build.
"""

from __future__ import annotations

from typing import Any

DEVICE_NAMES = ("pcm", "hermes", "reram")


def aihwkit_noise_model(name: str) -> Any:
    """Return a fresh aihwkit noise model: ``pcm``, ``hermes`` or ``reram`` (see :data:`DEVICE_NAMES`).

    Raises:
        ValueError: For another name.

    """
    import aihwkit.inference as aihwkit_noise

    if name == "pcm":
        return aihwkit_noise.PCMLikeNoiseModel()
    if name == "hermes":
        from aihwkit.inference.noise.hermes import HermesNoiseModel

        return HermesNoiseModel()
    if name == "reram":
        return aihwkit_noise.ReRamWan2022NoiseModel()
    raise ValueError(f"unknown device {name!r}; allowed: ideal, {', '.join(DEVICE_NAMES)}")
