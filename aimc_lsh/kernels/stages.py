"""The four steps of a hashed layer, ideal and digital: project, binarize, match, reconstruct.

Hashed layers (``aimc_lsh.nn``) call these methods for every tile pair; hardware models subclass
:class:`HashStages` to replace a step by its analog counterpart (programmed conductances, sense
amplifiers, ADCs). Linear layers run as 1x1 convolutions on (N, d, 1, 1) inputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.kernels.base import cosine_from_similarity, safe_sqrt
from aimc_lsh.kernels.hamming import hamming_cosine, hamming_weights, native_hamming_available
from aimc_lsh.kernels.ste import sign_ste

TilePair = tuple[int, int]
"""Index ``(i, j)`` of an input tile i and an output tile j of a layer."""

_FUSED_STEPS = ("binarize", "match", "reconstruct")
"""The steps :meth:`HashStages.match_and_reconstruct` may run as one native pass (when none is overridden)."""

_ALL_STEPS = (
    "patch_norms", "project", "apply_thresholds", "binarize", "match", "reconstruct", "match_and_reconstruct"
)  # fmt: skip
"""Every step a hardware subclass may replace (see :meth:`HashStages.steps_are_ideal`)."""


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding and dilation of a convolution (both spatial dimensions)."""

    stride: tuple[int, int] = (1, 1)
    """Stride (rows, columns)."""

    padding: tuple[int, int] = (0, 0)
    """Zero padding (rows, columns)."""

    dilation: tuple[int, int] = (1, 1)
    """Dilation (rows, columns)."""


