import pytest
import torch
from torch import nn

from aimc_lsh.hardware import HardwareConfig, load_device
from aimc_lsh.hardware.programming import derive_seed
from aimc_lsh.nn.conventional import ConventionalConv2d
from aimc_lsh.train import NoiseSpec
from aimc_lsh.train.hardware_loop import HardwareInTheLoop

PCM = HardwareConfig(
    device=load_device("pcm"),
    placement="conventional",
    drift_compensation=True,
    drift_reference="random_sign",
)


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 5))


def test_training_forward_runs_on_the_programmed_array():
    net, x = _net().train(), torch.randn(4, 3, 32, 32)
    loop = HardwareInTheLoop(net, PCM, 86_400.0, seed=3)
    assert sorted(loop.layers) == ["0", "3"]
    with loop.engaged(step=7):
        hooked = net[0](x)
    # the same layer as the studies run it: programmed with the loop's seed for (step 7, "0"), drifted
    reference = ConventionalConv2d.from_digital(net[0], PCM)
    reference.hardware_program(derive_seed(3, "loop", 7, "0"))
    reference.hardware_drift(86_400.0)
    assert torch.allclose(hooked, reference(x), atol=1e-5)
    assert not torch.allclose(hooked, net[0](x), atol=1e-2)  # hooks gone after the block: digital again


def test_ideal_arrays_reproduce_the_digital_model_and_eval_mode_is_untouched():
    net, x = _net(), torch.randn(4, 3, 32, 32)
    ideal = HardwareInTheLoop(net, HardwareConfig(device=load_device("ideal"), placement="conventional"), 1.0)
    digital = net.train()(x)
    with ideal.engaged(step=0):
        assert torch.allclose(net(x), digital, atol=1e-4)
    net.eval()
    clean = net(x)
    with HardwareInTheLoop(net, PCM, 86_400.0).engaged(step=0):
        assert torch.equal(net(x), clean)


def test_gradients_pass_straight_through_to_the_digital_weights():
    net, x = _net().train(), torch.randn(4, 3, 32, 32)
    upstream = torch.randn(4, 5)
    (net(x) * upstream).sum().backward()
    digital_grad = net[3].weight.grad.clone()
    net.zero_grad()
    with HardwareInTheLoop(net, PCM, 86_400.0).engaged(step=0):
        out = net(x)
        (out * upstream).sum().backward()
    assert net[0].weight.grad is not None
    # the classifier's gradient is d(out)/dW of the digital layer at the *analog* input activations
    assert not torch.allclose(net[3].weight.grad, digital_grad)
    with HardwareInTheLoop(net, PCM, 86_400.0).engaged(step=0):
        features = net[:3](x)
    expected = upstream.t() @ features
    assert torch.allclose(net[3].weight.grad, expected, atol=1e-4)


def test_steps_draw_fresh_hardware_and_repeat_with_the_seed():
    net, x = _net().train(), torch.randn(4, 3, 32, 32)
    loop = HardwareInTheLoop(net, PCM, 86_400.0, seed=1)
    outs = []
    for step in (0, 1, 0):
        with loop.engaged(step), torch.no_grad():
            outs.append(net(x))
    assert not torch.allclose(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_bad_models_and_specs_are_rejected():
    with pytest.raises(ValueError, match="no nn.Conv2d / nn.Linear"):
        HardwareInTheLoop(nn.Sequential(nn.ReLU()), PCM, 1.0)
    with pytest.raises(ValueError, match="groups=1 only, got groups=2"):
        HardwareInTheLoop(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2)), PCM, 1.0)
    with pytest.raises(ValueError, match="t_inference"):
        HardwareInTheLoop(_net(), PCM, -1.0)
    assert HardwareInTheLoop.from_spec(_net(), NoiseSpec()) is None
    loop = HardwareInTheLoop.from_spec(_net(), NoiseSpec(hardware_profile="pcm", weight_t_inference=60.0))
    assert loop.t_inference == 60.0 and loop.config.drift_reference == "random_sign"
    spec = NoiseSpec(hardware_profile="pcm", hardware_drift_reference="one_hot")
    assert HardwareInTheLoop.from_spec(_net(), spec).config.drift_reference == "one_hot"
    with pytest.raises(ValueError, match="hardware_drift_reference must be one of one_hot, random_sign"):
        NoiseSpec(hardware_profile="pcm", hardware_drift_reference="column")
    with pytest.raises(ValueError, match="pcm"):  # the known profiles are named
        NoiseSpec(hardware_profile="flash")
    with pytest.raises(ValueError, match="not both"):
        NoiseSpec(hardware_profile="pcm", weight_device="pcm")


