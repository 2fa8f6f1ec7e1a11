import pytest
import torch
from torch import nn

from aimc_lsh.hardware import HardwareConfig, analog_layers, drift, program
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.conventional import convert_conventional


def test_program_and_drift_need_analog_layers(tiny_net):
    with pytest.raises(ValueError, match="no analog layers"):
        program(tiny_net)
    with pytest.raises(ValueError, match="no analog layers"):
        drift(tiny_net, 10)


def test_analog_layers_are_found_for_every_backend(tiny_net):
    hashed = patch_model(tiny_net, HardwareConfig(hash_length=16), skip=["fc"])
    assert [p for p, _ in analog_layers(hashed)] == ["conv1", "conv2"]
    conventional = convert_conventional(tiny_net, HardwareConfig(placement="conventional"))
    assert [p for p, _ in analog_layers(conventional)] == ["conv1", "conv2", "fc"]
    reference = convert_conventional(tiny_net, HardwareConfig(placement="conventional", backend="aihwkit"))
    assert [p for p, _ in analog_layers(reference)] == ["conv1", "conv2", "fc"]


def test_program_returns_the_model_and_drift_programs_first(tiny_net, tiny_input):
    hw = HardwareConfig(hash_length=16, device="pcm")
    model = patch_model(tiny_net, hw)
    assert drift(model, 60.0) is model  # programs with seed 0, then drifts
    assert model.conv1.stages.t_inference == 60.0
    again = drift(program(patch_model(tiny_net, hw), seed=0), 60.0)
    with torch.no_grad():
        assert torch.equal(model(tiny_input), again(tiny_input))


def test_invalid_seed_and_time(tiny_net):
    model = patch_model(tiny_net, HardwareConfig(hash_length=16, device="reram_wan2022"))
    with pytest.raises(ValueError, match="seed"):
        program(model, seed=-1)
    program(model, seed=0)
    with pytest.raises(ValueError, match="only has data at"):
        drift(model, 3600)
    with pytest.raises(ValueError, match="t_inference"):
        drift(model, -5)
    drift(model, 86400)


def test_layers_in_nested_modules_get_distinct_draws():
    net = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Conv2d(4, 4, 3))
    with torch.no_grad():
        net[1].weight.copy_(net[0].weight)
        net[1].bias.copy_(net[0].bias)
    model = program(
        patch_model(net, HardwareConfig(hash_length=16, device="pcm", kernel="random_projection"))
    )
    a = model[0].stages.tiles[(0, 0)].sa_offsets
    b = model[1].stages.tiles[(0, 0)].sa_offsets
    assert not torch.equal(a, b)


def test_aihwkit_models_program_reproducibly_and_drift_programs_first(tiny_net, tiny_input):
    config = HardwareConfig(placement="conventional", device="pcm", backend="aihwkit")
    a = drift(convert_conventional(tiny_net, config), 60.0)
    b = drift(program(convert_conventional(tiny_net, config), seed=0), 60.0)
    with torch.no_grad():
        first = a(tiny_input)
        assert torch.equal(first, b(tiny_input))
        program(a, seed=0)
        drift(a, 60.0)
        assert torch.equal(a(tiny_input), first)  # reprogramming restarts the per-read noise too
