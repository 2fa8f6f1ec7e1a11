import math

import pytest
import torch
from torch import nn

from aimc_lsh.hardware import ADC, HardwareConfig, TileSpec, program
from aimc_lsh.hardware.energy import DEFAULT_ENERGY, EnergyTable, count_events, energy_report
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.conventional import convert_conventional


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 6, 3, padding=1)).eval()


X = torch.randn(2, 4, 5, 5)
POSITIONS, D, OUT, K = 25, 36, 6, 16


def test_adc_energies_grow_with_bits_and_one_bit_is_a_sense_amp():
    table = EnergyTable()
    energies = [table.adc_energy(b) for b in range(1, 13)]
    assert energies == sorted(energies)
    assert table.adc_energy(1) == table.sense_amp < table.adc_energy(8) / 100
    assert math.isclose(table.adc_energy(8), 1.67e-12)
    assert math.isclose(table.cell_read, 1.83e-15, rel_tol=0.01)
    assert table.replace(cell_read=1e-15).cell_read == 1e-15


def test_codes_on_array_counts():
    hw = HardwareConfig(hash_length=K, device="pcm", adc=ADC(bits=6))
    (events,) = count_events(program(patch_model(_conv_net(), hw)), X)
    assert events.kind == "codes_on_array"
    assert events.cell_reads == POSITIONS * OUT * K * 2  # differential pairs
    assert events.row_drives == POSITIONS * K  # +-1 inputs: one bit each
    assert events.adc_conversions == {6: POSITIONS * OUT}
    assert events.digital_macs == POSITIONS * (D + K * D)  # patch norm + digital projection
    assert events.sense_amp_decisions == 0 and events.popcount_bits == 0


def test_projection_on_array_counts_and_split_tiles():
    hw = HardwareConfig(hash_length=K, device="pcm", placement="projection_on_array")
    (events,) = count_events(program(patch_model(_conv_net(), hw)), X)
    assert events.cell_reads == POSITIONS * K * D * 2
    assert events.row_drives == POSITIONS * D * DEFAULT_ENERGY.input_bits
    assert events.sense_amp_decisions == POSITIONS * K
    assert events.popcount_bits == POSITIONS * OUT * K
    assert events.adc_conversions == {}
    split = hw.replace(tile=TileSpec(rows=20))
    (events,) = count_events(program(patch_model(_conv_net(), split)), X)
    assert events.sense_amp_decisions == 0 and events.adc_conversions == {8: POSITIONS * K * 2}


def test_conventional_and_digital_counts_and_ideal_adc_pricing():
    config = HardwareConfig(placement="conventional", device="reram", adc=ADC())
    (events,) = count_events(program(convert_conventional(_conv_net(), config)), X)
    assert events.cell_reads == POSITIONS * OUT * D  # CMO ReRAM: one device per weight
    assert events.adc_conversions == {DEFAULT_ENERGY.ideal_adc_bits: POSITIONS * OUT}
    reference = program(convert_conventional(_conv_net(), config.replace(backend="aihwkit")))
    (aihwkit_events,) = count_events(reference, X)
    assert aihwkit_events.cell_reads == events.cell_reads
    (digital,) = count_events(_conv_net(), X)
    assert digital.kind == "digital" and digital.digital_macs == POSITIONS * OUT * D
    (hashed,) = count_events(patch_model(_conv_net(), HashConfig(hash_length=K)), X)
    assert hashed.kind == "hashed_digital" and hashed.popcount_bits == POSITIONS * OUT * K


def test_linear_layers_count_one_mvm_per_sample():
    net = nn.Sequential(nn.Flatten(), nn.Linear(100, 10))
    (events,) = count_events(net, torch.randn(3, 4, 5, 5))
    assert events.digital_macs == 1000


def test_report_compares_placements():
    net = _conv_net()
    models = {
        "codes": program(patch_model(net, HardwareConfig(hash_length=K, device="pcm"))),
        "projection": program(
            patch_model(net, HardwareConfig(hash_length=K, placement="projection_on_array"))
        ),
        "conventional": program(convert_conventional(net, HardwareConfig(placement="conventional"))),
    }
    report = energy_report(models, X)
    assert list(report["model"]) == ["codes", "projection", "conventional"]
    assert (report["total_nJ"] > 0).all()
    parts = ["cells_pJ", "drives_pJ", "sense_amps_pJ", "adcs_pJ", "popcount_pJ", "digital_pJ"]
    assert report[parts].sum(axis=1).round(6).equals(report["total_pJ"].round(6))
    cheaper = energy_report(models, X, table=DEFAULT_ENERGY.replace(cell_read=0.0, row_drive_per_bit=0.0))
    assert (cheaper["total_pJ"] < report["total_pJ"]).all()
    layers = energy_report(models, X, per_layer=True)
    assert set(layers["kind"]) == {"codes_on_array", "projection_on_array", "conventional"}


def test_unprogrammed_models_raise():
    with pytest.raises(RuntimeError, match="program"):
        count_events(patch_model(_conv_net(), HardwareConfig(hash_length=K, device="pcm")), X)


def test_biases_centring_and_comparator_thresholds_are_counted():
    net = _conv_net()  # the convolution has a bias
    (digital,) = count_events(net, X)
    assert digital.digital_ops == POSITIONS * OUT  # one addition per output
    plain_config = HashConfig(hash_length=K)
    (plain,) = count_events(patch_model(net, plain_config), X)
    assert plain.digital_ops == POSITIONS * OUT * (4 + 1)  # cosine, two norm scalings, accumulate; bias
    (thresholds,) = count_events(patch_model(net, plain_config.replace(comparator_thresholds=True)), X)
    assert thresholds.digital_ops - plain.digital_ops == POSITIONS * K  # one reference per bit
    (centred,) = count_events(patch_model(net, plain_config.replace(center_inputs=True)), X)
    assert centred.digital_ops - plain.digital_ops == X[0].numel() + POSITIONS * OUT  # x - c, + conv(c, W)
    hw = HardwareConfig(placement="conventional", device="pcm")
    (fast,) = count_events(program(convert_conventional(net, hw)), X)
    (reference,) = count_events(program(convert_conventional(net, hw.replace(backend="aihwkit"))), X)
    assert fast.digital_ops == reference.digital_ops  # the aihwkit layer's bias counted the same way
    net[0].bias = None
    (unbiased,) = count_events(program(convert_conventional(net, hw)), X)
    assert fast.digital_ops - unbiased.digital_ops == POSITIONS * OUT
