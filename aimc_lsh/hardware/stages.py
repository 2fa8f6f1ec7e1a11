"""``AnalogHashStages``: the hashed-layer pipeline on simulated analog tiles (the fast path).

It implements the stage hook of ``docs/architecture.md`` (``project``, ``binarize``, ``match``,
``reconstruct``) for one hashed layer:

* **codes on the array** -- h_W (+-1) programmed as conductances (aihwkit's converter and noise model,
  :mod:`aimc_lsh.hardware.programming`); the match is a 1x1 convolution of h_x with the programmed,
  drifted weights; per-read weight noise (exactly equivalent, for +-1 inputs, to Gaussian output noise
  of std ``read_noise_std * sqrt(rows)``) and the ADC act on every read; k larger than the tile's rows
  is split and the partial results are converted, compensated and summed digitally.
* **projection on the array** -- P programmed on its own tile (same device); sense amplifiers with a
  static per-column offset (drawn at programming), dynamic noise and a metastability band decide h_x;
  per-read weight noise of the projection tile enters the comparator as output noise of std
  ``read_noise_std * tile_scale * ||x_patch||`` (exact for additive per-cell noise). A projection with
  more inputs than a tile has rows is split; its partial sums are read by the ADC and the sign of their
  digital sum is exact (no sense amplifier). The Hamming match against pre-stored h_W is digital.
* the reconstruction optionally quantises the weight-row and patch norms.

Programming noise, drift and accumulated 1/f noise are applied to the weights once per
:meth:`program_layer` / :meth:`drift_layer`; each forward only adds cheap per-read noise. In inference
the comparators reuse the patch norms the layer computed for the same input tile, and the periphery
arithmetic overwrites the fresh tensors it is handed (the stage contract of
:class:`aimc_lsh.kernels.HashStages`), with the same operations in the same order, hence the same numbers.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aimc_lsh.hardware.periphery import adc_convert, pooled_noise, quantize_norms
from aimc_lsh.hardware.programming import (
    TilePlan,
    derive_seed,
    drift_matrix,
    global_readouts,
    program_matrix,
)
from aimc_lsh.kernels import ConvGeometry, HashStages, TilePair, hard_sign, needs_grad, patch_norms, sign_ste

if TYPE_CHECKING:
    from aimc_lsh.hardware.config import HardwareConfig


def stack_row_blocks(matrix: Tensor, plan: TilePlan) -> Tensor:
    """Stack a (n_out, n_in) matrix into (n_row_blocks * n_out, n_in), zero outside each row block.

    One convolution with the stacked matrix yields every row block's partial result.
    """
    if len(plan.row_splits) == 1:
        return matrix
    parts = []
    for i0, i1 in plan.row_splits:
        part = torch.zeros_like(matrix)
        part[:, i0:i1] = matrix[:, i0:i1]
        parts.append(part)
    return torch.cat(parts)


def projection_blocks(filters: Tensor, plan: TilePlan) -> list[tuple[int, int, Tensor]]:
    """Cut P filters (k, C, kh, kw) into row blocks ``(c0, c1, filters)`` over channels c0:c1.

    Row blocks split the flattened (C, kh, kw) inputs; a block that starts or ends inside a channel's
    kernel window is zero outside its own inputs.
    """
    k, channels, kh, kw = filters.shape
    if len(plan.row_splits) == 1:
        return [(0, channels, filters)]
    window = kh * kw
    flat = filters.reshape(k, channels * window)
    blocks = []
    for i0, i1 in plan.row_splits:
        c0, c1 = i0 // window, -(-i1 // window)
        part = torch.zeros(k, (c1 - c0) * window, dtype=flat.dtype, device=flat.device)
        part[:, i0 - c0 * window : i1 - c0 * window] = flat[:, i0:i1]
        blocks.append((c0, c1, part.view(k, c1 - c0, kh, kw)))
    return blocks


def _straight_through(live: Tensor, programmed: Tensor) -> Tensor:
    """``programmed`` in the forward pass, gradients to ``live`` (identity) when it needs them."""
    if torch.is_grad_enabled() and live.requires_grad:
        return live + (programmed - live).detach()
    return programmed


@dataclass
class TileState:
    """Everything programmed for one tile pair of a layer (tensors used in forward move with it)."""

    seed: int
    """Seed the tile pair was programmed with."""
    # --- code match on the array
    codes_plan: TilePlan | None = None
    codes_programmed: Tensor | None = None  # CPU, t = 0
    codes_params: dict = field(default_factory=dict)
    codes_baseline: dict = field(default_factory=dict)
    match_weight: Tensor | None = None  # (n_r * out, k, 1, 1)
    match_full_scale: Tensor | None = None  # (1, n_r * out, 1, 1)
    match_noise: Tensor | None = None  # (1, n_r * out, 1, 1): per-read weight noise at the output
    match_alpha: Tensor | None = None  # (1, n_r * out, 1, 1): drift compensation
    # --- projection on the array
    proj_plan: TilePlan | None = None
    proj_programmed: Tensor | None = None  # CPU (k, d), t = 0
    proj_params: dict = field(default_factory=dict)
    proj_blocks: list = field(default_factory=list)  # [(c0, c1, filters)]
    proj_shape: torch.Size | None = None  # (k, C, kh, kw)
    proj_scale: Tensor | None = None  # (n_r, k): abs-max scale of the tile holding each column
    proj_full_scale: Tensor | None = None  # (n_r, k): ADC range of partial sums (normalised units)
    # --- comparators (per column of P, in P units times ||x_patch||)
    column_norms: Tensor | None = None  # (k,) ||p_j|| (full scale of the comparator input)
    sa_offsets: Tensor | None = None  # (k,) drawn offsets, full-scale units
    sa_static: Tensor | None = None  # (k,) ||p_j|| (offset_j - threshold)
    sa_noise: Tensor | None = None  # (k,) dynamic noise std (sense amp and read noise combined)
    sa_band: Tensor | None = None  # (k,) metastability half-width
    sa_inv_sigma: Tensor | None = None  # (k,) 1 / sa_noise: folded into P in inference (sign-preserving)
    proj_fast: Tensor | None = None  # single-block programmed filters times sa_inv_sigma

    def tensors(self) -> list[str]:
        """Names of the tensor attributes used in forward (moved by ``module.to``)."""
        return [
            "match_weight", "match_full_scale", "match_noise", "match_alpha",
            "proj_scale", "proj_full_scale", "column_norms", "sa_offsets", "sa_static", "sa_noise", "sa_band",
            "sa_inv_sigma", "proj_fast",
        ]  # fmt: skip


class AnalogHashStages(HashStages):
    """Hashed-layer stages on analog tiles, computed with convolutions on programmed weights.

    Args:
        config: The hardware configuration of the layer.

    """

    def __init__(self, config: HardwareConfig) -> None:
        super().__init__(ste=config.ste)
        self.config = config
        self.sense_amp = config.effective_sense_amp
        self.adc = config.effective_adc
        self.device_profile = config.device
        self.noise_model = config.device.build_noise_model()
        self.drift_compensation = config.effective_drift_compensation and config.codes_are_analog
        self.tiles: dict[TilePair, TileState] = {}
        self.t_inference: float | None = None
        self._generator: torch.Generator | None = None
        self._reads_seed = 0
        self._pending: tuple[TilePair, Tensor, bool] | None = None
        # The layer's patch norms of its current input tile: (weakref to x, x._version, key, norms).
        self._norms: tuple[weakref.ref, int, tuple, Tensor] | None = None

    # ------------------------------------------------------------------ bookkeeping
    @property
    def programmed(self) -> bool:
        """Whether :meth:`program_layer` has run."""
        return bool(self.tiles)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> nn.Module:
        super()._apply(fn, recurse)
        for state in self.tiles.values():
            for name in state.tensors():
                value = getattr(state, name)
                if value is not None:
                    setattr(state, name, fn(value))
            state.proj_blocks = [(c0, c1, fn(w)) for c0, c1, w in state.proj_blocks]
        return self

    def __getstate__(self) -> dict[str, Any]:
        """Pickled state, without the per-forward patch-norm cache (a weak reference)."""
        state = super().__getstate__()
        state["_norms"] = None
        return state

    def _state(self, tile: TilePair) -> TileState:
        state = self.tiles.get(tile)
        if state is None:
            raise RuntimeError(
                f"tile pair {tile} of this hashed layer is not programmed: call "
                "aimc_lsh.hardware.program(model, seed) after patching (and after changing weights)"
            )
        return state

    def generator(self) -> torch.Generator:
        """CPU generator of the per-read draws (window offsets into the noise pool), seeded by programming."""
        if self._generator is None:
            self._generator = torch.Generator().manual_seed(self._reads_seed)
        return self._generator

    def extra_repr(self) -> str:
        """Summary shown in the module's repr."""
        c = self.config
        return (
            f"device={c.device.name}, placement={c.placement}, analog_projection={c.projection_is_analog}, "
            f"t={self.t_inference}"
        )

    # ------------------------------------------------------------------ programming
    @torch.no_grad()
    def program_layer(self, layer: nn.Module, seed: int) -> None:
        """Program every tile pair of ``layer`` (a hashed layer using these stages) at t = 0.

        Draws programming noise and drift coefficients (aihwkit), sense-amplifier offsets, and resets
        the per-read noise generator, all from ``seed``.
        """
        self.tiles = {}
        for i, j, _, _ in layer.tile_pairs():
            self.program_tile(
                (i, j), layer.weight_codes(i, j), layer.projection_filters(i, j), derive_seed(seed, i, j)
            )
        self._reads_seed = derive_seed(seed, "reads")
        self._generator = None
        self.t_inference = None

    @torch.no_grad()
    def program_tile(self, tile: TilePair, codes: Tensor, filters: Tensor, seed: int) -> None:
        """Program one tile pair from its ideal codes h_W (out_j, k) and P filters (k, C, kh, kw)."""
        device, dtype = filters.device, filters.dtype
        state = TileState(seed=seed)
        k = filters.shape[0]
        flat_p = filters.detach().reshape(k, -1)
        state.column_norms = flat_p.norm(dim=1).to(dtype)
        if self.config.codes_are_analog:
            state.codes_plan = TilePlan.for_matrix(codes.shape[0], k, self.config.tile)
            state.codes_programmed, state.codes_params = program_matrix(
                self.noise_model, codes, state.codes_plan, derive_seed(seed, "codes")
            )
            rows = state.codes_plan.rows_per_output()  # (n_r, 1)
            fs = rows if self.adc.full_scale is None else torch.full_like(rows, self.adc.full_scale)
            n_out = codes.shape[0]
            state.match_full_scale = fs.expand(-1, n_out).reshape(1, -1, 1, 1).to(device, dtype)
            if self.device_profile.read_noise_std > 0:
                noise = self.device_profile.read_noise_std * rows.sqrt()
                state.match_noise = noise.expand(-1, n_out).reshape(1, -1, 1, 1).to(device, dtype)
            if self.drift_compensation:
                state.codes_baseline = self._readouts(state, state.codes_programmed, ("baseline",))
            self._set_codes(state, state.codes_programmed, device, dtype)
        if self.config.projection_is_analog:
            state.proj_plan = TilePlan.for_matrix(k, flat_p.shape[1], self.config.tile)
            state.proj_programmed, state.proj_params = program_matrix(
                self.noise_model, flat_p, state.proj_plan, derive_seed(seed, "projection")
            )
            scale = torch.zeros(len(state.proj_plan.row_splits), k)
            full_scale = torch.zeros_like(scale)
            for (r, _), out_slice, in_slice in state.proj_plan.blocks():
                block = flat_p[out_slice, in_slice].float().cpu()
                top = block.abs().max().clamp(min=1e-12)
                scale[r, out_slice] = top
                full_scale[r, out_slice] = (block.norm(dim=1) / top).max()
            state.proj_scale = scale.to(device, dtype)
            state.proj_full_scale = full_scale.to(device, dtype)
            state.proj_shape = filters.shape
            self._set_projection(state, state.proj_programmed, filters.shape, device, dtype)
        self._program_sense_amps(state, k, device, dtype)
        self.tiles[tile] = state

    def _program_sense_amps(self, state: TileState, k: int, device: torch.device, dtype: torch.dtype) -> None:
        sa = self.sense_amp
        gen = torch.Generator().manual_seed(derive_seed(state.seed, "sense_amp"))
        offsets = torch.randn(k, generator=gen) * sa.offset_std
        norms = state.column_norms
        state.sa_offsets = offsets.to(device, dtype)
        state.sa_static = norms * (state.sa_offsets - sa.threshold)
        variance = torch.zeros_like(norms)
        if sa.noise_std > 0:
            variance = variance + (sa.noise_std * norms) ** 2
        single_block = state.proj_plan is not None and len(state.proj_plan.row_splits) == 1
        if single_block and self.device_profile.read_noise_std > 0:
            variance = variance + (self.device_profile.read_noise_std * state.proj_scale[0]) ** 2
        state.sa_noise = variance.sqrt() if bool((variance > 0).any()) else None
        state.sa_band = norms * sa.metastability if sa.metastability > 0 else None
        if state.sa_noise is not None:
            state.sa_inv_sigma = 1.0 / state.sa_noise.clamp(min=torch.finfo(dtype).tiny)
        if single_block:
            state.proj_fast = self._fast_filters(state)

    @staticmethod
    def _fast_filters(state: TileState) -> Tensor:
        filters = state.proj_blocks[0][2]
        if state.sa_inv_sigma is not None:
            filters = filters * state.sa_inv_sigma.view(-1, 1, 1, 1)
        return filters.contiguous(memory_format=torch.channels_last)

    def _set_codes(self, state: TileState, weights: Tensor, device: torch.device, dtype: torch.dtype) -> None:
        stacked = stack_row_blocks(weights, state.codes_plan)
        state.match_weight = stacked[:, :, None, None].to(device, dtype).contiguous()

    def _set_projection(
        self, state: TileState, flat: Tensor, shape: torch.Size, device: torch.device, dtype: torch.dtype
    ) -> None:
        filters = flat.reshape(shape).to(device, dtype)
        state.proj_blocks = [
            (c0, c1, w.contiguous(memory_format=torch.channels_last))
            for c0, c1, w in projection_blocks(filters, state.proj_plan)
        ]

    def _readouts(self, state: TileState, weights: Tensor, tag: tuple) -> dict:
        gen = torch.Generator().manual_seed(derive_seed(state.seed, "readout", *tag))
        rows = state.codes_plan.rows_per_output()[:, 0]
        fs = rows if self.adc.full_scale is None else torch.full_like(rows, self.adc.full_scale)
        noise, reference = self.device_profile.read_noise_std, self.config.effective_drift_reference
        return global_readouts(weights, state.codes_plan, self.adc, fs, gen, noise, reference)

    @torch.no_grad()
    def drift_layer(self, t_inference: float) -> None:
        """Drift every programmed tile to ``t_inference`` seconds after programming (and compensate)."""
        t = self.device_profile.check_time(t_inference)
        for state in self.tiles.values():
            if state.codes_plan is not None:
                device, dtype = state.match_weight.device, state.match_weight.dtype
                drifted = drift_matrix(
                    self.noise_model,
                    state.codes_programmed,
                    state.codes_params,
                    state.codes_plan,
                    t,
                    derive_seed(state.seed, "codes"),
                )
                self._set_codes(state, drifted, device, dtype)
                if self.drift_compensation:
                    current = self._readouts(state, drifted, ("drift", t))
                    alpha = {b: state.codes_baseline[b] / current[b] for b in current}
                    state.match_alpha = (
                        state.codes_plan.per_output(alpha).reshape(1, -1, 1, 1).to(device, dtype)
                    )
            if state.proj_plan is not None:
                w = state.proj_blocks[0][2]
                drifted = drift_matrix(
                    self.noise_model,
                    state.proj_programmed,
                    state.proj_params,
                    state.proj_plan,
                    t,
                    derive_seed(state.seed, "projection"),
                )
                self._set_projection(state, drifted, state.proj_shape, w.device, w.dtype)
                if state.proj_fast is not None:
                    state.proj_fast = self._fast_filters(state)
        self.t_inference = t

    # ------------------------------------------------------------------ the four stages
    def _sense_amps_act(self, state: TileState) -> bool:
        """Whether comparators (not an exact digital sign) decide h_x of this tile pair."""
        return not self.sense_amp.ideal or state.sa_noise is not None

    def patch_norms(self, x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry) -> Tensor:
        """Patch norms of the layer's input tile, kept for the comparators of :meth:`project` on ``x``.

        The cache holds ``x`` weakly and is used only for that same tensor, unmodified since (its
        version counter), with the same kernel size and geometry; :meth:`project` computes the norms
        itself otherwise (e.g. when called directly, or through a wrapping stage object).
        """
        norms = patch_norms(x, kernel_size, geometry)
        self._norms = (weakref.ref(x), x._version, (tuple(kernel_size), geometry), norms)
        return norms

    def _patch_norms_of(self, x: Tensor, kernel_size: tuple[int, int], geometry: ConvGeometry) -> Tensor:
        """The norms :meth:`patch_norms` computed for ``x`` if still valid, else computed now."""
        cached = self._norms
        if (
            cached is not None
            and cached[0]() is x
            and cached[1] == x._version
            and cached[2] == (tuple(kernel_size), geometry)
        ):
            return cached[3]
        return patch_norms(x, tuple(kernel_size), geometry)

    def project(self, x: Tensor, filters: Tensor, geometry: ConvGeometry, tile: TilePair) -> Tensor:
        """P x for every patch: digital (the given filters) or on the programmed projection tile.

        In inference the comparators' per-column noise scale is folded into P (a positive per-row
        factor leaves every sign unchanged), so the returned tensor is then only meant for
        :meth:`binarize`, which may overwrite it.
        """
        self._pending = None
        analog = self.config.projection_is_analog
        if not analog and self.sense_amp.ideal:
            return super().project(x, filters, geometry, tile)
        state = self._state(tile)
        grad = needs_grad(x, filters)
        multi = analog and len(state.proj_plan.row_splits) > 1
        comparators = not multi and self._sense_amps_act(state)
        x_norm = self._patch_norms_of(x, filters.shape[2:], geometry) if (comparators or multi) else None
        folded = comparators and not grad and state.sa_inv_sigma is not None
        if not analog:
            if folded:
                filters = filters * state.sa_inv_sigma.view(-1, 1, 1, 1)
            pre = super().project(x, filters, geometry, tile)
        elif not multi:
            if grad:
                weight = _straight_through(filters, state.proj_blocks[0][2])
            else:
                weight = state.proj_fast if folded else state.proj_blocks[0][2]
            pre = F.conv2d(x, weight, None, geometry.stride, geometry.padding, geometry.dilation)
        else:
            pre = self._project_split(x, filters, geometry, state, x_norm, grad)
        if comparators:
            self._pending = (tile, x_norm, folded)
        return pre

    def _project_split(
        self, x: Tensor, filters: Tensor, geometry: ConvGeometry, state: TileState, x_norm: Tensor, grad: bool
    ) -> Tensor:
        """P on several row tiles: partial sums read by the ADC and summed digitally."""
        live = projection_blocks(filters, state.proj_plan) if grad else None
        gen = self.generator()
        read_std = self.device_profile.read_noise_std
        extra = read_std or None  # per-read weight noise, referred to the ADC input
        total = None
        for b, (c0, c1, programmed) in enumerate(state.proj_blocks):
            weight = programmed if live is None else _straight_through(live[b][2], programmed)
            x_b = x if (c0, c1) == (0, x.shape[1]) else x[:, c0:c1]
            pre = F.conv2d(x_b, weight, None, geometry.stride, geometry.padding, geometry.dilation)
            fs = state.proj_full_scale[b].view(1, -1, 1, 1)
            noisy = self.adc.noise_std > 0 or read_std > 0
            noise = pooled_noise(pre, gen) if noisy else None
            if grad:
                unit = (x_norm * state.proj_scale[b].view(1, -1, 1, 1)).clamp(min=1e-30)
                value = adc_convert(pre / unit, self.adc, fs, None, extra, noise=noise)
                value = value * unit
                total = value if total is None else total + value
                continue
            # Inference: the same operations in place on fresh tensors; ``unit`` in ``pre``'s memory layout
            # (channels-last), which makes the element-wise passes ~3x faster than mixed layouts (measured).
            unit = torch.mul(x_norm, state.proj_scale[b].view(1, -1, 1, 1), out=torch.empty_like(pre))
            unit = unit.clamp_(min=1e-30)
            value = adc_convert(pre.div_(unit), self.adc, fs, None, extra, noise=noise, inplace=True)
            value = value.mul_(unit)
            total = value if total is None else total.add_(value)
        return total

    def apply_thresholds(self, pre: Tensor, x_norm: Tensor, shift: Tensor, tile: TilePair) -> Tensor:
        """The learned comparator references, in the units of :meth:`project`'s result.

        Where the comparators' noise scale is folded into P (inference), ``pre`` is ``(P / sigma) x``, so
        the references are divided by the same per-column sigma. Physically they add to the sense
        amplifiers' static offsets (a trimmed reference proportional to the patch norm, as the offsets are).
        """
        pending = self._pending
        if pending is not None and pending[0] == tile and pending[2]:
            shift = shift * self._state(tile).sa_inv_sigma
        return super().apply_thresholds(pre, x_norm, shift, tile)

    def binarize(self, pre: Tensor, tile: TilePair) -> Tensor:
        """Sense amplifiers: sign of the pre-activations with offset, noise and metastability.

        The comparator input of column j is ``pre_j + ||x_patch|| (static_j + sigma_j xi)`` with
        ``static_j = ||p_j|| (offset_j - threshold)``; a digital projection with an ideal comparator, or
        a split projection (whose sign is taken digitally), gives the exact sign.
        """
        pending, self._pending = self._pending, None
        if pending is None or pending[0] != tile:
            return super().binarize(pre, tile)  # exact sign (in place in inference)
        _, x_norm, folded = pending
        state = self._state(tile)
        sa = self.sense_amp
        gen = self.generator()
        static = state.sa_static if (sa.offset_std > 0 or sa.threshold != 0) else None
        if folded or not needs_grad(pre):
            # Inference: in place on pre (noise folded into P, so unit-variance noise is added).
            inv = state.sa_inv_sigma if folded else None
            margin = pre
            if static is not None:
                margin.addcmul_(x_norm, (static if inv is None else static * inv).view(1, -1, 1, 1))
            if state.sa_noise is not None:
                noise = pooled_noise(margin, gen)
                if inv is None:
                    margin.addcmul_(x_norm * state.sa_noise.view(1, -1, 1, 1), noise)
                else:
                    margin.addcmul_(x_norm, noise)
            inside = None
            if state.sa_band is not None:
                half_width = (state.sa_band if inv is None else state.sa_band * inv).view(1, -1, 1, 1)
                band = torch.mul(x_norm, half_width, out=torch.empty_like(margin))  # margin's layout
                coin = hard_sign(pooled_noise(margin, gen))
                inside = margin.abs() < band
            # The margin is not needed any more: the decisions overwrite it (one memory pass fewer).
            h = torch.copysign(margin.new_ones(()), margin, out=margin)
            return h if inside is None else torch.where(inside, coin, h, out=h)
        margin = pre
        if static is not None:
            margin = margin + x_norm * static.view(1, -1, 1, 1)
        if state.sa_noise is not None:
            margin = margin + x_norm * state.sa_noise.view(1, -1, 1, 1) * pooled_noise(pre, gen)
        h = sign_ste(margin, self.ste)
        if state.sa_band is not None:
            band = x_norm * state.sa_band.view(1, -1, 1, 1)
            coin = hard_sign(pooled_noise(pre, gen))
            h = h + (torch.where(margin.detach().abs() < band, coin, h.detach()) - h).detach()
        return h

    def match(self, h_x: Tensor, codes: Tensor, tile: TilePair) -> Tensor:
        """Code agreement h_W . h_x: on the programmed code tile (ADC per read), or digital."""
        if not self.config.codes_are_analog:
            return super().match(h_x, codes, tile)
        state = self._state(tile)
        weight = state.match_weight
        if needs_grad(codes):
            weight = _straight_through(stack_row_blocks(codes, state.codes_plan)[:, :, None, None], weight)
        agreement = F.conv2d(h_x, weight)
        if not self.adc.ideal or state.match_noise is not None:
            noisy = self.adc.noise_std > 0 or state.match_noise is not None
            agreement = adc_convert(
                agreement, self.adc, state.match_full_scale, None, state.match_noise,
                noise=pooled_noise(agreement, self.generator()) if noisy else None,
                gain=state.match_alpha, inplace=True,
            )  # fmt: skip
        elif state.match_alpha is not None:
            # The convolution's output is fresh: scale it in place unless autograd records it.
            grad = needs_grad(agreement, state.match_alpha)
            agreement = agreement * state.match_alpha if grad else agreement.mul_(state.match_alpha)
        if len(state.codes_plan.row_splits) > 1:
            n, _, height, width = agreement.shape
            agreement = agreement.view(n, len(state.codes_plan.row_splits), -1, height, width).sum(1)
        return agreement

    def reconstruct(self, similarity: Tensor, w_norm: Tensor, x_norm: Tensor, tile: TilePair) -> Tensor:
        """Cosine from the similarity, rescaled by the (optionally quantised) digital norms."""
        bits = self.config.norm_bits
        if bits is not None:
            w_norm = quantize_norms(w_norm, bits)
            x_norm = quantize_norms(x_norm, bits, dim=(1, 2, 3))
        return super().reconstruct(similarity, w_norm, x_norm, tile)

    # ------------------------------------------------------------------ inspection
    def programmed_codes(self, tile: TilePair) -> Tensor:
        """The code matrix as currently on the array (out_j, k), in weight units (ideal: +-1)."""
        state = self._state(tile)
        w = state.match_weight[:, :, 0, 0]
        n_r = len(state.codes_plan.row_splits)
        return w.view(n_r, -1, w.shape[1]).sum(0) if n_r > 1 else w

    def programmed_projection(self, tile: TilePair) -> Tensor:
        """P as currently on the array (k, d), in P units."""
        state = self._state(tile)
        k = state.proj_blocks[0][2].shape[0]
        window = math.prod(state.proj_blocks[0][2].shape[2:])
        d = state.proj_plan.n_in
        flat = torch.zeros(k, d, dtype=state.proj_blocks[0][2].dtype, device=state.proj_blocks[0][2].device)
        for c0, _, w in state.proj_blocks:
            part = w.reshape(k, -1)
            flat[:, c0 * window : c0 * window + part.shape[1]] += part
        return flat

    def state_summary(self) -> dict[str, Any]:
        """Small dict describing what is programmed (for logs and the energy model)."""
        return {
            "t_inference": self.t_inference,
            "tiles": {
                tile: {
                    "codes_tiles": None if s.codes_plan is None else s.codes_plan.n_tiles,
                    "projection_tiles": None if s.proj_plan is None else s.proj_plan.n_tiles,
                }
                for tile, s in self.tiles.items()
            },
        }
