"""Product-quantized layers (LUT-NN): ``PQConv2d`` and ``PQLinear``, computed conv-shaped (no unfold).

For a convolution with C input channels and a kh x kw kernel, a sub-vector is g = V / (kh*kw) consecutive
channels' kh x kw patch, so there are C / g codebooks of K centroids each. The forward pass:

1. ``x . c`` for every codebook and centroid is ONE grouped convolution of ``x`` with the centroids as
   filters (groups = codebooks, weight (n_books*K, g, kh, kw)); the negative distance up to a per-patch
   constant is ``2 x . c - ||c||^2`` (the patch norm cancels in the argmax and the softmax);
2. the nearest centroid of every codebook gives a one-hot map (N, n_books*K, H, W) -- straight-through in
   training: the gradient is that of ``softmax(-distance / t)`` with the learned temperature t;
3. the output is a 1x1 convolution of the one-hot map with the look-up table (C_out, n_books*K), whose
   entries ``T[o, b*K + j] = c_{b,j} . W[o, channels of b]`` are computed from the layer's weight (so the
   weight keeps training through the table) and quantised to ``pq_table_bits`` per output row; + bias.

With a :class:`~aimc_lsh.hardware.HardwareConfig` (placement ``codes_on_array``) the table is programmed on
analog tiles (:class:`~aimc_lsh.hardware.ConventionalArray` with the one-hot codes as word-line inputs, so
device noise, drift and the ADC act on the looked-up entries); layers then expose ``hardware_program`` /
``hardware_drift`` for :func:`aimc_lsh.hardware.program` / :func:`~aimc_lsh.hardware.drift`. With a plain
:class:`~aimc_lsh.kernels.HashConfig` the table is digital. Codebooks come from
:func:`aimc_lsh.nn.calibrate_pq`; an uncalibrated layer refuses to run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.hardware.config import HardwareConfig
from aimc_lsh.hardware.conventional import ConventionalArray
from aimc_lsh.kernels import ConvGeometry, HashConfig, PQKernel, assignment_ste, build_kernel, hard_assignment
from aimc_lsh.kernels.registry import get_kernel_class
from aimc_lsh.nn.digital import (
    Conv2dFace,
    LinearFace,
    check_zero_padding,
    conv_geometry,
    copy_parameters,
    new_weight,
)

CONV_SUBVECTOR_LENGTH = 9
"""Default V of convolutions with kh*kw > 1: one channel's 3x3 patch (LUT-NN's choice)."""

FLAT_SUBVECTOR_LENGTH = 4
"""Default V of 1x1 convolutions and linear layers: 4 consecutive channels or features."""


def default_subvector_length(kernel_size: tuple[int, int]) -> int:
    """V when ``pq_subvector_length`` is None: 9 for kh*kw > 1, else 4."""
    return CONV_SUBVECTOR_LENGTH if kernel_size[0] * kernel_size[1] > 1 else FLAT_SUBVECTOR_LENGTH


class PQLayer(nn.Module):
    """Common machinery of product-quantized layers, on 4-D (N, C, H, W) tensors.

    Args:
        in_channels: Input channels (features for linear layers).
        out_channels: Output channels (features).
        kernel_size: Spatial kernel size ((1, 1) for linear layers).
        geometry: Stride, padding and dilation.
        bias: Whether the layer has a bias.
        config: A :class:`HashConfig` (digital table) or :class:`HardwareConfig` (table on analog tiles)
            whose kernel is a product-quantization kernel; ``hash_length`` is K.
        seed: Seed of the k-means initialisation (default ``config.seed``).

    Raises:
        ValueError: For a non-PQ kernel, a conventional placement, or a sub-vector length V that the
            kernel window or the input channels do not fit.

    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        geometry: ConvGeometry,
        bias: bool,
        config: HashConfig,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if not isinstance(config, HashConfig):
            raise TypeError(f"config must be a HashConfig (or subclass), got {type(config).__name__}")
        if not issubclass(get_kernel_class(config.kernel), PQKernel):
            raise ValueError(
                f"{name} needs a product-quantization kernel (e.g. 'product_quantization'), got "
                f"kernel={config.kernel!r}; SimHash kernels use HashedConv2d / HashedLinear"
            )
        hardware = isinstance(config, HardwareConfig)
        if hardware and config.placement == "conventional":
            raise ValueError(
                f"{name} has no conventional placement; aimc_lsh.nn.patch_model converts models with "
                "placement='conventional' to conventional analog layers"
            )
        window = kernel_size[0] * kernel_size[1]
        v = config.pq_subvector_length or default_subvector_length(kernel_size)
        allowed = ", ".join(str(window * g) for g in _divisors(in_channels))
        if v % window:
            raise ValueError(
                f"{name}: sub-vector length V={v} must be a multiple of the kernel window "
                f"{kernel_size[0]}x{kernel_size[1]}={window} (a sub-vector is g whole channels' patches); "
                f"allowed V for {in_channels} input channels: {allowed}"
            )
        group = v // window
        if in_channels % group:
            raise ValueError(
                f"{name}: V={v} takes g={group} channels per sub-vector, which does not divide "
                f"in_channels={in_channels}; allowed V: {allowed}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.geometry = geometry
        self.config = config
        self.seed = config.seed if seed is None else int(seed)
        self.group = group
        options = {**config.kernel_options(), "subvector_length": v}
        self.kernel: PQKernel = build_kernel(
            config.kernel, in_channels * window, config.hash_length, seed=self.seed, **options
        )
        self.exact = False  # compute the exact digital layer (set while calibrate_pq collects activations)
        self.array = (
            ConventionalArray(
                config, out_channels, self.kernel.n_books * config.hash_length, (1, 1), ConvGeometry()
            )
            if hardware
            else None
        )
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)

    # ----------------------------------------------------------------- the parts
    def weight_4d(self) -> Tensor:
        """The weight as (out, in, kh, kw) (a view for linear layers)."""
        raise NotImplementedError

    @property
    def n_books(self) -> int:
        """Number of codebooks (input channels / g)."""
        return self.kernel.n_books

    @property
    def needs_calibration(self) -> bool:
        """True until the codebooks are calibrated (the flag ``aimc_lsh.nn.prepare_model`` reads)."""
        return not self.kernel.is_calibrated

    def centroid_filters(self) -> Tensor:
        """The centroids as grouped-convolution filters (n_books*K, g, kh, kw)."""
        k = self.kernel
        return k.centroids.reshape(k.n_books * k.hash_length, self.group, *self.kernel_size)

    def table(self) -> Tensor:
        """The (quantised) look-up table (out, n_books*K) of centroid . weight products."""
        return self.kernel.table(self.weight_4d().flatten(1))

    def neg_distances(self, x: Tensor) -> Tensor:
        """``2 x . c - ||c||^2`` (minus distance up to a per-patch constant), (N, H_out, W_out, n_books, K).

        One grouped convolution of ``x`` (N, C, H, W) with ``2 c`` as filters and ``-||c||^2`` as bias;
        computed channels-last, so the centroid axis is the contiguous last one.
        """
        k, g = self.kernel, self.geometry
        x = x.contiguous(memory_format=torch.channels_last)
        bias = -(k.centroids * k.centroids).sum(-1).flatten()
        scores = F.conv2d(x, 2 * self.centroid_filters(), bias, g.stride, g.padding, g.dilation, k.n_books)
        n, _, h, w = scores.shape
        return scores.permute(0, 2, 3, 1).reshape(n, h, w, k.n_books, k.hash_length)

    def codes(self, x: Tensor) -> Tensor:
        """One-hot nearest-centroid codes (N, n_books*K, H_out, W_out) of ``x`` (N, C, H, W), channels-last.

        With autograd on, the values are the hard one-hot and the gradient that of the soft assignment
        ``softmax(-distance / t)``.
        """
        k = self.kernel
        neg = self.neg_distances(x)
        if torch.is_grad_enabled():
            onehot = assignment_ste(neg, k.temperature, dim=-1)
        else:
            onehot = hard_assignment(neg, dim=-1)
        n, h, w = neg.shape[:3]
        return onehot.view(n, h, w, k.n_books * k.hash_length).permute(0, 3, 1, 2)

    def table_rows(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """The table row of every codebook's nearest centroid: ``(rows (N*H*W, n_books), (N, H, W))``.

        Row ``b*K + j`` is centroid j of codebook b: the rows a one-hot code drives.
        """
        k = self.kernel
        neg = self.neg_distances(x)
        offsets = torch.arange(0, k.n_books * k.hash_length, k.hash_length, device=x.device)
        return (neg.argmax(-1) + offsets).view(-1, k.n_books), tuple(neg.shape[:3])

    def _lookup(self, x: Tensor) -> Tensor:
        """Inference with a digital table: sum the selected table entries (no one-hot map)."""
        rows, (n, h, w) = self.table_rows(x)
        out = F.embedding_bag(rows, self.table().t().contiguous(), mode="sum")  # (n*h*w, out)
        return out.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)

    def sample_subvectors(self, x: Tensor, count: int, generator: torch.Generator) -> Tensor:
        """Sub-vectors of ``count`` random output positions of ``x`` (N, C, H, W), as (n_books, m, V).

        Positions are drawn without replacement (all of them when there are fewer than ``count``).
        """
        g, (kh, kw) = self.geometry, self.kernel_size
        h_out = (x.shape[2] + 2 * g.padding[0] - g.dilation[0] * (kh - 1) - 1) // g.stride[0] + 1
        w_out = (x.shape[3] + 2 * g.padding[1] - g.dilation[1] * (kw - 1) - 1) // g.stride[1] + 1
        total = x.shape[0] * h_out * w_out
        pick = torch.randperm(total, generator=generator)[: min(count, total)].to(x.device)
        image, rest = pick // (h_out * w_out), pick % (h_out * w_out)
        rows, cols = (rest // w_out) * g.stride[0], (rest % w_out) * g.stride[1]
        padded = F.pad(x, (g.padding[1], g.padding[1], g.padding[0], g.padding[0]))
        taps = [
            padded[image, :, rows + i * g.dilation[0], cols + j * g.dilation[1]]
            for i in range(kh)
            for j in range(kw)
        ]  # each (m, C)
        patches = torch.stack(taps, dim=-1)  # (m, C, kh*kw): the weight's (c, i, j) order
        return patches.reshape(len(pick), self.n_books, -1).transpose(0, 1)

    # ----------------------------------------------------------------- forward
    def _forward_4d(self, x: Tensor) -> Tensor:
        if not torch.isfinite(x).all():
            raise ValueError(f"{type(self).__name__} received NaN or inf inputs")
        g = self.geometry
        if self.exact:
            return F.conv2d(x, self.weight_4d(), self.bias, g.stride, g.padding, g.dilation)
        self.kernel.check_calibrated(type(self).__name__)
        if self.array is not None:
            out = self.array.lookup(*self.table_rows(x))  # = self.array(self.codes(x)), ~10x cheaper
        elif not torch.is_grad_enabled():
            out = self._lookup(x)  # same values as the one-hot path, ~10x less work
        else:
            out = F.conv2d(self.codes(x), self.table()[:, :, None, None])
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    # ----------------------------------------------------------------- hardware (analog tables only)
    @property
    def hardware_program(self) -> Callable[[int], None]:
        """``hardware_program(seed)``: program the table on the tiles (used by ``aimc_lsh.hardware.program``).

        Only layers with a :class:`HardwareConfig` have it (``hasattr`` is False for digital tables, so
        the hardware API does not mistake them for analog layers).
        """
        if self.array is None:
            raise AttributeError("hardware_program (the table of this layer is digital)")
        return self._program

    @property
    def hardware_drift(self) -> Callable[[float], None]:
        """``hardware_drift(t)``: drift the programmed table (analog tables only; unprogrammed: seed 0)."""
        if self.array is None:
            raise AttributeError("hardware_drift (the table of this layer is digital)")
        return self._drift

    @torch.no_grad()
    def _program(self, seed: int) -> None:
        self.kernel.check_calibrated(type(self).__name__)
        self.array.program(self.table()[:, :, None, None], seed)

    def _drift(self, t_inference: float) -> None:
        if not self.array.programmed:
            self._program(0)
        self.array.drift(t_inference)

    def energy_events(self, path: str, positions: int, table: Any) -> Any:
        """Events of one inference (``aimc_lsh.hardware.count_events`` calls this hook).

        Args:
            path: Module path (the row label).
            positions: Output positions per image (1 for linear layers on vectors).
            table: The :class:`~aimc_lsh.hardware.EnergyTable` (for its conventions).

        Returns:
            A :class:`~aimc_lsh.hardware.LayerEvents`.

        """
        from aimc_lsh.hardware.energy import lut_events

        k = self.kernel
        noise_model = None if self.array is None else self.array.noise_model
        return lut_events(
            path,
            positions,
            n_books=k.n_books,
            centroids=k.hash_length,
            subvector_length=k.subvector_length,
            outputs=self.out_channels,
            config=self.config if self.array is not None else None,
            table=table,
            noise_model=noise_model,
        )

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        k = self.kernel
        where = "digital" if self.array is None else f"analog ({self.config.device.name})"
        bits = "float" if k.table_bits is None else f"int{k.table_bits}"
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"V={k.subvector_length}, books={k.n_books}, K={k.hash_length}, table={bits} {where}, "
            f"calibrated={k.is_calibrated}, "
            f"bias={self.bias is not None}"
        )


