"""``PQKernel``: product-quantization (LUT-NN) codebooks, registered as the ``product_quantization`` kernel.

The kernel owns what a product-quantized dot product needs besides the weights: the codebooks
(``centroids``, n_books x K x V, trainable), the learned softmax temperature of the backward pass and a
``calibrated`` flag. Its flat API mirrors the SimHash kernels' hackathon call: ``kernel(x, weights)``
approximates ``x @ weights.T`` by nearest-centroid look-ups. Layers (``aimc_lsh.nn.PQConv2d`` /
``PQLinear``) compute the same thing conv-shaped.

Codebooks start empty: :meth:`PQKernel.calibrate` runs k-means on sample sub-vectors (usually through
``aimc_lsh.nn.calibrate_pq``); using an uncalibrated kernel raises an error saying so.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from aimc_lsh.kernels.pq import assignment_ste, hard_assignment, kmeans, lookup_table, quantize_table
from aimc_lsh.kernels.registry import register_kernel

DEFAULT_SUBVECTOR_LENGTH = 4
"""Sub-vector length of flat vectors (linear layers, 1x1 convolutions): 4 consecutive features."""


def check_table_bits(bits: int | None, name: str = "table_bits") -> None:
    """Raise a ValueError unless ``bits`` is None (float table) or an int >= 2."""
    if bits is not None and (isinstance(bits, bool) or not isinstance(bits, int) or bits < 2):
        raise ValueError(f"{name} must be an int >= 2 or None (float table), got {bits!r}")


def check_temperature(value: float, name: str = "temperature") -> None:
    """Raise a ValueError unless ``value`` is a finite number > 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@register_kernel("product_quantization")
