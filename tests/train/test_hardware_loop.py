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
    with pytest.raises(ValueError, match="pcm"):  # the known profiles are named
        NoiseSpec(hardware_profile="flash")
    with pytest.raises(ValueError, match="not both"):
        NoiseSpec(hardware_profile="pcm", weight_device="pcm")
