"""Conventional AIMC (real weights on tiles, n-bit ADC): the fast, convolution-shaped simulation.

This is the baseline every hashed placement is compared with. It computes what aihwkit's
``convert_to_analog`` model computes with :func:`aimc_lsh.hardware.reference.aihwkit_conventional`
(``weight_scaling_omega = 1``, per-input abs-max noise management, the device's noise model, global
drift compensation, our ADC), but with one convolution per row tile instead of aihwkit's
unfold-and-matmul per call:

* the weight (out, C, kh, kw), flattened to (out, C*kh*kw), is split into tiles (aihwkit's rule); each
  tile is scaled to abs-max 1 (the digital mapping scale), programmed and drifted with aihwkit's noise
  model (:mod:`aimc_lsh.hardware.programming`);
* a row tile sees the patch elements of its inputs; aihwkit scales every input vector by its abs-max
  (noise management), which here is a max-pool of ``|x|`` -- the same number for every patch;
* the tile's analog output ``conv(x, W_tile) / absmax`` gets per-read weight noise
  (``read_noise_std * ||x_patch|| / absmax``) and ADC noise, is converted by the ADC (full scale 12 by
  default, aihwkit's ``out_bound``), and multiplied back by the abs-max, the drift-compensation factor
  and the mapping scale; row tiles are summed digitally.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.hardware.periphery import pooled_noise
from aimc_lsh.hardware.programming import TilePlan, derive_seed, drift_matrix, global_readouts, program_matrix
from aimc_lsh.kernels import ConvGeometry

if TYPE_CHECKING:
    from aimc_lsh.hardware.config import HardwareConfig


class ConventionalArray(nn.Module):
    """The analog tiles of one conventional layer (weights programmed with the device physics).

    Args:
        config: Hardware configuration (device, ADC, tile size, drift compensation).
        out_channels: Outputs of the layer.
        in_channels: Input channels (features for linear layers).
        kernel_size: Spatial kernel size ((1, 1) for linear layers).
        geometry: Stride, padding and dilation.

    """

    def __init__(
        self,
        config: HardwareConfig,
        out_channels: int,
        in_channels: int,
        kernel_size: tuple[int, int],
        geometry: ConvGeometry,
    ) -> None:
        super().__init__()
        from aimc_lsh.hardware.config import CONVENTIONAL_FULL_SCALE

        self.config = config
        self.adc = config.effective_adc
        self.full_scale = CONVENTIONAL_FULL_SCALE if self.adc.full_scale is None else self.adc.full_scale
        self.read_noise_std = config.device.read_noise_std
        self.drift_compensation = config.effective_drift_compensation
        self.noise_model = config.device.build_noise_model()
        self.kernel_size = kernel_size
        self.geometry = geometry
        self.window = kernel_size[0] * kernel_size[1]
        self.plan = TilePlan.for_matrix(out_channels, in_channels * self.window, config.tile)
        self.seed: int | None = None
        self.t_inference: float | None = None
        self.blocks: list[tuple[int, int, int, int, Tensor, Tensor]] = []  # (c0, c1, i0, i1, filters, mask)
        self.register_buffer("scale", torch.ones(len(self.plan.row_splits), out_channels), persistent=False)
        self.register_buffer("alpha", torch.ones(len(self.plan.row_splits), out_channels), persistent=False)
        self._programmed: Tensor | None = None
        self._params: dict = {}
        self._baseline: dict = {}
        self._generator: torch.Generator | None = None

    @property
    def programmed(self) -> bool:
        """Whether :meth:`program` has run."""
        return self._programmed is not None

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        super()._apply(fn, recurse)
        self.blocks = [(c0, c1, i0, i1, fn(w), fn(m)) for c0, c1, i0, i1, w, m in self.blocks]
        return self

    # ------------------------------------------------------------------ programming
    @torch.no_grad()
    def program(self, weight: Tensor, seed: int) -> None:
        """Program the tiles with ``weight`` (out, C, kh, kw) at t = 0, drawing from ``seed``."""
        flat = weight.detach().reshape(weight.shape[0], -1).float().cpu()
        scales = {}
        normalised = torch.empty_like(flat)
        for block, out_slice, in_slice in self.plan.blocks():
            top = flat[out_slice, in_slice].abs().max().clamp(min=1e-12)
            scales[block] = float(top)
            normalised[out_slice, in_slice] = flat[out_slice, in_slice] / top
        self.scale = self.plan.per_output(scales).to(weight.device, weight.dtype)
        self._programmed, self._params = program_matrix(self.noise_model, normalised, self.plan, seed)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(derive_seed(seed, "reads"))
        if self.drift_compensation:
            self._baseline = self._readouts(self._programmed, ("baseline",))
        self.alpha = torch.ones_like(self.scale)
        self._set_blocks(self._programmed, weight.shape, weight.device, weight.dtype)
        self.t_inference = None

    def _readouts(self, weights: Tensor, tag: tuple) -> dict:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, "readout", *tag))
        noise, reference = self.read_noise_std, self.config.effective_drift_reference
        return global_readouts(weights, self.plan, self.adc, self.full_scale, gen, noise, reference)

    def _set_blocks(self, flat: Tensor, shape: torch.Size, device: torch.device, dtype: torch.dtype) -> None:
        out, channels = shape[0], shape[1]
        filters = flat.reshape(out, channels, *self.kernel_size).to(device, dtype)
        window = self.window
        blocks = []
        for i0, i1 in self.plan.row_splits:
            c0, c1 = i0 // window, -(-i1 // window)
            mask = torch.zeros((c1 - c0) * window, device=device, dtype=dtype)
            mask[i0 - c0 * window : i1 - c0 * window] = 1
            part = filters[:, c0:c1].reshape(out, -1) * mask
            blocks.append(
                (
                    c0, c1, i0, i1,
                    part.view(out, c1 - c0, *self.kernel_size).contiguous(memory_format=torch.channels_last),
                    mask.view(1, c1 - c0, *self.kernel_size),
                )
            )  # fmt: skip
        self.blocks = blocks
        self._shape = shape

    @torch.no_grad()
    def drift(self, t_inference: float) -> None:
        """Drift the programmed tiles to ``t_inference`` seconds (and compensate, if configured)."""
        if not self.programmed:
            raise RuntimeError("program the layer before drifting it (aimc_lsh.hardware.program)")
        t = self.config.device.check_time(t_inference)
        drifted = drift_matrix(self.noise_model, self._programmed, self._params, self.plan, t, self.seed)
        if self.drift_compensation:
            current = self._readouts(drifted, ("drift", t))
            alpha = {b: float(self._baseline[b] / current[b]) for b in current}
            self.alpha = self.plan.per_output(alpha).to(self.scale)
        self._set_blocks(drifted, self._shape, self.scale.device, self.scale.dtype)
        self.t_inference = t

    # ------------------------------------------------------------------ forward
    def _block_absmax(self, x: Tensor, c0: int, c1: int, i0: int, i1: int) -> Tensor:
        """Abs-max of every patch over the block's inputs (aihwkit's noise management), (N, 1, H, W)."""
        g, (kh, kw) = self.geometry, self.kernel_size
        window = self.window
        if i0 == c0 * window and i1 == c1 * window:
            a = x[:, c0:c1].abs().amax(dim=1, keepdim=True)
            a = F.pad(a, (g.padding[1], g.padding[1], g.padding[0], g.padding[0]))
            return F.max_pool2d(a, (kh, kw), g.stride, 0, g.dilation)
        patches = F.unfold(x[:, c0:c1], (kh, kw), g.dilation, g.padding, g.stride)
        a = patches[:, i0 - c0 * window : i1 - c0 * window].abs().amax(dim=1, keepdim=True)
        h, w = _out_size(x, self.kernel_size, g)
        return a.view(x.shape[0], 1, h, w)

    def _check_programmed(self) -> None:
        if not self.programmed:
            raise RuntimeError(
                "this conventional analog layer is not programmed: "
                "call aimc_lsh.hardware.program(model, seed)"
            )

    def forward(self, x: Tensor) -> Tensor:
        """The layer's analog output (without bias) for ``x`` (N, C, H, W)."""
        self._check_programmed()
        g = self.geometry
        squares = x * x if self.read_noise_std > 0 else None
        total = None
        for b, (c0, c1, i0, i1, filters, mask) in enumerate(self.blocks):
            whole = (c0, c1) == (0, x.shape[1])
            x_b = x if whole else x[:, c0:c1]
            absmax = self._block_absmax(x, c0, c1, i0, i1)
            raw = F.conv2d(x_b, filters, None, g.stride, g.padding, g.dilation)
            norms = None
            if squares is not None:
                sq = squares if whole else squares[:, c0:c1]
                norms = F.conv2d(sq, mask, None, g.stride, g.padding, g.dilation).clamp_(min=0).sqrt_()
            out = self._read_out(b, raw, absmax, norms)
            total = out if total is None else total.add_(out)
        return total

    def lookup(self, rows: Tensor, size: tuple[int, int, int]) -> Tensor:
        """The output for one-hot inputs given by their active rows, without building the one-hot map.

        Equals :meth:`forward` on the 0/1 input with ones at ``rows`` (same noise draws, same ADC), for
        arrays of 1x1 "convolutions" (look-up tables whose word lines are driven by one-hot codes).

        Args:
            rows: Active input rows, (N*H*W, A) int64, row-major over (N, H, W).
            size: (N, H, W).

        Returns:
            (N, out, H, W), channels-last.

        """
        self._check_programmed()
        if self.window != 1:
            raise ValueError(f"lookup needs a 1x1 array, this one has a {self.kernel_size} kernel")
        n, h, w = size
        total = None
        for b, (c0, c1, _i0, _i1, filters, _mask) in enumerate(self.blocks):
            inside = (rows >= c0) & (rows < c1)
            entries = filters.new_zeros(self._shape[1] + 1, filters.shape[0])  # last row: outside the block
            entries[c0:c1] = filters.reshape(filters.shape[0], c1 - c0).t()
            local = torch.where(inside, rows, self._shape[1])
            raw = F.embedding_bag(local, entries, mode="sum").view(n, h, w, -1).permute(0, 3, 1, 2)
            count = inside.sum(1).to(filters.dtype).view(n, 1, h, w)
            absmax = (count > 0).to(filters.dtype)  # a 0/1 input's abs-max
            norms = count.sqrt() if self.read_noise_std > 0 else None
            out = self._read_out(b, raw, absmax, norms)
            total = out if total is None else total.add_(out)
        return total

    def _read_out(self, block: int, raw: Tensor, absmax: Tensor, norms: Tensor | None) -> Tensor:
        """Noise, ADC and rescaling of one row tile's analog output ``raw`` = conv(x, programmed tile).

        Args:
            block: Row-tile index.
            raw: (N, out, H, W) products with the programmed (normalised) weights; consumed in place.
            absmax: (N, 1, H, W) abs-max of every patch over the tile's inputs (noise management).
            norms: (N, 1, H, W) L2 norms of the patches over the tile's inputs (for read noise), or None.

        """
        adc, bits = self.adc, self.adc.bits
        half = 2 ** (bits - 1) if bits is not None else 1
        delta = self.full_scale / half if bits is not None else 1.0
        absmax = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        step = absmax * delta  # one ADC step in the layer's output units, per patch
        # Analog read-out in ADC steps: conv(x / absmax, W_tile) / delta.
        out = raw.div_(step)
        std: Tensor | float = adc.noise_std / delta
        if norms is not None:
            std = (std**2 + (self.read_noise_std * norms / step) ** 2).sqrt_()
        if isinstance(std, Tensor) or std > 0:
            noise = pooled_noise(out, self._generator)
            if isinstance(std, Tensor):
                out.addcmul_(noise, std)
            else:
                out.add_(noise, alpha=std)
        if bits is not None:
            out.floor_()
            if adc.clip:
                out.clamp_(-half, half - 1)
            out.add_(0.5)
        return out.mul_(step).mul_((self.alpha[block] * self.scale[block]).view(1, -1, 1, 1))


def _out_size(x: Tensor, kernel: tuple[int, int], g: ConvGeometry) -> tuple[int, int]:
    h = (x.shape[2] + 2 * g.padding[0] - g.dilation[0] * (kernel[0] - 1) - 1) // g.stride[0] + 1
    w = (x.shape[3] + 2 * g.padding[1] - g.dilation[1] * (kernel[1] - 1) - 1) // g.stride[1] + 1
    return h, w
