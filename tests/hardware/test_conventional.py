"""Conventional AIMC fast path vs aihwkit's own convert_to_analog model on the same device."""

import pytest
import torch

from aimc_lsh.hardware import ADC, HardwareConfig, TileSpec, drift, load_device, program
from aimc_lsh.hardware.conventional import ConventionalArray
from aimc_lsh.kernels import ConvGeometry
from aimc_lsh.nn.conventional import convert_conventional


def _forward(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("tile", [TileSpec(), TileSpec(rows=50, cols=7), TileSpec(rows=27, cols=5)])
@pytest.mark.parametrize("adc", [ADC(), ADC(bits=8)])
def test_fast_path_equals_aihwkit_convert_to_analog_with_shared_draws(tiny_net, tiny_input, tile, adc):
    device = load_device("pcm").replace(read_noise_std=0.0)
    config = HardwareConfig(
        placement="conventional", device=device, adc=adc, tile=tile, drift_reference="one_hot"
    )
    fast = program(convert_conventional(tiny_net, config), seed=5)
    reference = program(convert_conventional(tiny_net, config.replace(backend="aihwkit")), seed=5)
    for t in (None, 3600.0, 3.15e7):
        if t is not None:
            drift(fast, t)
            drift(reference, t)
        yf, yr = _forward(fast, tiny_input), _forward(reference, tiny_input)
        assert (yf - yr).abs().max() <= 1e-5 * yr.abs().max()


def test_fast_path_agrees_statistically_with_per_read_noise(tiny_net, tiny_input):
    config = HardwareConfig(placement="conventional", device="pcm")
    fast = program(convert_conventional(tiny_net, config), seed=0)
    reference = program(convert_conventional(tiny_net, config.replace(backend="aihwkit")), seed=0)
    yf = torch.stack([_forward(fast, tiny_input) for _ in range(12)])
    yr = torch.stack([_forward(reference, tiny_input) for _ in range(12)])
    # Same distribution => the mean difference over reads is a standard-normal multiple of its error.
    se = ((yf.var(0) + yr.var(0)) / yf.shape[0]).sqrt()
    z2 = ((yf.mean(0) - yr.mean(0)) / se).square().mean()
    assert z2 < 1.6, z2
    assert 0.8 < yf.std(0).mean() / yr.std(0).mean() < 1.25


def test_ideal_conventional_layer_is_the_digital_layer(tiny_net, tiny_input):
    model = program(convert_conventional(tiny_net, HardwareConfig(placement="conventional")))
    assert torch.allclose(_forward(model, tiny_input), _forward(tiny_net, tiny_input), atol=1e-5, rtol=1e-5)


def test_adc_resolution_sets_the_error(tiny_net, tiny_input):
    digital = _forward(tiny_net, tiny_input)
    errors = []
    for bits in (3, 5, 8):
        config = HardwareConfig(placement="conventional", adc=ADC(bits=bits, full_scale=4.0))
        out = _forward(program(convert_conventional(tiny_net, config)), tiny_input)
        errors.append(((out - digital).norm() / digital.norm()).item())
    assert errors[0] > errors[1] > errors[2]


def test_array_requires_programming_and_wan_times():
    config = HardwareConfig(placement="conventional", device="reram_wan2022")
    array = ConventionalArray(config, 4, 3, (3, 3), ConvGeometry(padding=(1, 1)))
    with pytest.raises(RuntimeError, match="not programmed"):
        array(torch.randn(1, 3, 5, 5))
    with pytest.raises(RuntimeError, match="program"):
        array.drift(1.0)
    array.program(torch.randn(4, 3, 3, 3), seed=0)
    array.drift(86400)
    with pytest.raises(ValueError, match="1 s, 1 day, 2 days"):
        array.drift(3600)
