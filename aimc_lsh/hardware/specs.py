"""Periphery and tile specifications: ``SenseAmp``, ``ADC`` and ``TileSpec`` dataclasses.

These small, validated, serialisable records describe *what* the periphery of a crossbar does; the
functions that apply them to tensors live in :mod:`aimc_lsh.hardware.periphery`.

Units (read these before choosing numbers):

* **Sense amplifier** figures are relative to the full scale of the quantity the comparator sees.
  A comparator deciding the sign of projection column ``j`` sees ``z_j = p_j . x / (||p_j|| ||x||)``,
  the pre-activation of the L2-normalised input patch divided by its largest possible magnitude
  (Cauchy-Schwarz), so ``z_j`` lies in [-1, 1]; ``offset_std = 0.02`` is an offset of 2 % of that
  full scale. ``full_scale_mv`` optionally gives that full scale as a voltage at the comparator's input,
  so that figures can be given in millivolts (:meth:`SenseAmp.replace_mv`): with ``full_scale_mv = 340``
  a 3.4 mV offset is ``offset_std = 0.01``.
* **ADC** figures are in aihwkit's normalised output units: one unit is the current of one device at
  ``g_max`` driven by a full-scale input (aihwkit's ``out_bound`` and ``out_noise`` use the same units).
  A tile of ``r`` rows holding +-1 codes driven by +-1 inputs reads out an integer in [-r, r].
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Self


def check_non_negative(owner: str, name: str, value: Any) -> float:
    """Validate a finite, non-negative number and return it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}.{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_positive_int(owner: str, name: str, value: Any, *, allow_none: bool = False) -> int | None:
    """Validate a positive int (or None when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        allowed = "a positive int or None" if allow_none else "a positive int"
        raise ValueError(f"{owner}.{name} must be {allowed}, got {value!r}")
    return value


class _Record:
    """Mixin: ``to_dict`` / ``from_dict`` / ``replace`` for flat dataclass records."""

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as a plain (YAML/JSON-serialisable) dict."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | Self | None) -> Self:
        """Build from a dict (unknown keys raise a clear error); instances pass through."""
        if isinstance(data, cls):
            return data
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} must be given as a dict or {cls.__name__}, got {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
            )
        return cls(**data)

    def replace(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied."""
        return type(self).from_dict({**self.to_dict(), **changes})


@dataclass(frozen=True)
class SenseAmp(_Record):
    """A sense amplifier (1-bit ADC, comparator) deciding the sign of an analog column.

    All figures are relative to the full scale of the compared quantity (see the module docstring):
    the comparator outputs ``+1`` where ``z + offset + noise - threshold >= 0`` and ``-1`` elsewhere,
    and a random sign inside the metastability band.
    """

    offset_std: float = 0.0
    """Standard deviation of the static input-referred offset of each column, drawn once per
    programming (``aimc_lsh.hardware.program``) and fixed afterwards."""

    noise_std: float = 0.0
    """Standard deviation of the dynamic (thermal/kT-C) input-referred noise, drawn for every decision."""

    threshold: float = 0.0
    """Systematic decision threshold common to all columns (0: an ideal zero crossing)."""

    metastability: float = 0.0
    """Half-width of the metastability band: where ``|z + offset + noise - threshold|`` is below it the
    latch resolves to a random sign (probability 1/2 each). 0 disables it."""

    full_scale_mv: float | None = None
    """The comparator input voltage of full scale (``|z| = 1``), in mV: the column swing of the largest
    possible signal. Only used to convert figures given in millivolts (:meth:`replace_mv`); None: unknown
    (figures can then only be given as fractions of full scale)."""

    _MV_FIGURES = ("offset_std", "noise_std", "threshold", "metastability")

    def __post_init__(self) -> None:
        if self.full_scale_mv is not None:
            if check_non_negative("SenseAmp", "full_scale_mv", self.full_scale_mv) == 0:
                raise ValueError("SenseAmp.full_scale_mv must be > 0 (mV) or None, got 0")
        check_non_negative("SenseAmp", "offset_std", self.offset_std)
        check_non_negative("SenseAmp", "noise_std", self.noise_std)
        check_non_negative("SenseAmp", "metastability", self.metastability)
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float):
            raise ValueError(f"SenseAmp.threshold must be a finite number, got {self.threshold!r}")
        if not math.isfinite(self.threshold) or abs(self.threshold) > 1:
            raise ValueError(
                f"SenseAmp.threshold must lie in [-1, 1] (full-scale units), got {self.threshold!r}"
            )

    def replace_mv(self, **figures_mv: float) -> SenseAmp:
        """Return a copy with figures given in millivolts at the comparator's input.

        Example: ``pcm.sense_amp.replace_mv(offset_std=2.0)`` is a comparator with a 2 mV offset
        standard deviation (0.0059 of PCM's assumed 340 mV full scale).

        Args:
            **figures_mv: ``offset_std``, ``noise_std``, ``threshold`` and/or ``metastability`` in mV.

        Raises:
            ValueError: For another keyword, or when :attr:`full_scale_mv` is not set.

        """
        unknown = sorted(set(figures_mv) - set(self._MV_FIGURES))
        if unknown:
            raise ValueError(
                f"SenseAmp.replace_mv takes {', '.join(self._MV_FIGURES)} (in mV), got {', '.join(unknown)}"
            )
        if self.full_scale_mv is None:
            raise ValueError(
                "SenseAmp.full_scale_mv is not set, so figures in mV cannot be converted: set "
                "sense_amp.full_scale_mv (the comparator's full-scale swing in mV) in the device profile, or "
                "give the figures as fractions of full scale"
            )
        return self.replace(**{name: value / self.full_scale_mv for name, value in figures_mv.items()})

    @property
    def ideal(self) -> bool:
        """True when the comparator is an exact sign (no offset, noise, threshold or band)."""
        return (
            self.offset_std == 0 and self.noise_std == 0 and self.threshold == 0 and self.metastability == 0
        )