def _divisors(n: int, limit: int = 64) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


class PQConv2d(Conv2dFace, PQLayer):
    """A 2-D convolution computed by product quantization (table look-ups), conv-shaped.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (int or pair).
        stride: Stride (int or pair).
        padding: Zero padding (int or pair); string paddings are rejected.
        dilation: Dilation (int or pair).
        groups: Must be 1.
        bias: Whether the layer has a bias.
        config: Kernel (``product_quantization``), K (``hash_length``), V, table bits, hardware.
        seed: Seed of the k-means initialisation (default ``config.seed``).

    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        config: HashConfig | None = None,
        seed: int | None = None,
    ) -> None:
        kernel_size, geometry = conv_geometry("PQConv2d", kernel_size, stride, padding, dilation, groups)
        config = config or HashConfig(kernel="product_quantization", hash_length=16)
        super().__init__(in_channels, out_channels, kernel_size, geometry, bias, config, seed)
        self.weight = new_weight(out_channels, in_channels, *kernel_size)

    @classmethod
    def from_digital(cls, conv: nn.Conv2d, config: HashConfig, seed: int | None = None) -> PQConv2d:
        """A PQ copy of ``conv`` (weights and bias copied; calibrate before use)."""
        check_zero_padding("PQConv2d", conv)
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
            conv.groups, conv.bias is not None, config, seed,
        )  # fmt: skip
        return copy_parameters(layer, conv)


class PQLinear(LinearFace, PQLayer):
    """A linear layer computed by product quantization (run as a 1x1 convolution).

    Args:
        in_features: Input features (a multiple of V, default 4).
        out_features: Output features.
        bias: Whether the layer has a bias.
        config: Kernel (``product_quantization``), K (``hash_length``), V, table bits, hardware.
        seed: Seed of the k-means initialisation (default ``config.seed``).

    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: HashConfig | None = None,
        seed: int | None = None,
    ) -> None:
        config = config or HashConfig(kernel="product_quantization", hash_length=16)
        super().__init__(in_features, out_features, (1, 1), ConvGeometry(), bias, config, seed)
        self.in_features = in_features
        self.out_features = out_features
        self.weight = new_weight(out_features, in_features)

    @classmethod
    def from_digital(cls, linear: nn.Linear, config: HashConfig, seed: int | None = None) -> PQLinear:
        """A PQ copy of ``linear`` (weights and bias copied; calibrate before use)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, config, seed)
        return copy_parameters(layer, linear)
