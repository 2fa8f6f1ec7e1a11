"""Energy accounting: count hardware events per layer and per inference, price them, tabulate.

:func:`count_events` walks a model (hashed layers with any placement, conventional analog layers,
aihwkit analog layers, digital Conv2d/Linear, and any layer with an ``energy_events(path, positions,
table)`` hook, such as the product-quantized layers, priced by :func:`lut_events`) over one example input
and counts, per layer and per image, the events its placement implies:

==========================  ==================================================================
event                       where it happens
==========================  ==================================================================
``cell_reads``              every device of a crossbar read once per matrix-vector product
``row_drives``              word-line drives (DAC) per MVM, times the input resolution in bits
``sense_amp_decisions``     1-bit comparators (h_x on the projection tile)
``adc_conversions[b]``      b-bit conversions (code match, conventional outputs, split partials)
``popcount_bits``           XNOR + popcount per code bit (digital Hamming match)
``digital_macs``            digital multiply-accumulates (digital projection, patch norms, digital layers)
``digital_ops``             other digital operations (cosine look-up, norm scaling, partial sums,
                            noise-management abs-max, bias additions (layers without their own
                            ``energy_events`` hook); for hashed layers also the
                            input-centring subtraction and its precomputed map's addition, and
                            the comparator references ``||x_patch|| t_j ||p_j||`` of learned
                            thresholds)
==========================  ==================================================================

:class:`EnergyTable` prices them with per-event energies from published sources (cited per field);
swap the table to study other technologies. :func:`energy_report` returns a pandas table per layer
or per model; the bitbybit score, which needs the accuracy drop, is ``aimc_lsh.eval.bitbybit_score``
(above this layer: it counts the hashed layers' tiles).

Conventions (stated, not hidden): inputs of real-valued analog MVMs use ``input_bits``-bit
pulse-width DACs with one conversion per output per MVM (HERMES-style), +-1 inputs 1-bit drives;
an ideal (``bits=None``) ADC is priced as ``ideal_adc_bits``; a weight occupies two devices
(differential pair) unless the device model maps one device per weight (aihwkit's
``SingleDeviceConductanceConverter``, e.g. ReRAM CMO).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

ADC_ENERGY_ISAAC_32NM = {
    4: 0.79e-12,
    5: 0.99e-12,
    6: 1.20e-12,
    7: 1.42e-12,
    8: 1.67e-12,
    9: 1.97e-12,
    10: 2.38e-12,
}
"""Energy per conversion (J) by resolution at 32 nm: ISAAC's 8-bit SAR ADC (Shafiee et al., ISCA 2016:
8 ADCs at 1.28 GS/s draw 16 mW, i.e. 16 mW / (8 * 1.2 GS/s) = 1.67 pJ; the design is Kull et al.,
ISSCC 2013, 3.1 mW 8b 1.2 GS/s SAR in 32 nm SOI) and its resolution scaling after Saberi et al.,
IEEE TCAS-I 2011, as tabulated in the Accelergy/hwcomponents ISAAC library."""


@dataclass(frozen=True)
class EnergyTable:
    """Per-event energies in joules (swap any field, e.g. ``DEFAULT_ENERGY.replace(cell_read=1e-15)``)."""

    name: str = "isaac-32nm+horowitz-45nm"
    """Label shown in reports."""

    cell_read: float = 0.3e-3 * 100e-9 / (128 * 128)
    """One device read in one MVM: ISAAC's 128x128 crossbar draws 0.3 mW (2.4 mW for 8 arrays) over a
    100 ns read, i.e. 30 pJ / 16384 cells = 1.83 fJ (Shafiee et al., ISCA 2016, Table 1)."""

    row_drive_per_bit: float = 4e-3 / (8 * 128) * 100e-9
    """Driving one word line for one input bit: ISAAC's 8 x 128 1-bit DACs draw 4 mW, over a 100 ns read
    0.39 pJ each (Shafiee et al., ISCA 2016, Table 1; the Accelergy ISAAC table lists 0.42 pJ with a
    1.28x under-utilisation factor)."""

    sense_amp: float = 9.8e-15
    """One voltage sense-amplifier decision: 9.8 fJ at 65 nm / 1.1 V, the figure reported for NeuroSim's
    ``VoltageSenseAmp`` model (Chen, Peng, Yu, IEEE TCAD 2018); taken from the project guide, not
    re-derived here. A cross-check: one of the 8 comparator decisions of ISAAC's 1.67 pJ 8-bit SAR
    conversion (switching included) costs at most 0.21 pJ."""

    adc: dict[int, float] = field(default_factory=lambda: dict(ADC_ENERGY_ISAAC_32NM))
    """Energy per conversion by resolution (J); resolutions outside the table are extrapolated
    geometrically from its two nearest entries (see :meth:`adc_energy`)."""

    popcount_bit: float = 0.03e-12 / 8
    """XNOR plus popcount per code bit: an 8-bit integer add costs 0.03 pJ at 45 nm (M. Horowitz,
    "Computing's energy problem", ISSCC 2014), i.e. 3.75 fJ per bit of an adder tree."""

    digital_mac: float = 0.2e-12 + 0.03e-12
    """One 8-bit integer multiply-accumulate: 0.2 pJ multiply + 0.03 pJ add at 45 nm
    (Horowitz, ISSCC 2014)."""

    digital_op: float = 0.2e-12 + 0.03e-12
    """Any other digital scalar operation (cosine look-up, norm scaling, partial-sum add, abs-max
    compare); priced like an 8-bit MAC (an assumption on the safe side)."""

    input_bits: int = 8
    """Resolution of real-valued analog inputs (DAC bits; +-1 code inputs use 1)."""

    ideal_adc_bits: int = 8
    """Resolution used to price a converter configured as ideal (``ADC(bits=None)``)."""

    def adc_energy(self, bits: int) -> float:
        """Energy of one ``bits``-bit conversion (1 bit: a sense amplifier)."""
        if bits == 1:
            return self.sense_amp
        if bits in self.adc:
            return self.adc[bits]
        keys = sorted(self.adc)
        lo, hi = (keys[0], keys[1]) if bits < keys[0] else (keys[-2], keys[-1])
        ratio = (self.adc[hi] / self.adc[lo]) ** (1 / (hi - lo))
        anchor = lo if bits < keys[0] else hi
        return self.adc[anchor] * ratio ** (bits - anchor)

    def replace(self, **changes: Any) -> EnergyTable:
        """A copy with fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields."""
        return dataclasses.asdict(self)


DEFAULT_ENERGY = EnergyTable()
"""The default per-event energies (ISAAC 32 nm analog periphery, Horowitz 45 nm digital)."""


@dataclass
class LayerEvents:
    """Event counts of one layer for one inference (one image)."""

    layer: str
    kind: str
    cell_reads: float = 0.0
    row_drives: float = 0.0  # drives x input bits
    sense_amp_decisions: float = 0.0
    adc_conversions: Counter = field(default_factory=Counter)
    popcount_bits: float = 0.0
    digital_macs: float = 0.0
    digital_ops: float = 0.0

    def energy(self, table: EnergyTable = DEFAULT_ENERGY) -> dict[str, float]:
        """Energy (J) per event class and in total."""
        parts = {
            "cells": self.cell_reads * table.cell_read,
            "drives": self.row_drives * table.row_drive_per_bit,
            "sense_amps": self.sense_amp_decisions * table.sense_amp,
            "adcs": sum(n * table.adc_energy(b) for b, n in self.adc_conversions.items()),
            "popcount": self.popcount_bits * table.popcount_bit,
            "digital": self.digital_macs * table.digital_mac + self.digital_ops * table.digital_op,
        }
        parts["total"] = sum(parts.values())
        return parts


def _devices_per_weight(noise_model: Any) -> int:
    """Devices holding one weight, from the aihwkit conductance converter (ideal: a differential pair)."""
    converter = getattr(noise_model, "g_converter", None)
    if type(converter).__name__ == "SingleDeviceConductanceConverter":
        return 1
    return 2 * len(getattr(converter, "f_lst", [1]))


def _config_devices(config: Any) -> int:
    device = getattr(config, "device", None)
    return _devices_per_weight(None if device is None else device.build_noise_model())


def _adc_bits(config: Any, table: EnergyTable) -> int:
    adc = config.effective_adc if hasattr(config, "effective_adc") else None
    bits = None if adc is None else adc.bits
    return table.ideal_adc_bits if bits is None else bits


def _bias_ops(module: nn.Module, positions: int, out: int) -> int:
    """One addition per output and position for a layer with a bias, else 0."""
    return positions * out if getattr(module, "bias", None) is not None else 0


def _hashed_events(
    path: str, layer: nn.Module, positions: int, table: EnergyTable, input_elements: int = 0
) -> LayerEvents:
    from aimc_lsh.hardware.config import HardwareConfig
    from aimc_lsh.hardware.specs import TileSpec, equal_splits

    config = layer.config
    hw = isinstance(config, HardwareConfig)
    kind = config.placement if hw else "hashed_digital"
    events = LayerEvents(path, kind)
    tile = config.tile if hw else TileSpec()
    dev = _config_devices(config)
    kh, kw = layer.kernel_size
    seen_inputs = set()
    for i, _j, in_slice, out_slice in layer.tile_pairs():
        d = (in_slice.stop - in_slice.start) * kh * kw
        out = out_slice.stop - out_slice.start
        k = layer.kernel(i, _j).hash_length
        if i not in seen_inputs:  # the patch norm of an input tile is shared by its output tiles
            events.digital_macs += positions * d
            seen_inputs.add(i)
        if hw and config.projection_is_analog:
            rows = len(equal_splits(d, tile.rows))
            events.cell_reads += positions * k * d * dev
            events.row_drives += positions * d * table.input_bits * len(equal_splits(k, tile.cols))
            if rows == 1:
                events.sense_amp_decisions += positions * k
            else:
                events.adc_conversions[_adc_bits(config, table)] += positions * k * rows
                events.digital_ops += positions * k * rows  # partial sums, then the sign
        else:
            events.digital_macs += positions * k * d
        if hw and config.codes_are_analog:
            rows = len(equal_splits(k, tile.rows))
            events.cell_reads += positions * out * k * dev
            events.row_drives += positions * k * len(equal_splits(out, tile.cols))  # 1-bit inputs
            events.adc_conversions[_adc_bits(config, table)] += positions * out * rows
            events.digital_ops += positions * out * (rows - 1)
        else:
            events.popcount_bits += positions * out * k
        events.digital_ops += positions * out * 4  # cosine look-up, x ||w||, x ||x||, accumulate
        if getattr(layer.kernel(i, _j), "threshold", None) is not None:
            events.digital_ops += positions * k  # each comparator's reference ||x_patch|| t_j ||p_j||
    if getattr(layer, "input_center", None) is not None:  # x - c per input element, + conv(c, W) per output
        events.digital_ops += input_elements + positions * layer.out_channels
    return events


def lut_events(
    path: str,
    positions: int,
    *,
    n_books: int,
    centroids: int,
    subvector_length: int,
    outputs: int,
    config: Any,
    table: EnergyTable,
    noise_model: Any = None,
) -> LayerEvents:
    """Events of a product-quantized (look-up table) layer for one image.

    * distances: ``x . c`` for every codebook and centroid (digital MACs), plus adding ``||c||^2`` and
      comparing for the nearest centroid (digital ops);
    * look-ups with an analog table (``config`` a hardware config): only the n_books selected rows are
      driven (1-bit word-line drives, once per column tile), so the cells read are those rows' devices;
      one ADC conversion per output and row tile; the accumulation over codebooks happens on the bit
      lines; digital ops add the row tiles' partial sums and rescale each output;
    * look-ups with a digital table (``config`` None): one table read and one add per codebook and
      output (digital ops).

    Args:
        path: Module path (row label).
        positions: Output positions per image.
        n_books: Codebooks.
        centroids: Centroids K per codebook.
        subvector_length: Sub-vector length V.
        outputs: Output channels (table columns).
        config: The layer's hardware config, or None for a digital table.
        table: Supplies ``ideal_adc_bits``.
        noise_model: The tile's aihwkit noise model (devices per table entry); None: the config's device.

    Returns:
        The layer's :class:`LayerEvents` (kind ``pq_digital`` or ``pq_<placement>``).

    """
    from aimc_lsh.hardware.specs import equal_splits

    events = LayerEvents(path, "pq_digital" if config is None else f"pq_{config.placement}")
    events.digital_macs += positions * n_books * centroids * subvector_length
    events.digital_ops += positions * n_books * centroids * 2  # + ||c||^2, compare
    if config is None:
        events.digital_ops += positions * n_books * outputs * 2  # read the entry, accumulate
        return events
    devices = _devices_per_weight(noise_model) if noise_model is not None else _config_devices(config)
    rows = equal_splits(n_books * centroids, config.tile.rows)
    cols = equal_splits(outputs, config.tile.cols)
    events.cell_reads += positions * n_books * outputs * devices
    events.row_drives += positions * n_books * len(cols)  # one-hot: 1-bit drives of the selected rows
    events.adc_conversions[_adc_bits(config, table)] += positions * outputs * len(rows)
    events.digital_ops += positions * outputs * (2 * len(rows))  # partial sums, per-output rescaling
    return events


def _conventional_events(
    path: str, out: int, d: int, positions: int, config: Any, table: EnergyTable, devices: int
) -> LayerEvents:
    from aimc_lsh.hardware.specs import equal_splits

    events = LayerEvents(path, "conventional")
    rows = equal_splits(d, config.tile.rows)
    cols = equal_splits(out, config.tile.cols)
    events.cell_reads += positions * out * d * devices
    events.row_drives += positions * d * table.input_bits * len(cols)
    events.adc_conversions[_adc_bits(config, table)] += positions * out * len(rows)
    events.digital_ops += positions * (d * len(cols) + out * (2 * len(rows)))  # abs-max, scaling, sums
    return events


def _aihwkit_config(module: nn.Module) -> Any:
    from aimc_lsh.hardware.api import _aihwkit_tiles
    from aimc_lsh.hardware.config import HardwareConfig
    from aimc_lsh.hardware.specs import TileSpec

    _, first = _aihwkit_tiles(module)[0]
    mapping = first.rpu_config.mapping
    tile = TileSpec(mapping.max_input_size or 2**31 - 1, mapping.max_output_size or 2**31 - 1)
    periphery = getattr(first.tile, "periphery", None)
    adc = getattr(periphery, "adc", None)
    return HardwareConfig(placement="conventional", tile=tile, adc=adc)


def count_events(
    model: nn.Module, example: torch.Tensor, table: EnergyTable = DEFAULT_ENERGY
) -> list[LayerEvents]:
    """Count the events of every layer of ``model`` for one image.

    Args:
        model: A patched (hashed or conventional), aihwkit-converted or digital model (programmed if
            analog: the count runs one forward pass to learn every layer's output size).
        example: One input batch; counts are divided by its batch size (per image).
        table: Supplies the conventions ``input_bits`` and ``ideal_adc_bits``.

    Returns:
        One :class:`LayerEvents` per Conv2d/Linear-like layer, in ``named_modules`` order.

    """
    from aimc_lsh.hardware.api import _aihwkit_tiles

    shapes: dict[str, tuple[torch.Size, torch.Size]] = {}
    handles = []
    candidates = []
    for path, module in model.named_modules():
        has_hook = callable(getattr(module, "energy_events", None))
        is_hashed = hasattr(module, "tile_pairs") and hasattr(module, "stages")
        is_conv = hasattr(module, "array") and hasattr(module, "hardware_program")
        is_aihwkit = _aihwkit_tiles(module) is not None
        if has_hook or is_hashed or is_conv or is_aihwkit or type(module) in (nn.Conv2d, nn.Linear):
            candidates.append((path, module))

            def hook(mod: nn.Module, inputs: tuple, output: torch.Tensor, path: str = path) -> None:
                shapes[path] = (inputs[0].shape, output.shape)

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    batch = example.shape[0]
    result = []
    for path, module in candidates:
        if path not in shapes:
            continue
        in_shape, out_shape = shapes[path]
        out_features = getattr(module, "out_channels", getattr(module, "out_features", None))
        if len(out_shape) == 4 and out_shape[1] == out_features:
            positions = math.prod(out_shape[2:])  # a convolution: one MVM per output position
        else:
            positions = math.prod(out_shape[:-1]) // batch  # a linear layer on (..., features)
        if callable(getattr(module, "energy_events", None)):
            result.append(module.energy_events(path, positions, table))
            continue
        if hasattr(module, "tile_pairs") and hasattr(module, "stages"):
            outputs = module.out_channels
            events = _hashed_events(path, module, positions, table, math.prod(in_shape) // batch)
        elif hasattr(module, "array") and hasattr(module, "hardware_program"):
            outputs = module.out_channels
            d = module.in_channels * math.prod(module.kernel_size)
            devices = _devices_per_weight(module.array.noise_model)
            events = _conventional_events(path, outputs, d, positions, module.config, table, devices)
        elif _aihwkit_tiles(module) is not None:
            analog = module.analog_module
            outputs = analog.out_size
            config = _aihwkit_config(module)
            devices = _devices_per_weight(_aihwkit_tiles(module)[0][1].rpu_config.noise_model)
            events = _conventional_events(path, outputs, analog.in_size, positions, config, table, devices)
        elif getattr(module, "weight", None) is not None:
            outputs = out_features
            events = LayerEvents(path, "digital")
            events.digital_macs += positions * module.weight.numel()
        else:
            continue
        events.digital_ops += _bias_ops(module, positions, outputs)  # every kind but the hooks' own
        result.append(events)
    return result


def energy_table(
    events: list[LayerEvents], table: EnergyTable = DEFAULT_ENERGY, model_name: str = "model"
) -> pd.DataFrame:
    """Per-layer events and energies (pJ) as a DataFrame, one row per layer."""
    rows = []
    for ev in events:
        energy = ev.energy(table)
        rows.append(
            {
                "model": model_name,
                "layer": ev.layer,
                "kind": ev.kind,
                "cell_reads": ev.cell_reads,
                "row_drive_bits": ev.row_drives,
                "sense_amp_decisions": ev.sense_amp_decisions,
                **{f"adc_{b}b": float(n) for b, n in sorted(ev.adc_conversions.items())},
                "popcount_bits": ev.popcount_bits,
                "digital_macs": ev.digital_macs,
                "digital_ops": ev.digital_ops,
                **{f"{k}_pJ": v * 1e12 for k, v in energy.items()},
            }
        )
    return pd.DataFrame(rows).fillna(0.0)


def energy_report(
    models: dict[str, nn.Module],
    example: torch.Tensor,
    *,
    table: EnergyTable = DEFAULT_ENERGY,
    per_layer: bool = False,
) -> pd.DataFrame:
    """Energy per inference of several models (e.g. LSH placements vs the conventional baseline).

    Args:
        models: Name -> model (programmed if analog).
        example: One input batch (energies are per image).
        table: Per-event energies.
        per_layer: Return one row per layer instead of one per model.

    Returns:
        A DataFrame with event counts, energies in pJ per event class and ``total_nJ`` (the bitbybit score,
        which needs an accuracy drop, is :func:`aimc_lsh.eval.bitbybit_score`'s job).

    """
    frames = []
    for name, model in models.items():
        frame = energy_table(count_events(model, example, table), table, name)
        frames.append(frame)
    layers = pd.concat(frames, ignore_index=True).fillna(0.0)
    if per_layer:
        return layers
    numeric = layers.drop(columns=["layer", "kind"]).groupby("model", sort=False).sum()
    numeric["total_nJ"] = numeric["total_pJ"] / 1e3
    return numeric.reset_index()
