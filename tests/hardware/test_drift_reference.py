"""Drift-compensation read-out inputs: aihwkit's one-hot rows vs fixed random-sign vectors."""

import pytest
import torch
from torch import nn

from aimc_lsh.hardware import ADC, HardwareConfig, drift, load_device, program
from aimc_lsh.hardware.programming import DRIFT_REFERENCE_VECTORS, drift_matrix, reference_inputs
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.conventional import convert_conventional


def test_reference_inputs():
    assert torch.equal(reference_inputs(5), torch.eye(5))
    signs = reference_inputs(300, "random_sign")
    assert signs.shape == (DRIFT_REFERENCE_VECTORS, 300) and set(signs.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(signs, reference_inputs(300, "random_sign"))  # the same at programming and after drift
    assert abs(float(signs.mean())) < 0.1
    with pytest.raises(ValueError, match="unknown drift reference 'ones'; allowed: one_hot, random_sign"):
        reference_inputs(4, "ones")


def test_config_validates_and_round_trips_the_reference():
    config = HardwareConfig(device="pcm", placement="conventional", drift_reference="random_sign")
    assert HardwareConfig.from_dict(config.to_dict()).drift_reference == "random_sign"
    with pytest.raises(ValueError, match="unknown drift_reference 'eye'; allowed: one_hot, random_sign"):
        HardwareConfig(drift_reference="eye")


def test_default_reference_is_random_sign_on_fast_and_aihwkits_own_on_aihwkit(tiny_net, tiny_input):
    fast = HardwareConfig(device="pcm", placement="conventional")
    assert fast.drift_reference is None and fast.effective_drift_reference == "random_sign"
    assert fast.replace(backend="aihwkit").effective_drift_reference == "one_hot"
    outputs = []
    for reference in (None, "random_sign"):
        model = program(convert_conventional(tiny_net, fast.replace(drift_reference=reference)), seed=5)
        drift(model, 86_400.0)
        with torch.no_grad():
            outputs.append(model(tiny_input))
    assert torch.equal(*outputs)


def _alpha_and_output_ratio(layer: nn.Module, reference: str) -> tuple[float, float]:
    """The compensation factor after 1 day on PCM (8-bit ADC) and the factor the outputs need."""
    config = HardwareConfig(
        device="pcm", placement="conventional", adc=ADC(bits=8), drift_reference=reference
    )
    model = program(convert_conventional(nn.Sequential(layer), config), seed=3)
    array = model[0].array
    programmed = array._programmed.clone()
    drift(model, 86_400.0)
    drifted = drift_matrix(array.noise_model, programmed, array._params, array.plan, 86_400.0, array.seed)
    x = torch.randn(256, programmed.shape[1], generator=torch.Generator().manual_seed(0))
    needed = float((x @ programmed.T).abs().mean() / (x @ drifted.T).abs().mean())
    return float(array.alpha.mean()), needed


def test_random_sign_reference_compensates_what_one_hot_reads_below_the_adc_step():
    torch.manual_seed(0)
    layer = nn.Conv2d(16, 32, 3)
    with torch.no_grad():  # Gaussian weights as in a trained network: most far below the tile's max |W|
        layer.weight.normal_(0.0, 0.05)
    one_hot, needed = _alpha_and_output_ratio(layer, "one_hot")
    random_sign, same = _alpha_and_output_ratio(layer, "random_sign")
    assert needed == same and needed > 1.3  # PCM conductances decay by about a third in a day
    assert abs(random_sign / needed - 1) < 0.04
    assert abs(one_hot / needed - 1) > 2 * abs(random_sign / needed - 1)  # quantised single weights


def test_random_sign_reference_changes_the_output_and_is_fast_backend_only(tiny_net, tiny_input):
    device = load_device("pcm").replace(read_noise_std=0.0)
    outputs = []
    for reference in ("one_hot", "random_sign"):
        config = HardwareConfig(placement="conventional", device=device, drift_reference=reference)
        model = program(convert_conventional(tiny_net, config), seed=5)
        drift(model, 86_400.0)
        with torch.no_grad():
            outputs.append(model(tiny_input))
    assert not torch.allclose(*outputs)
    with pytest.raises(ValueError, match="simulated by the fast backend only"):
        HardwareConfig(placement="conventional", backend="aihwkit", drift_reference="random_sign")


def test_random_sign_reference_compensates_code_tiles(tiny_net, tiny_input):
    """One-hot read-outs of +-1 codes against a k-row full scale are below one step: factor exactly 1."""
    device = load_device("pcm").replace(read_noise_std=0.0)
    factors = {}
    for reference in ("one_hot", "random_sign"):
        config = HardwareConfig(hash_length=256, device=device, drift_reference=reference)
        model = program(patch_model(tiny_net, config), seed=2)
        drift(model, 86_400.0)
        state = next(iter(model.conv2.stages.tiles.values()))
        factors[reference] = float(state.match_alpha.mean())
    assert factors["one_hot"] == 1.0
    assert 1.3 < factors["random_sign"] < 1.8  # PCM conductances decay by about a third in a day
