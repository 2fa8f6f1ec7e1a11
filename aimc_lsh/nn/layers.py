"""Hashed layers: ``HashedConv2d`` and ``HashedLinear``, computed conv-shaped (no unfold).

For every tile pair (i, j) a layer projects its input tile with P_ij reshaped as k convolution
filters, binarizes, matches the codes against the weight codes h_W with a 1x1 convolution and
rescales the estimated cosine by the weight-row norms and the input-patch norms (the channel sum of
x**2, box-summed by a convolution with a ones kernel); with learned comparator thresholds the
references ``t_j ||p_j|| ||x_patch||`` are subtracted before the sign. Every step goes through ``self.stages``
(:class:`aimc_lsh.kernels.HashStages` or a hardware subclass), the single hook where hardware plugs in.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.kernels import (
    ConvGeometry,
    HashConfig,
    HashKernel,
    build_kernel,
    get_kernel_class,
    needs_grad,
    safe_norm,
    sign_ste,
    stacked_tiles_forward,
)
from aimc_lsh.nn.digital import (
    Conv2dFace,
    LinearFace,
    check_finite,
    check_finite_parameters,
    check_zero_padding,
    conv_geometry,
    copy_parameters,
    new_weight,
)

_SEED_STRIDE = 1_000_003
_NAN_WEIGHT_ADVICE = (
    "hashing them would give wrong codes and zero norms without a NaN in the output "
    "(did a training run diverge, or were the weights edited after patching?)"
)


def _same_tensor(kept: Tensor, current: Tensor) -> bool:
    """Whether ``current`` has ``kept``'s shape, dtype, device and values (exactly)."""
    return (
        kept.shape == current.shape
        and kept.dtype == current.dtype
        and kept.device == current.device
        and torch.equal(kept, current)
    )


def split_range(size: int, tile_size: int | None) -> list[tuple[int, int]]:
    """Split ``range(size)`` into consecutive ``(start, stop)`` tiles of at most ``tile_size``.

    >>> split_range(10, 4)
    [(0, 4), (4, 8), (8, 10)]
    >>> split_range(10, None)
    [(0, 10)]
    """
    if tile_size is None or tile_size >= size:
        return [(0, size)]
    return [(start, min(start + tile_size, size)) for start in range(0, size, tile_size)]


