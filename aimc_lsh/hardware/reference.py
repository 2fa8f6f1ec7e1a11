"""The aihwkit reference backend: the same layers through real aihwkit ``TorchInferenceTile`` s.

It exists to check the fast path (:mod:`aimc_lsh.hardware.stages`,
:mod:`aimc_lsh.hardware.conventional`), not to be fast: every matrix lives on aihwkit inference
tiles (``TorchInferenceRPUConfig``), programmed and drifted by aihwkit's own ``program_weights`` /
``drift_weights`` (with the same per-tile seeds as the fast path, so programming noise, drift
coefficients and 1/f noise are the very same draws), and inputs go through the tiles' MVM patch by
patch (``F.unfold``), with aihwkit's noise management where the fast path models it.

aihwkit's own output quantiser is not a sense amplifier (``out_res`` of 1-2 bits yields three levels
{-b, 0, +b}) and its torch tile rejects per-read weight noise (``w_noise``), so the tiles use
:class:`PeripheryMVM`, an ``AnalogMVM`` whose analog read-out goes through a :class:`Periphery`
object attached to the tile: per-read weight noise (exact: ``sigma * ||input||`` per output), then
our ADC or sense amplifier (:mod:`aimc_lsh.hardware.periphery`). Inputs are scaled into
``inp_bound = 1`` before they reach a tile (aihwkit's default bound clips inputs beyond 1).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from aihwkit.inference.compensation.drift import GlobalDriftCompensation
from aihwkit.simulator.configs import TorchInferenceRPUConfig
from aihwkit.simulator.parameters import IOParameters, MappingParameter
from aihwkit.simulator.parameters.enums import BoundManagementType, NoiseManagementType
from aihwkit.simulator.tiles.analog_mvm import AnalogMVM
from aihwkit.simulator.tiles.inference_torch import TorchInferenceTile
from aihwkit.simulator.tiles.torch_tile import TorchSimulatorTile
from torch import Tensor, nn

from aimc_lsh.hardware.periphery import adc_convert, randn_like
from aimc_lsh.hardware.programming import derive_seed, seeded_rng
from aimc_lsh.hardware.specs import ADC, SenseAmp
from aimc_lsh.hardware.stages import AnalogHashStages, TileState
from aimc_lsh.kernels import ConvGeometry, TilePair

if TYPE_CHECKING:
    from aimc_lsh.hardware.config import HardwareConfig


@dataclass
class Periphery:
    """What reads the columns of one reference tile (set as ``tile.tile.periphery``).

    ``kind="adc"`` converts ``out / unit`` with the ADC (full scale ``full_scale``) and multiplies back
    by ``unit``; ``kind="sense_amp"`` returns +-1 from comparators with per-column full scales
    ``column_norms``, static ``offsets`` (full-scale units) and dynamic noise. In both, per-read weight
    noise of std ``read_noise_std`` (in units of the tile's abs-max weight ``unit``) enters per read.
    """

    kind: str
    generator: torch.Generator
    adc: ADC | None = None
    full_scale: float = 1.0
    unit: float | Tensor = 1.0
    read_noise_std: float = 0.0
    sense_amp: SenseAmp | None = None
    column_norms: Tensor | None = None
    offsets: Tensor | None = None

    def read(self, out: Tensor, inp: Tensor) -> Tensor:
        """Convert the analog outputs ``out`` (M, cols) of inputs ``inp`` (M, rows)."""
        in_norm = inp.norm(dim=-1, keepdim=True)
        read = self.read_noise_std * in_norm * self.unit if self.read_noise_std > 0 else None
        if self.kind == "adc":
            extra = None if read is None else read / self.unit
            return adc_convert(out / self.unit, self.adc, self.full_scale, self.generator, extra) * self.unit
        sa = self.sense_amp
        norms = self.column_norms.to(out)
        margin = out + norms * (self.offsets.to(out) - sa.threshold)
        variance = (sa.noise_std * norms) ** 2 + (0 if read is None else read**2)
        if torch.is_tensor(variance) and bool((variance > 0).any()):
            margin = margin + variance.sqrt() * randn_like(margin, self.generator)
        decision = torch.where(margin >= 0, 1.0, -1.0).to(out.dtype)
        if sa.metastability > 0:
            coin = torch.where(randn_like(margin, self.generator) >= 0, 1.0, -1.0).to(out.dtype)
            decision = torch.where(margin.abs() < norms * sa.metastability, coin, decision)
        # A zero input patch carries no signal; the layer multiplies its codes by ||x|| = 0 anyway.
        return torch.where(in_norm > 0, decision, torch.ones_like(decision))


class PeripheryMVM(AnalogMVM):
    """aihwkit's torch MVM with our periphery (per-read weight noise, ADC or sense amplifier)."""

    @classmethod
    def _compute_analog_mv(  # type: ignore[override]
        cls,
        weight: Tensor,
        input_: Tensor,
        trans: bool,
        scale: float,
        scaling: bool,
        is_test: bool,
        io_pars: IOParameters,
        periphery: Periphery | None = None,
        **fwd_pars: Any,
    ) -> tuple[bool, Tensor]:
        prepared = cls._prepare_input(input_, scale, scaling, io_pars.inp_asymmetry != 0.0, io_pars)
        out = cls._matmul(weight, prepared, trans=trans)
        if periphery is not None:
            out = periphery.read(out, prepared)
        return True, out


class PeripherySimulatorTile(TorchSimulatorTile):
    """aihwkit's torch simulator tile computing with :class:`PeripheryMVM` and a :class:`Periphery`."""

    def __init__(self, x_size: int, d_size: int, rpu_config: Any, bias: bool = False) -> None:
        super().__init__(x_size, d_size, rpu_config, bias, analog_mvm=PeripheryMVM)
        self.periphery: Periphery | None = None

    def forward(  # type: ignore[override]  # noqa: D102 - TorchSimulatorTile.forward with our MVM
        self,
        x_input: Tensor,
        bias: bool = False,
        in_trans: bool = False,
        out_trans: bool = False,
        is_test: bool = False,
        non_blocking: bool = False,
    ) -> Tensor:
        return PeripheryMVM.matmul(
            self.weight, x_input, self._f_io, False, is_test=is_test, periphery=self.periphery
        )


def reference_rpu_config(
    config: HardwareConfig,
    *,
    noise_management: bool = False,
    drift_compensation: bool = False,
    mapping: MappingParameter | None = None,
) -> TorchInferenceRPUConfig:
    """A ``TorchInferenceRPUConfig`` with the device's noise model and our periphery.

    aihwkit's own output noise and quantiser are off (the :class:`Periphery` models them); input
    quantisation is off; noise management is aihwkit's per-input abs-max scaling when asked for
    (the conventional baseline), else none (hash inputs are +-1 or unit-norm patches).
    """
    forward = IOParameters(
        inp_res=-1,
        inp_bound=1.0,
        out_res=-1,
        out_bound=0.0,
        out_noise=0.0,
        bound_management=BoundManagementType.NONE,
        noise_management=NoiseManagementType.ABS_MAX if noise_management else NoiseManagementType.NONE,
    )
    noise_model = config.device.build_noise_model()
    if noise_model is None:  # ideal device: a PCM model with every noise scale at zero
        from aihwkit.inference.noise.pcm import PCMLikeNoiseModel

        noise_model = PCMLikeNoiseModel(prog_noise_scale=0.0, read_noise_scale=0.0, drift_scale=0.0)
    return TorchInferenceRPUConfig(
        forward=forward,
        noise_model=noise_model,
        drift_compensation=GlobalDriftCompensation() if drift_compensation else None,
        mapping=mapping or MappingParameter(max_input_size=0, max_output_size=0),
        simulator_tile_class=PeripherySimulatorTile,
    )


class AihwkitHashStages(AnalogHashStages):
    """The hashed-layer stages through real aihwkit inference tiles (the reference backend).

    Shares the fast path's bookkeeping (tile plans, sense-amplifier offsets, seeds) but computes every
    analog matrix-vector product on ``TorchInferenceTile`` s, patch by patch.
    """

    def __init__(self, config: HardwareConfig) -> None:
        super().__init__(config)
        self.aihwkit_tiles = nn.ModuleDict()
        self._digital_sense_amps: dict[TilePair, Periphery] = {}

    @staticmethod
    def _key(tile: TilePair, role: str, r: int, c: int) -> str:
        return f"{role}_{tile[0]}_{tile[1]}_{r}_{c}"

    def _make_tile(
        self, weights: Tensor, drift_compensation: bool, periphery: Periphery
    ) -> TorchInferenceTile:
        rpu = reference_rpu_config(self.config, drift_compensation=drift_compensation)
        tile = TorchInferenceTile(weights.shape[0], weights.shape[1], rpu)
        tile.tile.periphery = periphery
        tile.set_weights(weights.detach().float().cpu())
        tile.eval()
        return tile

    @torch.no_grad()
    def program_tile(self, tile: TilePair, codes: Tensor, filters: Tensor, seed: int) -> None:
        """Program one tile pair on aihwkit tiles (same per-tile seeds as the fast path)."""
        super().program_tile(tile, codes, filters, seed)
        state = self.tiles[tile]
        gen = torch.Generator().manual_seed(derive_seed(seed, "reference_reads"))
        self._digital_sense_amps[tile] = Periphery(
            "sense_amp", gen, sense_amp=self.sense_amp, column_norms=state.column_norms.cpu(),
            offsets=state.sa_offsets.cpu(),
        )  # fmt: skip
        read = self.device_profile.read_noise_std
        if state.codes_plan is not None:
            role_seed = derive_seed(seed, "codes")
            for (r, c), out_slice, in_slice in state.codes_plan.blocks():
                rows = in_slice.stop - in_slice.start
                fs = float(rows) if self.adc.full_scale is None else self.adc.full_scale
                periphery = Periphery("adc", gen, adc=self.adc, full_scale=fs, read_noise_std=read)
                analog = self._make_tile(codes[out_slice, in_slice], self.drift_compensation, periphery)
                with seeded_rng(derive_seed(role_seed, r, c)):
                    analog.program_weights()
                self.aihwkit_tiles[self._key(tile, "codes", r, c)] = analog
        if state.proj_plan is not None:
            role_seed = derive_seed(seed, "projection")
            flat = filters.reshape(filters.shape[0], -1)
            single = len(state.proj_plan.row_splits) == 1
            for (r, c), out_slice, in_slice in state.proj_plan.blocks():
                weights = flat[out_slice, in_slice]
                unit = float(state.proj_scale[r, out_slice][0])
                if single:
                    periphery = Periphery(
                        "sense_amp", gen, read_noise_std=read, unit=unit, sense_amp=self.sense_amp,
                        column_norms=state.column_norms[out_slice].cpu(),
                        offsets=state.sa_offsets[out_slice].cpu(),
                    )  # fmt: skip
                else:
                    fs = float(state.proj_full_scale[r, out_slice][0])
                    periphery = Periphery(
                        "adc", gen, adc=self.adc, full_scale=fs, unit=unit, read_noise_std=read
                    )
                analog = self._make_tile(weights, False, periphery)
                with seeded_rng(derive_seed(role_seed, r, c)):
                    analog.program_weights()
                self.aihwkit_tiles[self._key(tile, "projection", r, c)] = analog

    @torch.no_grad()
    def drift_layer(self, t_inference: float) -> None:
        """Drift every aihwkit tile with ``drift_weights`` (same seeds as the fast path)."""
        t = self.device_profile.check_time(t_inference)
        super().drift_layer(t)
        for tile, state in self.tiles.items():
            for role, plan in (("codes", state.codes_plan), ("projection", state.proj_plan)):
                if plan is None:
                    continue
                role_seed = derive_seed(state.seed, role)
                for (r, c), _, _ in plan.blocks():
                    with seeded_rng(derive_seed(role_seed, "drift", t, r, c)):
                        self.aihwkit_tiles[self._key(tile, role, r, c)].drift_weights(t)

    def _run(self, tile: TilePair, role: str, plan: Any, inputs: Tensor) -> Tensor:
        """Inputs (M, n_in) through every tile of a matrix; row-block partials summed digitally."""
        total = None
        for r, (i0, i1) in enumerate(plan.row_splits):
            parts = [
                self.aihwkit_tiles[self._key(tile, role, r, c)](inputs[:, i0:i1].contiguous())
                for c in range(len(plan.col_splits))
            ]
            out = torch.cat(parts, dim=1)
            total = out if total is None else total + out
        return total

    @torch.no_grad()
    def project(self, x: Tensor, filters: Tensor, geometry: ConvGeometry, tile: TilePair) -> Tensor:
        """h_x computed patch by patch (unfold): analog tiles with sense amplifiers, or digital P."""
        state = self._state(tile)
        k, _, kh, kw = filters.shape
        patches = F.unfold(x, (kh, kw), geometry.dilation, geometry.padding, geometry.stride)
        n, d, positions = patches.shape
        rows = patches.transpose(1, 2).reshape(-1, d)
        norms = rows.norm(dim=1, keepdim=True)
        unit_rows = torch.where(norms > 0, rows / norms.clamp(min=1e-30), torch.zeros_like(rows))
        if self.config.projection_is_analog:
            out = self._run(tile, "projection", state.proj_plan, unit_rows)
            if len(state.proj_plan.row_splits) > 1:
                out = torch.where(out >= 0, 1.0, -1.0).to(out.dtype)
        else:
            pre = unit_rows @ filters.reshape(k, -1).T
            if self.sense_amp.ideal:
                out = torch.where(pre >= 0, 1.0, -1.0).to(pre.dtype)
            else:
                out = self._digital_sense_amps[tile].read(pre, unit_rows)
        h_out, w_out = conv_output_size(x, (kh, kw), geometry)
        h_x = out.reshape(n, positions, k).transpose(1, 2).reshape(n, k, h_out, w_out)
        return h_x

    def apply_thresholds(self, pre: Tensor, x_norm: Tensor, shift: Tensor, tile: TilePair) -> Tensor:
        """Zero thresholds only: the bits were decided inside the tiles' read-out in :meth:`project`.

        Raises:
            NotImplementedError: For learned thresholds that are not all zero.

        """
        if bool((shift != 0).any()):
            raise NotImplementedError(
                "the aihwkit reference backend decides the input bits inside its tiles and does not model "
                "learned comparator thresholds (HashConfig.comparator_thresholds); use backend='fast'"
            )
        return pre

    def binarize(self, pre: Tensor, tile: TilePair) -> Tensor:
        """The sense amplifiers already decided in :meth:`project`: pass the +-1 codes through."""
        return pre

    @torch.no_grad()
    def match(self, h_x: Tensor, codes: Tensor, tile: TilePair) -> Tensor:
        """h_W . h_x on the aihwkit code tiles (every position a read), or digital."""
        if not self.config.codes_are_analog:
            return super(AnalogHashStages, self).match(h_x, codes, tile)
        state = self._state(tile)
        n, k, height, width = h_x.shape
        rows = h_x.permute(0, 2, 3, 1).reshape(-1, k)
        out = self._run(tile, "codes", state.codes_plan, rows)
        return out.reshape(n, height, width, -1).permute(0, 3, 1, 2)


# ---------------------------------------------------------------------- conventional baseline


def _attach_periphery(model: nn.Module, config: HardwareConfig, seed: int) -> None:
    from aimc_lsh.hardware.api import _aihwkit_tiles
    from aimc_lsh.hardware.config import CONVENTIONAL_FULL_SCALE

    adc = config.effective_adc
    fs = CONVENTIONAL_FULL_SCALE if adc.full_scale is None else adc.full_scale
    for path, module in model.named_modules():
        tiles = _aihwkit_tiles(module)
        if tiles is None:
            continue
        for block, tile in tiles:
            gen = torch.Generator().manual_seed(derive_seed(seed, path, *block))
            tile.tile.periphery = Periphery(
                "adc", gen, adc=adc, full_scale=fs, read_noise_std=config.device.read_noise_std
            )


def aihwkit_conventional(
    model: nn.Module, config: HardwareConfig, *, skip: Iterable[str] = (), inplace: bool = False
) -> nn.Module:
    """Convert a digital model with aihwkit's own ``convert_to_analog`` (the conventional reference).

    Real weights go on ``TorchInferenceTile`` s of ``config.tile`` size with ``weight_scaling_omega=1``
    (each tile's abs-max weight mapped to ``g_max``; the default 0 measured 0.32 relative error against
    0.06), aihwkit's per-input abs-max noise management, the device's noise model and drift
    compensation, and our ADC/read noise in the periphery. Program and drift it with
    :func:`aimc_lsh.hardware.program` / :func:`aimc_lsh.hardware.drift`.
    """
    from aihwkit.nn.conversion import convert_to_analog

    mapping = MappingParameter(
        weight_scaling_omega=1.0,
        weight_scaling_columnwise=False,
        max_input_size=config.tile.rows,
        max_output_size=config.tile.cols,
        digital_bias=True,
    )
    rpu = reference_rpu_config(
        config, noise_management=True, drift_compensation=config.effective_drift_compensation, mapping=mapping
    )
    if not inplace:
        model = copy.deepcopy(model)
    analog = convert_to_analog(model, rpu, exclude_modules=list(skip), ensure_analog_root=False, inplace=True)
    _attach_periphery(analog, config, config.seed)
    analog.eval()
    return analog


def conv_output_size(x: Tensor, kernel: tuple[int, int], geometry: ConvGeometry) -> tuple[int, int]:
    """Output height and width of a convolution of ``x`` (N, C, H, W)."""
    kh, kw = kernel
    h = (x.shape[2] + 2 * geometry.padding[0] - geometry.dilation[0] * (kh - 1) - 1) // geometry.stride[0] + 1
    w = (x.shape[3] + 2 * geometry.padding[1] - geometry.dilation[1] * (kw - 1) - 1) // geometry.stride[1] + 1
    return h, w


__all__ = [
    "AihwkitHashStages",
    "Periphery",
    "PeripheryMVM",
    "PeripherySimulatorTile",
    "TileState",
    "aihwkit_conventional",
    "reference_rpu_config",
]