class HashStages(nn.Module):
    """Ideal digital implementation of the hashed-layer pipeline.

    In inference (no gradient needed) :meth:`binarize` and :meth:`reconstruct` overwrite their first
    argument: the layer hands them fresh tensors it does not reuse (and scales the new tensor that
    :meth:`match` returns in place), so no k-channel or output-sized temporary is allocated twice.

    Args:
        ste: Straight-through estimator for the sign in :meth:`binarize`.

    """

    def __init__(self, ste: str = "identity") -> None:
        super().__init__()
        self.ste = ste
        # tile pair -> (codes, w_norm, hamming_weights of them) for the native stage
        self._hamming_weights: dict[TilePair, tuple[Tensor, Tensor, tuple[Tensor, Tensor]]] = {}

    def steps_are_ideal(self) -> bool:
        """Whether every step is this class's own (no subclass replaced one, e.g. by a noisy analog stage).

        Then the layers may compute all their input tiles at once
        (:func:`aimc_lsh.kernels.stacked_tiles_forward`) instead of one call per step and tile.
        """
        return self._own_steps(_ALL_STEPS)

    def _own_steps(self, steps: tuple[str, ...]) -> bool:
        """Whether none of ``steps`` is replaced by a subclass."""
        return all(getattr(type(self), step) is getattr(HashStages, step) for step in steps)

    def patch_norms(self, x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry) -> Tensor:
        """Norms ``||x_patch||`` of every input patch, computed once per input tile for :meth:`reconstruct`.

        The layer calls this before :meth:`project` on the same tensor ``x``; hardware stages may keep
        the result for their comparators (see :func:`patch_norms`).

        Args:
            x: Input tile (N, C_i, H, W).
            kernel_size: The layer's (kh, kw).
            geometry: The layer's convolution geometry.

        Returns:
            Patch norms (N, 1, H_out, W_out).

        """
        return patch_norms(x, kernel_size, geometry)

    def project(self, x: Tensor, filters: Tensor, geometry: ConvGeometry, tile: TilePair) -> Tensor:
        """Project every input patch on the k rows of P: a convolution with P as k filters.

        Args:
            x: Input tile (N, C_i, H, W).
            filters: P reshaped to (k, C_i, kh, kw).
            geometry: The layer's convolution geometry.
            tile: Tile pair index.

        Returns:
            Pre-activations (N, k, H_out, W_out).

        """
        return F.conv2d(x, filters, None, geometry.stride, geometry.padding, geometry.dilation)

    def apply_thresholds(self, pre: Tensor, x_norm: Tensor, shift: Tensor, tile: TilePair) -> Tensor:
        """Subtract the comparator references ``||x_patch|| shift_j`` from the projections (before binarize).

        Used by layers whose kernel learns comparator thresholds (``HashKernel.comparator_shift``).
        In inference the result overwrites ``pre``.

        Args:
            pre: Projections (N, k, H, W) as :meth:`project` returned them.
            x_norm: Patch norms (N, 1, H, W).
            shift: Reference per unit patch norm for every bit (k,), in the units of ``P x``.
            tile: Tile pair index.

        """
        if needs_grad(pre, x_norm, shift):
            return _SubtractReference.apply(pre, x_norm, shift)
        return pre.addcmul_(x_norm, shift.view(1, -1, 1, 1), value=-1.0)

    def binarize(self, pre: Tensor, tile: TilePair) -> Tensor:
        """Sign of the pre-activations (+-1), straight-through in training.

        In inference the signs overwrite ``pre`` (one memory pass, no new k-channel tensor).
        """
        if needs_grad(pre):
            return sign_ste(pre, self.ste)
        return torch.copysign(pre.new_ones(()), pre, out=pre)

    def match(self, h_x: Tensor, codes: Tensor, tile: TilePair) -> Tensor:
        """Code agreement ``S = h_W . h_x`` (in [-k, k]) for every output and position.

        Args:
            h_x: Input codes (N, k, H, W).
            codes: Weight codes h_W (out_j, k).
            tile: Tile pair index.

        Returns:
            ``S`` of shape (N, out_j, H, W), a new tensor.

        """
        return F.conv2d(h_x, codes[:, :, None, None])

    def match_and_reconstruct(
        self, pre: Tensor, codes: Tensor, w_norm: Tensor, x_norm: Tensor, tile: TilePair
    ) -> Tensor:
        """Binarize, match and reconstruct: ``cos(pi/2 (1 - S/k)) ||w|| ||x_patch||`` from the projections.

        Runs :meth:`binarize`, :meth:`match` and :meth:`reconstruct` (on ``S / k``) in turn, except in
        inference on float32 CPU tensors with none of the three replaced by a subclass: there the
        bit-packed native Hamming stage computes the same numbers in one pass
        (:func:`aimc_lsh.kernels.hamming_cosine`; it falls back to the three steps without a C compiler).

        Args:
            pre: Projections (N, k, H, W); overwritten in inference.
            codes: Weight codes h_W (out_j, k).
            w_norm: Weight row norms (out_j,).
            x_norm: Patch norms (N, 1, H, W).
            tile: Tile pair index.

        Returns:
            The tile pair's output (N, out_j, H, W), a new tensor.

        """
        if self._native_hamming_applies(pre, codes, w_norm, x_norm):
            kept = self._hamming_weights.get(tile)
            if kept is None or kept[0] is not codes or kept[1] is not w_norm:  # layers reuse them
                kept = (codes, w_norm, hamming_weights(codes, w_norm))
                self._hamming_weights[tile] = kept
            return hamming_cosine(pre, codes, w_norm, x_norm, weights=kept[2])
        hash_length = codes.shape[1]
        agreement = self.match(self.binarize(pre, tile), codes, tile)
        if needs_grad(agreement, w_norm, x_norm):
            similarity = agreement / hash_length
        else:  # inference: no new output-sized tensor (reconstruct overwrites it too)
            similarity = agreement.div_(hash_length)
        return self.reconstruct(similarity, w_norm, x_norm, tile)

    def _native_hamming_applies(self, *tensors: Tensor) -> bool:
        """Inference, float32 CPU tensors, the ideal steps (none overridden), the native stage available."""
        if not self._own_steps(_FUSED_STEPS) or needs_grad(*tensors):
            return False
        if any(t.dtype != torch.float32 or t.device.type != "cpu" for t in tensors):
            return False
        return native_hamming_available()

    def reconstruct(self, similarity: Tensor, w_norm: Tensor, x_norm: Tensor, tile: TilePair) -> Tensor:
        """Rescale the estimated cosine by the norms: ``cos(pi/2 (1 - s)) ||w|| ||x_patch||``.

        In inference the result overwrites ``similarity``.

        Args:
            similarity: ``s = S / k`` (N, out_j, H, W).
            w_norm: Weight row norms (out_j,).
            x_norm: Patch norms (N, 1, H, W).
            tile: Tile pair index.

        """
        if needs_grad(similarity, w_norm, x_norm):
            return cosine_from_similarity(similarity) * w_norm.view(1, -1, 1, 1) * x_norm
        # Inference: cos(pi/2 (1 - s)) = sin(pi/2 s), in place (equal up to rounding).
        out = similarity.mul_(0.5 * math.pi).sin_()
        return out.mul_(w_norm.view(1, -1, 1, 1)).mul_(x_norm)


