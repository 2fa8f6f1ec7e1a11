"""Parameter and FLOP counts by hand on the digits CNN and ResNet-20."""

import pytest
from torch import nn

from aimc_lsh.eval.complexity import count_params_flops
from aimc_lsh.models import DigitsNet, resnet20_a


def test_digits_counts_by_hand():
    model = DigitsNet(channels=16).train()
    cost = count_params_flops(model, (1, 8, 8))
    conv_macs, fc_macs = 8 * 8 * 16 * 9, 16 * 16 * 10  # 3x3 conv on 8x8 (padding 1); 256 -> 10 linear
    assert [(c.path, c.macs) for c in cost.layers] == [("conv", conv_macs), ("fc", fc_macs)]
    assert cost.params == (16 * 9 + 16) + (256 * 10 + 10)
    assert cost.flops == 2 * (conv_macs + fc_macs)
    assert model.training  # the training flag is restored


def test_resnet20_totals_and_reduction():
    cost = count_params_flops(resnet20_a(), (3, 32, 32))
    assert cost.params == 269_722  # the published 0.27 M
    assert cost.macs == 40_551_040  # about 41 M multiply-accumulates per image
    smaller = nn.Sequential(nn.Conv2d(3, 8, 3))
    assert count_params_flops(smaller, (3, 32, 32)).reduction(count_params_flops(smaller, (3, 32, 32))) == (
        0,
        0,
    )


@pytest.mark.parametrize("shape", [(), (0, 8, 8), (1, 8.0, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match="input_shape must be positive integers without the batch dimension"):
        count_params_flops(DigitsNet(), shape)
