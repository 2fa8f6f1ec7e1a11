import pytest
import torch
from torch import nn

from aimc_lsh.hardware import HardwareConfig, program
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.conventional import ConventionalConv2d, ConventionalLinear, convert_conventional


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.Conv2d(6, 6, 1, bias=False), nn.ReLU())
        self.head = nn.Linear(6, 4)

    def forward(self, x):
        return self.head(self.block(self.conv(x)).mean(dim=(2, 3)))


def test_convert_swaps_layers_copies_weights_and_keeps_the_original():
    net = Net().eval()
    model = convert_conventional(net, HardwareConfig(placement="conventional"))
    assert type(model.conv) is ConventionalConv2d and type(model.head) is ConventionalLinear
    assert type(net.conv) is nn.Conv2d
    assert torch.equal(model.conv.weight, net.conv.weight) and model.block[0].bias is None
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(program(model)(x), net(x), atol=1e-5)


def test_patch_model_dispatches_the_conventional_placement():
    net = Net()
    model = patch_model(net, HardwareConfig(placement="conventional", device="pcm"), skip=["head"])
    assert type(model.conv) is ConventionalConv2d and type(model.head) is nn.Linear


def test_skip_filter_and_errors():
    net = Net()
    config = HardwareConfig(placement="conventional")
    model = convert_conventional(net, config, skip=["block"], filter_fn=lambda path, m: path != "head")
    assert type(model.block[0]) is nn.Conv2d and type(model.head) is nn.Linear
    with pytest.raises(ValueError, match="skip names no Linear/Conv2d layer: nope"):
        convert_conventional(net, config, skip=["nope"])
    with pytest.raises(TypeError, match="HardwareConfig"):
        convert_conventional(net, object())
    with pytest.raises(ValueError, match="filter_fn"):
        convert_conventional(net, config.replace(backend="aihwkit"), filter_fn=lambda p, m: True)
    inplace = convert_conventional(net, config, inplace=True)
    assert inplace is net and type(net.conv) is ConventionalConv2d


def test_layers_round_trip_to_digital_and_check_inputs():
    net = Net()
    model = program(convert_conventional(net, HardwareConfig(placement="conventional")))
    conv, linear = model.conv.to_digital(), model.head.to_digital()
    assert torch.equal(conv.weight, net.conv.weight) and torch.equal(linear.bias, net.head.bias)
    assert model.head(torch.randn(5, 7, 6)).shape == (5, 7, 4)
    with pytest.raises(ValueError, match="expects"):
        model.conv(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match="expects"):
        model.head(torch.randn(2, 5))
    with pytest.raises(ValueError, match="groups=1"):
        ConventionalConv2d.from_digital(
            nn.Conv2d(4, 4, 3, groups=2), HardwareConfig(placement="conventional")
        )


def test_nan_inputs_dtypes_and_small_images_are_named():
    model = program(convert_conventional(Net(), HardwareConfig(placement="conventional")))
    with pytest.raises(ValueError, match="ConventionalConv2d received NaN or inf inputs"):
        model.conv(torch.full((2, 3, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="ConventionalLinear received NaN or inf inputs"):
        model.head(torch.tensor([[1.0, float("inf"), 0.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(
        TypeError, match="ConventionalConv2d expects torch.float32 inputs .* got torch.float64"
    ):
        model.conv(torch.randn(2, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="ConventionalConv2d expects inputs of at least 1 x 1 pixels"):
        model.conv(torch.randn(2, 3, 0, 8))