@dataclass(frozen=True)
class ADC(_Record):
    """An analog-to-digital converter reading a crossbar column (a multi-level read-out).

    A ``bits``-bit converter is symmetric and mid-rise: ``2**bits`` levels at odd multiples of half a
    step ``delta = 2 * full_scale / 2**bits``; ``bits = 1`` is therefore a comparator returning
    ``+-full_scale / 2`` (a sense amplifier), ``bits = None`` an ideal converter (no quantisation, no
    clipping, noise still applies). A read-out of exactly a decision threshold (e.g. 0) goes up.
    """

    bits: int | None = None
    """Resolution in bits (>= 1), or None for an ideal converter."""

    full_scale: float | None = None
    """Half-range ``FS``: the converter covers [-FS, FS] in aihwkit's normalised output units. None
    chooses the natural range of the read-out: the number of rows of the tile for +-1 code matches
    (every bit agreeing), the largest column norm for projection partial sums, and aihwkit's default
    ``out_bound`` of 12 for conventional real-valued weights."""

    clip: bool = True
    """Saturate at +-FS (what a real converter does). False keeps the quantisation step but lets values
    beyond the range through (for studies that isolate quantisation)."""

    noise_std: float = 0.0
    """Standard deviation of Gaussian noise added to the analog read-out before conversion, for every
    read, in normalised output units (like aihwkit's ``out_noise``)."""

    def __post_init__(self) -> None:
        check_positive_int("ADC", "bits", self.bits, allow_none=True)
        if self.bits is not None and self.bits > 24:
            raise ValueError(
                f"ADC.bits must be at most 24 (use None for an ideal converter), got {self.bits}"
            )
        if self.full_scale is not None:
            if check_non_negative("ADC", "full_scale", self.full_scale) == 0:
                raise ValueError("ADC.full_scale must be > 0 (or None for the natural range)")
        if not isinstance(self.clip, bool):
            raise ValueError(f"ADC.clip must be a bool, got {self.clip!r}")
        check_non_negative("ADC", "noise_std", self.noise_std)

    @property
    def ideal(self) -> bool:
        """True when the converter neither quantises nor adds noise."""
        return self.bits is None and self.noise_std == 0

    @property
    def levels(self) -> int | None:
        """Number of output levels (``2**bits``), None when ideal."""
        return None if self.bits is None else 2**self.bits


@dataclass(frozen=True)
class TileSpec(_Record):
    """Size of one physical crossbar tile.

    A matrix larger than a tile is split into near-equal parts (as aihwkit's ``TileModuleArray`` does):
    rows (inputs) into ``ceil(rows_needed / rows)`` parts whose partial results are converted by each
    tile's periphery and summed digitally, columns (outputs) into ``ceil(cols_needed / cols)`` parts.
    """

    rows: int = 512
    """Rows (word lines, inputs) per tile; aihwkit's default ``max_input_size`` is 512."""

    cols: int = 512
    """Columns (bit lines, outputs; a differential pair counts as one) per tile; aihwkit's default
    ``max_output_size`` is 512."""

    def __post_init__(self) -> None:
        check_positive_int("TileSpec", "rows", self.rows)
        check_positive_int("TileSpec", "cols", self.cols)


def equal_splits(size: int, max_size: int) -> list[tuple[int, int]]:
    """Split ``range(size)`` into the fewest near-equal ``(start, stop)`` parts of at most ``max_size``.

    The rule is aihwkit's (``TileModuleArray.get_split_sizes``), so both backends tile identically.

    >>> equal_splits(576, 512)
    [(0, 288), (288, 576)]
    >>> equal_splits(10, 4)
    [(0, 4), (4, 7), (7, 10)]
    """
    n_parts = max(1, -(-size // max_size))
    base, extra = divmod(size, n_parts)
    bounds, start = [], 0
    for part in range(n_parts):
        stop = start + base + (part < extra)
        bounds.append((start, stop))
        start = stop
    return bounds