# ----------------------------------------------------------------------------- hashed layers in the loop
def _hashed_net(skip: tuple[str, ...] = ()) -> nn.Sequential:
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.nn import patch_model

    return patch_model(_net(), HashConfig(hash_length=32, seed=5), skip=skip)


def _reference_stages(layer, placement: str, seed: int):
    """The hardware stages drift_sweep.py evaluates with, programmed as the loop programs step 7."""
    import dataclasses

    from aimc_lsh.kernels import HashConfig

    fields = {f.name: getattr(layer.config, f.name) for f in dataclasses.fields(HashConfig)}
    config = HardwareConfig(**fields, device=load_device("pcm"), placement=placement,
                            drift_compensation=True, drift_reference="random_sign")  # fmt: skip
    stages = config.build_stages()
    stages.program_layer(layer, seed)
    stages.drift_layer(86_400.0)
    return stages


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
def test_hashed_training_forward_runs_on_the_hardware_stages(placement):
    net, x = _hashed_net().train(), torch.randn(4, 3, 32, 32)
    original = net[0].stages
    loop = HardwareInTheLoop(net, PCM, 86_400.0, seed=3, placement=placement)
    assert sorted(loop.hashed) == ["0", "3"] and loop.layers == {}  # hashed model: only hashed layers
    with loop.engaged(step=7), torch.no_grad():
        hooked = net[0](x)
    assert net[0].stages is original  # restored after the block
    reference = _reference_stages(net[0], placement, derive_seed(3, "loop", 7, "0"))
    net[0].stages = reference
    with torch.no_grad():
        expected = net[0](x)
    net[0].stages = original
    assert torch.allclose(hooked, expected, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(hooked, net[0](x), atol=1e-2)  # digital hashing after the block


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
def test_hashed_loop_gradients_reach_weights_learned_projections_and_thresholds(placement):
    from aimc_lsh.kernels import HashConfig
    from aimc_lsh.nn import patch_model

    config = HashConfig(kernel="learned_projection", hash_length=32, comparator_thresholds=True)
    net = patch_model(_net(), config).train()
    keys, x = set(net.state_dict()), torch.randn(4, 3, 32, 32)
    with HardwareInTheLoop(net, PCM, 86_400.0, placement=placement).engaged(step=0):
        net(x).square().sum().backward()
    names = (
        "0.weight",
        "3.weight",
        "0.kernels.0.P",
        "3.kernels.0.P",
        "0.kernels.0.threshold",
        "3.kernels.0.threshold",
    )
    for name in names:
        assert float(net.get_parameter(name).grad.abs().sum()) > 0, name
    assert set(net.state_dict()) == keys


def test_hashed_loop_keeps_training_wrappers_and_skipped_layers_digital():
    from aimc_lsh.train.noise import NoisyTrainingStages, inject_training_noise

    net, x = _hashed_net(skip=("3",)).train(), torch.randn(4, 3, 32, 32)
    inject_training_noise(net, NoiseSpec(sa_noise_std=0.1))
    wrapper = net[0].stages
    loop = HardwareInTheLoop(net, PCM, 86_400.0)
    assert sorted(loop.hashed) == ["0"] and loop.layers == {}  # the skipped classifier stays digital
    with loop.engaged(step=0):
        assert net[0].stages is wrapper and type(wrapper.inner).__name__ == "AnalogHashStages"
        assert isinstance(net[0].stages, NoisyTrainingStages)
        net(x)
    assert type(wrapper.inner).__name__ == "HashStages"
    net[0].eval()
    with loop.engaged(step=0):  # eval-mode layers keep their digital stages
        assert type(wrapper.inner).__name__ == "HashStages"


def test_hashed_loop_rejects_hardware_layers_and_unknown_placements():
    from aimc_lsh.nn import patch_model

    on_hardware = patch_model(_net(), HardwareConfig(device=load_device("pcm"), hash_length=16))
    with pytest.raises(ValueError, match="already runs on simulated hardware"):
        HardwareInTheLoop(on_hardware, PCM, 1.0)
    with pytest.raises(ValueError, match="codes_on_array, projection_on_array"):
        HardwareInTheLoop(_hashed_net(), PCM, 1.0, placement="conventional")
    with pytest.raises(ValueError, match="hardware_placement"):
        NoiseSpec(hardware_profile="pcm", hardware_placement="crossbar")
    loop = HardwareInTheLoop.from_spec(
        _hashed_net(), NoiseSpec(hardware_profile="pcm", hardware_placement="projection_on_array")
    )
    assert loop.placement == "projection_on_array" and sorted(loop.hashed) == ["0", "3"]
