"""``HashConfig``: how a layer is hashed (kernel, hash length, tiling), independent of hardware.

Kernel classes may declare what they accept (class attributes, all optional): ``config_options``
(constructor keyword -> config field, default ``orthogonal`` and ``ste``) and ``supports_tiling`` (False:
``input_tile_size`` / ``output_tile_size`` must stay None); hardware configs also read ``placements`` and
``backends``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Self

from aimc_lsh.kernels.base import HashKernel
from aimc_lsh.kernels.pq_kernel import check_table_bits, check_temperature
from aimc_lsh.kernels.registry import get_kernel_class
from aimc_lsh.kernels.stages import HashStages
from aimc_lsh.kernels.ste import STE_MODES

_SIMHASH_OPTIONS = {"orthogonal": "orthogonal", "ste": "ste", "thresholds": "comparator_thresholds"}
"""Kernel keyword -> config field for kernels that declare no ``config_options``."""


def _check_optional_positive(name: str, value: int | None) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise ValueError(f"{name} must be a positive int or None (no tiling), got {value!r}")


def _check_simhash_flag(name: str, value: object, kernel: str, kernel_class: type) -> None:
    """A bool option that only SimHash kernels support: refuse other types, and True for other kernels."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    if value and not issubclass(kernel_class, HashKernel):
        raise ValueError(
            f"{name} needs a SimHash kernel (random_projection, learned_projection), got kernel={kernel!r}"
        )


@dataclass
class HashConfig:
    """Configuration of a hashed (SimHash) layer on ideal digital hardware.

    Hardware configurations (:class:`aimc_lsh.hardware.HardwareConfig`) extend this class, so every
    field here also exists there.
    """

    kernel: str = "random_projection"
    """Registered kernel name (see :func:`aimc_lsh.kernels.kernel_names`), e.g. ``random_projection``
    (fixed random P) or ``learned_projection`` (trainable P)."""

    hash_length: int = 128
    """The kernel's size, > 0: k bits per projection (per tile pair when tiled) for SimHash kernels,
    K centroids per codebook for ``product_quantization``."""

    orthogonal: bool = False
    """Draw P with orthonormal rows (blocks of at most d rows) instead of i.i.d. Gaussian rows."""

    seed: int = 0
    """Base seed of the projections; each layer derives its own seed from it and its module path."""

    ste: str = "identity"
    """Straight-through estimator of the sign in training: ``identity`` or ``clipped``."""

    input_tile_size: int | None = None
    """Input channels (features for linear layers) per input tile, each with its own P; None: one tile."""

    output_tile_size: int | None = None
    """Output channels (features) per output tile, each with its own P; None: one tile."""

    center_inputs: bool = False
    """SimHash kernels only: hash each input minus a per-input-channel reference c (the buffer
    ``input_center`` of every hashed layer, zeros until :func:`aimc_lsh.nn.calibrate_input_centers` sets
    it to the mean input) and add the reference's exact contribution, W applied to the constant map c,
    digitally. The expected output is unchanged; the estimator's noise scales with the norm of the
    centred patches instead of the raw ones (smaller for post-ReLU inputs, whose mean is large)."""

    comparator_thresholds: bool = False
    """SimHash kernels only: learn one comparator threshold ``t_j`` per hash bit (the kernel parameter
    ``threshold``, zeros at the start, i.e. plain SimHash). Input bit j becomes
    ``sign(p_j . x - t_j ||p_j|| ||x_patch||)``: the comparator decides ``cos(p_j, x) >= t_j``, a trimmed
    sense-amplifier reference. The weight codes stay ``sign(W P^T)``."""

    pq_subvector_length: int | None = None
    """``product_quantization`` only: sub-vector length V (g whole input channels' kh x kw patches, so
    kh*kw must divide V and V/(kh*kw) the input channels). None: 9 for convolutions with kh*kw > 1
    (one channel's 3x3 patch), 4 otherwise (4 consecutive channels or features)."""

    pq_table_bits: int | None = 8
    """``product_quantization`` only: bits of the look-up table of centroid . weight products, quantised
    symmetrically per output row (>= 2); None keeps a float table."""

    pq_temperature: float = 1.0
    """``product_quantization`` only: initial temperature t (> 0) of the soft assignment
    ``softmax(-distance / t)`` whose gradient the hard nearest-centroid forward pass uses (t is learned)."""

    def __post_init__(self) -> None:
        kernel_class = get_kernel_class(self.kernel)  # raises with the list of registered kernels
        if (
            not isinstance(self.hash_length, int)
            or isinstance(self.hash_length, bool)
            or self.hash_length <= 0
        ):
            raise ValueError(f"hash_length (k) must be a positive int, got {self.hash_length!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        if self.ste not in STE_MODES:
            raise ValueError(f"unknown ste {self.ste!r}; allowed: {', '.join(STE_MODES)}")
        _check_optional_positive("input_tile_size", self.input_tile_size)
        _check_optional_positive("output_tile_size", self.output_tile_size)
        for flag in ("center_inputs", "comparator_thresholds"):
            _check_simhash_flag(flag, getattr(self, flag), self.kernel, kernel_class)
        v = self.pq_subvector_length
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
            raise ValueError(f"pq_subvector_length must be a positive int or None (the default V), got {v!r}")
        check_table_bits(self.pq_table_bits, "pq_table_bits")
        check_temperature(self.pq_temperature, "pq_temperature")
        if not getattr(kernel_class, "supports_tiling", True) and (
            self.input_tile_size is not None or self.output_tile_size is not None
        ):
            raise ValueError(
                f"kernel {self.kernel!r} does not tile: input_tile_size and output_tile_size must be None "
                f"(got {self.input_tile_size!r}, {self.output_tile_size!r}); hardware tiles are set by "
                "HardwareConfig.tile"
            )

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied (validated like a new config).

        Raises:
            ValueError: For a field name the config does not have.

        """
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no field(s) {', '.join(unknown)}; "
                f"fields: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **changes)

    def hash_settings(self) -> dict[str, Any]:
        """The :class:`HashConfig` fields alone (kernel, k, seed, tiling, PQ settings), as values.

        They say what a hashed layer computes; a :class:`~aimc_lsh.hardware.HardwareConfig` adds where
        it runs (device, placement, periphery), which this leaves out.
        """
        return {name: getattr(self, name) for name in HASH_FIELDS}

    def kernel_options(self) -> dict[str, Any]:
        """Keyword arguments passed to the kernel class besides ``in_features`` and ``hash_length``.

        They are the config fields named by the kernel class's ``config_options`` (default: ``orthogonal``
        and ``ste``, the SimHash options).
        """
        options = getattr(get_kernel_class(self.kernel), "config_options", _SIMHASH_OPTIONS)
        return {keyword: getattr(self, name) for keyword, name in options.items()}

    def build_stages(self) -> HashStages:
        """Return the stage object a layer with this config computes with (ideal digital here)."""
        return HashStages(ste=self.ste)

    def to_dict(self) -> dict[str, Any]:
        """Return a plain, YAML/JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build a config from :meth:`to_dict` output; unknown keys raise a clear error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{cls.__name__} has no field(s) {', '.join(unknown)}; fields: {', '.join(sorted(known))}"
            )
        return cls(**data)


HASH_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(HashConfig))
"""Names of the :class:`HashConfig` fields (shared by every hardware config, which adds its own)."""