class HashedLayer(nn.Module):
    """Common machinery of hashed layers, on 4-D (N, C, H, W) tensors.

    Args:
        in_channels: Input channels (features for linear layers).
        out_channels: Output channels (features).
        kernel_size: Spatial kernel size (1, 1 for linear layers).
        geometry: Stride, padding and dilation.
        bias: Whether the layer has a bias.
        config: How the layer is hashed (a :class:`HashConfig` or a hardware subclass of it).
        seed: Seed of the projections; defaults to ``config.seed``. Tile pair ``p`` uses
            ``seed * 1_000_003 + p``.

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
        if not isinstance(config, HashConfig):
            raise TypeError(f"config must be a HashConfig (or subclass), got {type(config).__name__}")
        for what, size in (("input", in_channels), ("output", out_channels)):
            if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size < 1:
                name = type(self).__name__
                raise ValueError(
                    f"{name} needs a positive int number of {what} channels/features, got {size!r}"
                )
        if not issubclass(get_kernel_class(config.kernel), HashKernel):
            raise ValueError(
                f"{type(self).__name__} needs a SimHash kernel, got kernel={config.kernel!r}; "
                "aimc_lsh.nn.patch_model picks the layers of other kernels (e.g. PQConv2d / PQLinear)"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.geometry = geometry
        self.config = config
        self.seed = config.seed if seed is None else int(seed)
        self.in_tiles = split_range(in_channels, config.input_tile_size)
        self.out_tiles = split_range(out_channels, config.output_tile_size)
        kh, kw = kernel_size
        kernels = []
        for i, (c0, c1) in enumerate(self.in_tiles):
            for j in range(len(self.out_tiles)):
                kernels.append(
                    build_kernel(
                        config.kernel,
                        (c1 - c0) * kh * kw,
                        config.hash_length,
                        seed=self.kernel_seed(i, j),
                        **config.kernel_options(),
                    )
                )
        self.kernels = nn.ModuleList(kernels)
        self.stages = config.build_stages()
        # tile pair -> (weight tile, P, codes, norms) kept by _codes_and_norms for inference
        self._inference_cache: dict[tuple[int, int], tuple[Tensor, Tensor, Tensor, Tensor]] = {}
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        if config.center_inputs:  # the reference c subtracted from every input channel before hashing
            self.register_buffer("input_center", torch.zeros(in_channels))
        else:
            self.input_center: Tensor | None = None

    # ----------------------------------------------------------------- what programming needs
    def weight_4d(self) -> Tensor:
        """The weight as (out, in, kh, kw) (a view for linear layers)."""
        raise NotImplementedError

    def tile_pairs(self) -> list[tuple[int, int, slice, slice]]:
        """Every tile pair as ``(i, j, input_channel_slice, output_channel_slice)``."""
        return [
            (i, j, slice(c0, c1), slice(o0, o1))
            for i, (c0, c1) in enumerate(self.in_tiles)
            for j, (o0, o1) in enumerate(self.out_tiles)
        ]

    def kernel_seed(self, i: int, j: int) -> int:
        """Seed the projection of tile pair (i, j) is drawn from (``seed * 1_000_003 + pair``)."""
        return (self.seed * _SEED_STRIDE + i * len(self.out_tiles) + j) % (2**63)

    def kernel(self, i: int, j: int) -> nn.Module:
        """The kernel (own P) of tile pair (i, j)."""
        return self.kernels[i * len(self.out_tiles) + j]

    def weight_tile(self, i: int, j: int) -> Tensor:
        """Weight rows of tile pair (i, j), flattened to (out_j, C_i * kh * kw)."""
        (c0, c1), (o0, o1) = self.in_tiles[i], self.out_tiles[j]
        return self.weight_4d()[o0:o1, c0:c1].flatten(1)

    def projection_filters(self, i: int, j: int) -> Tensor:
        """P of tile pair (i, j) reshaped to k convolution filters (k, C_i, kh, kw)."""
        c0, c1 = self.in_tiles[i]
        kernel = self.kernel(i, j)
        return kernel.projection.view(kernel.hash_length, c1 - c0, *self.kernel_size)

    def weight_codes(self, i: int, j: int) -> Tensor:
        """Weight codes h_W = sign(W_ij P_ij^T) of shape (out_j, k), straight-through in training."""
        kernel = self.kernel(i, j)
        return sign_ste(kernel.project(self.weight_tile(i, j)), kernel.ste)

    def weight_norms(self, i: int, j: int) -> Tensor:
        """Row norms of the weight tile (out_j,)."""
        return safe_norm(self.weight_tile(i, j), dim=1)

    def _codes_and_norms(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """:meth:`weight_codes` and :meth:`weight_norms` of tile pair (i, j), as the forward pass uses them.

        In inference (no autograd on the weight or P) they are kept with copies of the weight tile and
        P and reused while both still equal their copies exactly (one comparison pass over each instead
        of projecting the weights at every forward; any change, in place or through ``.data``, is seen).
        """
        weight, projection = self.weight_tile(i, j), self.kernel(i, j).projection
        if needs_grad(weight, projection):
            return self.weight_codes(i, j), self.weight_norms(i, j)
        kept = self._inference_cache.get((i, j))
        if kept is not None and _same_tensor(kept[0], weight) and _same_tensor(kept[1], projection):
            return kept[2], kept[3]
        codes, norms = self.weight_codes(i, j), self.weight_norms(i, j)
        self._inference_cache[(i, j)] = (weight.detach().clone(), projection.detach().clone(), codes, norms)
        return codes, norms

    def patch_norms(self, x_tile: Tensor) -> Tensor:
        """Norms of every input patch of ``x_tile`` (N, C_i, H, W) -> (N, 1, H_out, W_out).

        The squares are summed over channels first, then over each patch window by a convolution
        of that one-channel map with a (1, 1, kh, kw) ones kernel in the layer's geometry
        (:func:`aimc_lsh.kernels.patch_norms`); the forward pass asks ``self.stages`` for them.
        """
        return self.stages.patch_norms(x_tile, self.kernel_size, self.geometry)

    def center_contribution(self, center_map: Tensor) -> Tensor:
        """Exact output (1, out, H_out, W_out) of the weights on the constant map of input references.

        The digital term :attr:`HashConfig.center_inputs` adds back: the weights convolved, in the layer's
        geometry and with its zero padding, with ``center_map`` (1, C, H, W); differentiable in the weights.
        """
        g = self.geometry
        return F.conv2d(center_map, self.weight_4d(), None, g.stride, g.padding, g.dilation)

    # ----------------------------------------------------------------- forward
    def _forward_4d(self, x: Tensor) -> Tensor:
        check_finite(x, type(self).__name__)
        if not bool(torch.isfinite(self.weight.detach().sum())):  # one pass over the weights when finite
            check_finite_parameters(self, type(self).__name__, _NAN_WEIGHT_ADVICE)
        reference = None
        if self.input_center is not None:  # conv(x) = conv(x - c) + conv(c), both zero-padded
            center = self.input_center.to(x.dtype).view(1, -1, 1, 1)
            reference = self.center_contribution(center.expand(1, -1, *x.shape[2:]))
            x = x - center
        # Channels-last makes the projection ~2x and the 1x1 code match ~10x faster on CPU (measured).
        x = x.contiguous(memory_format=torch.channels_last)
        training = needs_grad(x, self.weight, *(kernel.projection for kernel in self.kernels))
        if training and self._can_stack_tiles():  # inference keeps the native per-tile Hamming stage
            out = self._stacked_tiles_output(x)
        else:
            out = self._tile_by_tile_output(x)
        if reference is not None:
            out = out + reference
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out

    def _can_stack_tiles(self) -> bool:
        """Whether all input tiles can run at once (:func:`aimc_lsh.kernels.stacked_tiles_forward`).

        They can with several equal input tiles, one output tile, stages none of whose steps a hardware
        model replaced (those go tile by tile, each tile's stage seeing its own index), no comparator
        thresholds and kernels that project as ``v @ P.T``. Only training takes this path: in inference
        the per-tile native Hamming stage is faster.
        """
        return (
            len(self.in_tiles) > 1
            and len({c1 - c0 for c0, c1 in self.in_tiles}) == 1
            and len(self.out_tiles) == 1
            and self.stages.steps_are_ideal()
            and all(
                type(kernel).project is HashKernel.project and kernel.comparator_shift() is None
                for kernel in self.kernels
            )
        )

    def _stacked_tiles_output(self, x: Tensor) -> Tensor:
        """The layer's hashed output (before bias) with all input tiles at once."""
        projections = torch.stack([kernel.projection for kernel in self.kernels])
        weight_ste = self.kernels[0].ste
        return stacked_tiles_forward(
            x, self.weight_4d(), projections, self.geometry, self.stages.ste, weight_ste
        )

    def _tile_by_tile_output(self, x: Tensor) -> Tensor:
        """The layer's hashed output (before bias), one ``self.stages`` call per step and tile pair."""
        stages, n_out = self.stages, len(self.out_tiles)
        outputs: list[Tensor | None] = [None] * n_out
        for i, (c0, c1) in enumerate(self.in_tiles):
            x_tile = x if len(self.in_tiles) == 1 else x[:, c0:c1]
            x_norm = self.patch_norms(x_tile)
            for j in range(n_out):
                tile = (i, j)
                pre = stages.project(x_tile, self.projection_filters(i, j), self.geometry, tile)
                shift = self.kernel(i, j).comparator_shift()
                if shift is not None:
                    pre = stages.apply_thresholds(pre, x_norm, shift, tile)
                codes, w_norm = self._codes_and_norms(i, j)
                y = stages.match_and_reconstruct(pre, codes, w_norm, x_norm, tile)
                outputs[j] = y if outputs[j] is None else outputs[j] + y
        return outputs[0] if n_out == 1 else torch.cat(outputs, dim=1)

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        c = self.config
        return (
            f"{self.in_channels}, {self.out_channels}, kernel={c.kernel}, k={c.hash_length}, "
            f"tiles={len(self.in_tiles)}x{len(self.out_tiles)}, bias={self.bias is not None}"
        )


class HashedConv2d(Conv2dFace, HashedLayer):
    """A 2-D convolution whose dot products are SimHash estimates.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel size (int or pair).
        stride: Stride (int or pair).
        padding: Zero padding (int or pair); string paddings such as ``"same"`` are rejected.
        dilation: Dilation (int or pair).
        groups: Must be 1 (grouped and depthwise convolutions are not supported).
        bias: Whether the layer has a bias.
        config: How the layer is hashed.
        seed: Seed of the projections (defaults to ``config.seed``).

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
        kernel_size, geometry = conv_geometry("HashedConv2d", kernel_size, stride, padding, dilation, groups)
        super().__init__(in_channels, out_channels, kernel_size, geometry, bias, config or HashConfig(), seed)
        self.weight = new_weight(out_channels, in_channels, *kernel_size)

    @classmethod
    def from_digital(cls, conv: nn.Conv2d, config: HashConfig, seed: int | None = None) -> HashedConv2d:
        """Build a hashed copy of ``conv`` (weights and bias copied)."""
        check_zero_padding("HashedConv2d", conv)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            config,
            seed,
        )
        return copy_parameters(layer, conv)


class HashedLinear(LinearFace, HashedLayer):
    """A linear layer whose dot products are SimHash estimates (run as a 1x1 convolution).

    Args:
        in_features: Input features.
        out_features: Output features.
        bias: Whether the layer has a bias.
        config: How the layer is hashed.
        seed: Seed of the projections (defaults to ``config.seed``).

    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        config: HashConfig | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            in_features, out_features, (1, 1), ConvGeometry(), bias, config or HashConfig(), seed
        )
        self.in_features = in_features
        self.out_features = out_features
        self.weight = new_weight(out_features, in_features)

    @classmethod
    def from_digital(cls, linear: nn.Linear, config: HashConfig, seed: int | None = None) -> HashedLinear:
        """Build a hashed copy of ``linear`` (weights and bias copied)."""
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None, config, seed)
        return copy_parameters(layer, linear)