class PQKernel(nn.Module):
    """Product quantization of vectors of length d: d / V codebooks of K centroids each.

    Args:
        in_features: Length d of the vectors; must be a multiple of ``subvector_length``.
        hash_length: Centroids K per codebook (the kernel's "size", like k bits for SimHash).
        subvector_length: Sub-vector length V (None: 4). Sub-vector b is ``v[b*V:(b+1)*V]``.
        table_bits: Bits of the symmetric per-row quantised look-up table (None: float table).
        temperature: Initial temperature t of the soft assignment ``softmax(-distance / t)`` (learned).
        seed: Default seed of :meth:`calibrate`.

    """

    config_options: ClassVar[dict[str, str]] = {
        "subvector_length": "pq_subvector_length",
        "table_bits": "pq_table_bits",
        "temperature": "pq_temperature",
    }
    """Constructor keyword -> :class:`~aimc_lsh.kernels.HashConfig` field it comes from."""

    supports_tiling: ClassVar[bool] = False
    """Codebooks are already local to V inputs: HashConfig's input/output tiles do not apply."""

    placements: ClassVar[tuple[str, ...]] = ("codes_on_array", "conventional")
    """Hardware placements: the table on analog tiles (``codes_on_array``: the one-hot codes drive the
    word lines of a look-up table), or the conventional baseline. There is no projection to program."""

    backends: ClassVar[tuple[str, ...]] = ("fast",)
    """Hardware simulation backends the PQ layers implement."""

    def __init__(
        self,
        in_features: int,
        hash_length: int,
        *,
        subvector_length: int | None = None,
        table_bits: int | None = 8,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        v = DEFAULT_SUBVECTOR_LENGTH if subvector_length is None else subvector_length
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features <= 0:
            raise ValueError(f"in_features must be a positive int, got {in_features!r}")
        if isinstance(hash_length, bool) or not isinstance(hash_length, int) or hash_length <= 0:
            raise ValueError(
                f"hash_length (K centroids per codebook) must be a positive int, got {hash_length!r}"
            )
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"subvector_length (V) must be a positive int or None, got {subvector_length!r}")
        if in_features % v:
            divisors = [n for n in range(1, min(in_features, 64) + 1) if in_features % n == 0]
            raise ValueError(
                f"subvector_length V={v} does not divide in_features={in_features}; "
                f"allowed V (up to 64): {', '.join(map(str, divisors))}"
            )
        check_table_bits(table_bits)
        check_temperature(temperature)
        self.in_features = in_features
        self.hash_length = hash_length
        self.subvector_length = v
        self.n_books = in_features // v
        self.table_bits = table_bits
        self.seed = int(seed)
        self.centroids = nn.Parameter(torch.zeros(self.n_books, hash_length, v))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.register_buffer("calibrated", torch.tensor(False))

    # ------------------------------------------------------------------ state
    @property
    def temperature(self) -> Tensor:
        """The (learned) softmax temperature t = exp(log_temperature) > 0."""
        return self.log_temperature.exp()

    @property
    def is_calibrated(self) -> bool:
        """Whether the codebooks were set by :meth:`calibrate` (or loaded from a calibrated state)."""
        return bool(self.calibrated)

    def check_calibrated(self, owner: str = "PQKernel") -> None:
        """Raise a RuntimeError telling the user to calibrate, unless the codebooks are set."""
        if not self.is_calibrated:
            raise RuntimeError(
                f"{owner} (product quantization) is not calibrated: its codebooks come from k-means on "
                "real activations. Run aimc_lsh.nn.calibrate_pq(model, batches) on a few training batches "
                "first (or load a calibrated checkpoint)"
            )

    def split(self, v: Tensor) -> Tensor:
        """Sub-vectors of flat vectors ``v`` (N, d) as (n_books, N, V)."""
        if v.dim() != 2 or v.shape[1] != self.in_features:
            raise ValueError(f"expected vectors of shape (N, {self.in_features}), got {tuple(v.shape)}")
        return v.reshape(v.shape[0], self.n_books, self.subvector_length).transpose(0, 1)

    @torch.no_grad()
    def calibrate(self, samples: Tensor, *, seed: int | None = None, iterations: int = 25) -> None:
        """Set the codebooks by k-means on ``samples`` and mark the kernel calibrated.

        Args:
            samples: Flat vectors (N, d) or sub-vectors already split per codebook (n_books, N, V).
            seed: k-means++ seed (default: the kernel's ``seed``).
            iterations: Maximum Lloyd iterations.

        """
        if samples.dim() == 2:
            samples = self.split(samples)
        expected = (self.n_books, self.subvector_length)
        if samples.dim() != 3 or (samples.shape[0], samples.shape[2]) != expected:
            raise ValueError(
                f"calibration samples must be (N, {self.in_features}) or ({self.n_books}, N, "
                f"{self.subvector_length}), got {tuple(samples.shape)}"
            )
        centroids = kmeans(
            samples, self.hash_length, iterations=iterations, seed=self.seed if seed is None else seed
        )
        self.centroids.copy_(centroids.to(self.centroids))
        self.calibrated.fill_(True)

    # ------------------------------------------------------------------ the approximation
    def neg_distances(self, v: Tensor) -> Tensor:
        """Negative squared distances up to a per-vector constant, (N, n_books, K).

        ``2 x_b . c_{b,j} - ||c_{b,j}||^2`` equals ``-||x_b - c_{b,j}||^2 + ||x_b||^2``; the dropped term is
        the same for every centroid, so the argmax and the softmax are unchanged.
        """
        parts = self.split(v)  # (B, N, V)
        scores = torch.bmm(parts, self.centroids.transpose(1, 2))  # (B, N, K)
        return (2 * scores - (self.centroids * self.centroids).sum(-1).unsqueeze(1)).transpose(0, 1)

    def assign(self, v: Tensor) -> Tensor:
        """One-hot nearest-centroid assignment (N, n_books, K); soft-assignment gradient when grad is on."""
        self.check_calibrated()
        neg = self.neg_distances(v)
        if torch.is_grad_enabled():
            return assignment_ste(neg, self.temperature, dim=2)
        return hard_assignment(neg, dim=2)

    def encode(self, v: Tensor) -> Tensor:
        """Index of the nearest centroid of every sub-vector, (N, n_books) int64."""
        self.check_calibrated()
        return self.neg_distances(v).argmax(-1)

    def table(self, weights: Tensor) -> Tensor:
        """The (quantised) look-up table (M, n_books * K) of centroid . weight-row products."""
        return quantize_table(lookup_table(weights, self.centroids), self.table_bits)

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        """Approximate ``x @ weights.T`` (N, M) by table look-ups for ``x`` (N, d), ``weights`` (M, d)."""
        return self.assign(x).flatten(1) @ self.table(weights).T

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        bits = "float" if self.table_bits is None else f"int{self.table_bits}"
        return (
            f"d={self.in_features}, V={self.subvector_length}, books={self.n_books}, K={self.hash_length}, "
            f"table={bits}, calibrated={self.is_calibrated}"
        )
