"""Product-quantized layers on hardware: the table on analog tiles, program/drift, energy events."""

import pytest
import torch

from aimc_lsh.hardware import ADC, HardwareConfig, TileSpec, analog_layers, count_events, drift, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import PQConv2d, calibrate_pq, patch_model, pq_layers
from aimc_lsh.nn.conventional import ConventionalConv2d

PQ = {"kernel": "product_quantization", "hash_length": 16}


@pytest.fixture
def digital_pq(tiny_net, tiny_input):
    return calibrate_pq(patch_model(tiny_net, HashConfig(**PQ)), [tiny_input])


def _on(tiny_net, digital_pq, **hardware):
    analog = patch_model(tiny_net, HardwareConfig(**PQ, **hardware))
    analog.load_state_dict(digital_pq.state_dict())
    return analog


def test_ideal_tiles_reproduce_the_digital_pq_model(tiny_net, digital_pq, tiny_input):
    analog = _on(tiny_net, digital_pq, device="ideal", tile=TileSpec(rows=100, cols=100))  # split tables
    assert analog.conv2.array.plan.n_tiles > 1
    program(analog, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(analog(tiny_input), digital_pq(tiny_input), rtol=1e-5, atol=1e-5)
        drift(analog, 86_400)  # the ideal device does not drift
        torch.testing.assert_close(analog(tiny_input), digital_pq(tiny_input), rtol=1e-5, atol=1e-5)


def test_pcm_tables_change_outputs_and_drift_degrades_them(tiny_net, digital_pq, tiny_input):
    analog = _on(tiny_net, digital_pq, device="pcm", drift_compensation=False, adc=ADC(bits=None))
    with torch.no_grad():
        exact = digital_pq.conv1(tiny_input)
        program(analog, seed=0)

        def error(t):
            drift(analog, t)
            return (analog.conv1(tiny_input) - exact).abs().mean().item()

        fresh, day, year = error(1.0), error(86_400), error(365 * 86_400)
        assert 0 < fresh < exact.abs().mean().item() / 2
        assert fresh < day < year and year > 2 * fresh  # no compensation: the looked-up entries decay
        program(analog, seed=0)
        assert error(1.0) == pytest.approx(fresh)  # same seed, same programmed table and reads
        assert not torch.allclose(analog(tiny_input), digital_pq(tiny_input), atol=1e-3)


def test_digital_tables_are_not_analog_layers_and_calibration_comes_first(tiny_net, digital_pq):
    assert analog_layers(digital_pq) == []
    with pytest.raises(ValueError, match="no analog layers"):
        program(digital_pq)
    uncalibrated = patch_model(tiny_net, HardwareConfig(**PQ, device="pcm"))
    assert [p for p, _ in analog_layers(uncalibrated)] == ["conv1", "conv2", "fc"]
    with pytest.raises(RuntimeError, match="not calibrated"):
        program(uncalibrated)


def test_placements_pq_supports(tiny_net):
    with pytest.raises(ValueError, match="cannot run with placement='projection_on_array'"):
        HardwareConfig(**PQ, placement="projection_on_array")
    baseline = patch_model(tiny_net, HardwareConfig(**PQ, placement="conventional", device="pcm"))
    assert isinstance(baseline.conv1, ConventionalConv2d)  # the baseline needs no PQ
    with pytest.raises(ValueError, match="no conventional placement"):
        PQConv2d(8, 4, 3, config=HardwareConfig(**PQ, placement="conventional"))


def test_energy_events_of_pq_layers(tiny_net, digital_pq, tiny_input):
    # conv1: 8 -> 16 channels, 3x3 (V = 9: 8 books), 8x8 positions; K = 16
    positions, books, k, v, out = 64, 8, 16, 9, 16
    digital = {e.layer: e for e in count_events(digital_pq, tiny_input)}
    assert digital["conv1"].kind == "pq_digital"
    assert digital["conv1"].digital_macs == positions * books * k * v  # distances
    assert digital["conv1"].digital_ops == positions * (
        books * k * 2 + books * out * 2
    )  # argmin; reads, adds
    assert digital["conv1"].cell_reads == 0
    analog = _on(tiny_net, digital_pq, device="pcm", adc=ADC(bits=6), tile=TileSpec(rows=64, cols=512))
    events = {e.layer: e for e in count_events(program(analog), tiny_input)}
    conv1 = events["conv1"]
    assert conv1.kind == "pq_codes_on_array" and conv1.digital_macs == positions * books * k * v
    assert conv1.cell_reads == positions * books * out * 2  # only the selected rows, differential pairs
    assert conv1.row_drives == positions * books  # 1-bit one-hot drives
    assert conv1.adc_conversions == {6: positions * out * 2}  # 128 table rows on 64-row tiles
    assert events["fc"].kind == "pq_codes_on_array" and len(events) == len(list(pq_layers(analog)))


def test_table_lookup_equals_the_one_hot_read_of_the_array(tiny_net, digital_pq, tiny_input):
    analog = _on(tiny_net, digital_pq, device="pcm", adc=ADC(bits=6), tile=TileSpec(rows=100, cols=100))
    layer = analog.conv2
    x = torch.relu(digital_pq.conv1(tiny_input)).detach()
    with torch.no_grad():
        program(analog, seed=1)
        drift(analog, 3600.0)
        one_hot = layer.array(layer.codes(x))  # the word-line view: a 0/1 input per table row
        program(analog, seed=1)  # restart the per-read noise stream
        drift(analog, 3600.0)
        looked_up = layer.array.lookup(*layer.table_rows(x))
    assert layer.array.plan.n_tiles > 1 and layer.array.read_noise_std > 0
    torch.testing.assert_close(looked_up, one_hot, rtol=1e-5, atol=1e-5)