class _SubtractReference(torch.autograd.Function):
    """``pre - x_norm * shift`` for (N, k, H, W), (N, 1, H, W) and (k,), with matrix-product gradients.

    Autograd's own backward of the broadcast product materialises an (N, k, H, W) tensor per input and
    reduces it; here the two reductions are products of the (N*H*W, k) gradient view with ``shift`` and
    ``x_norm`` (measured: the thresholded training step of a k = 256 layer about 1.8x cheaper).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, pre: Tensor, x_norm: Tensor, shift: Tensor
    ) -> Tensor:
        ctx.save_for_backward(x_norm, shift)
        return torch.addcmul(pre, x_norm, shift.view(1, -1, 1, 1), value=-1.0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:
        x_norm, shift = ctx.saved_tensors
        n, k, height, width = grad.shape
        rows = grad.permute(0, 2, 3, 1).reshape(-1, k)  # a view for channels-last gradients
        grad_norm = grad_shift = None
        if ctx.needs_input_grad[1]:
            grad_norm = (rows @ shift).neg_().view(n, height, width, 1).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[2]:
            grad_shift = (rows.T @ x_norm.permute(0, 2, 3, 1).reshape(-1)).neg_()
        return grad, grad_norm, grad_shift


def patch_norms(x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry, groups: int = 1) -> Tensor:
    """Euclidean norm of every patch of ``x`` (N, C, H, W) -> (N, groups, H_out, W_out).

    The squares are summed over channels first, then over each patch window by a convolution of that
    one-channel map with a (1, 1, kh, kw) ones kernel in the given geometry (zero padding adds
    nothing, as in the patches themselves): exact for any stride, padding and dilation. The square
    root is :func:`safe_sqrt` (zero patches give 0 with a zero gradient). With ``groups`` > 1 the
    channels are split into that many equal consecutive groups (input tiles), each with its own norms.

    >>> x = torch.tensor([[[[3.0, 4.0]]]])  # one channel, a 1 x 2 image
    >>> patch_norms(x, (1, 2), ConvGeometry())
    tensor([[[[5.]]]])

    Raises:
        ValueError: When ``groups`` does not divide the channels.

    """
    if groups < 1 or x.shape[1] % groups:
        raise ValueError(f"patch_norms: groups must divide the {x.shape[1]} channels, got {groups}")
    squares = (x * x).sum(dim=1, keepdim=True) if groups == 1 else (x * x).unflatten(1, (groups, -1)).sum(2)
    if kernel_size == (1, 1) and geometry.stride == (1, 1) and geometry.padding == (0, 0):
        return safe_sqrt(squares)
    ones = squares.new_ones(groups, 1, *kernel_size)
    window_sums = F.conv2d(squares, ones, None, geometry.stride, geometry.padding, geometry.dilation, groups)
    return safe_sqrt(window_sums)


def needs_grad(*tensors: Tensor) -> bool:
    """Whether autograd records an operation on any of ``tensors`` (False: the inference fast paths apply)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
