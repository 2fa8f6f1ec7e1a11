"""Layer widths: recorded for every layer, and a backbone resized to a merged network's widths."""

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import DigitsNet, resnet20_a, resnet20_b
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.merging import MergeConfig, merge_neurons
from aimc_lsh.nn.widths import layer_widths, resize_to_widths


@pytest.mark.parametrize("build", [resnet20_a, resnet20_b])
def test_a_backbone_resized_to_a_merged_resnet_loads_its_weights_strictly(build):
    torch.manual_seed(0)
    backbone = build().eval()
    merged, report = merge_neurons(backbone, MergeConfig(target_ratio=0.5))
    assert report.channels_after < report.channels_before
    widths = layer_widths(merged)
    assert widths["layer1.0.conv1"] == {"in": 16, "out": merged.layer1[0].conv1.out_channels}
    assert widths["layer1.0.bn1"]["in"] == widths["layer1.0.bn1"]["out"] < 16

    resized = resize_to_widths(backbone, widths)
    resized.load_state_dict(merged.state_dict())  # strict: every shape fits
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(resized.eval()(x), merged(x))
    assert backbone.layer1[0].conv1.out_channels == 16  # not in place
    assert layer_widths(resized) == widths


def test_widths_of_patched_layers_and_no_change_for_equal_widths():
    torch.manual_seed(0)
    model = DigitsNet(channels=8)
    hashed = patch_model(model, HashConfig(hash_length=16))
    assert (
        layer_widths(hashed)
        == layer_widths(model)
        == {
            "conv": {"in": 1, "out": 8},
            "fc": {"in": 8 * 16, "out": 10},
        }
    )
    same = resize_to_widths(model, layer_widths(model), inplace=True)
    assert same is model and same.conv.weight is model.conv.weight  # nothing rebuilt


def test_resizing_keeps_layer_options():
    model = nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(6, eps=1e-3))
    model[1].train(False)
    resized = resize_to_widths(model, {"0": {"in": 4, "out": 3}, "1": {"in": 3, "out": 3}})
    conv, norm = resized[0], resized[1]
    assert (conv.in_channels, conv.out_channels, conv.stride, conv.padding, conv.bias) == (
        4,
        3,
        (2, 2),
        (1, 1),
        None,
    )
    assert norm.num_features == 3 and norm.eps == 1e-3 and not norm.training


def test_bad_widths_name_the_layer():
    torch.manual_seed(0)
    model = DigitsNet(channels=8)
    with pytest.raises(ValueError, match="widths name layer 'conv2', which the model lacks"):
        resize_to_widths(model, {"conv2": {"in": 1, "out": 4}})
    with pytest.raises(ValueError, match="layer 'pool' .* has no input/output widths"):
        resize_to_widths(nn.ModuleDict({"pool": nn.MaxPool2d(2)}), {"pool": {"in": 1, "out": 1}})
    hashed = patch_model(model, HashConfig(hash_length=16))
    with pytest.raises(ValueError, match="only digital Conv2d, Linear and BatchNorm layers can be resized"):
        resize_to_widths(hashed, {"conv": {"in": 1, "out": 4}})
    with pytest.raises(ValueError, match="BatchNorm layer '0' cannot have different widths"):
        resize_to_widths(nn.Sequential(nn.BatchNorm2d(4)), {"0": {"in": 4, "out": 2}})
