"""The inference (no_grad) path of hashed layers: in-place stages, native Hamming stage, finite check."""

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig, native_hamming
from aimc_lsh.nn import HashedConv2d, HashedLinear, unfold_forward
from aimc_lsh.nn.digital import check_finite as _check_finite

GEOMETRIES = [
    # kernel, stride, padding, dilation
    ((3, 3), (1, 1), (1, 1), (1, 1)),
    ((3, 3), (2, 2), (1, 1), (1, 1)),
    ((3, 2), (1, 2), (2, 1), (2, 1)),
    ((1, 1), (1, 1), (0, 0), (1, 1)),
    ((1, 1), (2, 2), (0, 0), (1, 1)),
    ((1, 1), (1, 1), (1, 0), (3, 1)),
    ((2, 3), (3, 1), (0, 2), (1, 2)),
]


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation"), GEOMETRIES)
@pytest.mark.parametrize("tile", [None, 2])
@pytest.mark.parametrize("native", [True, False], ids=["native-hamming", "torch-steps"])
def test_inference_equals_training_forward_and_unfold_reference(
    kernel, stride, padding, dilation, tile, native
):
    torch.manual_seed(1)
    config = HashConfig(hash_length=40, input_tile_size=tile, output_tile_size=tile)
    layer = HashedConv2d(5, 3, kernel, stride, padding, dilation, config=config, seed=3)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad(), native_hamming(native):
        fast = layer(x)
    trained = layer(x)  # autograd path (parameters require grad)
    assert trained.requires_grad and not fast.requires_grad
    torch.testing.assert_close(fast, trained, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fast, unfold_forward(layer, x), rtol=1e-5, atol=1e-5)


def test_inference_leaves_the_input_and_parameters_untouched():
    torch.manual_seed(2)
    layer = HashedConv2d(4, 6, 3, padding=1, config=HashConfig(hash_length=16))
    x = torch.randn(2, 4, 6, 6).contiguous(memory_format=torch.channels_last)
    x0, state0 = x.clone(), {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        layer(x)
    assert torch.equal(x, x0)
    assert all(torch.equal(v, state0[k]) for k, v in layer.state_dict().items())


@pytest.mark.parametrize("native", [True, False], ids=["native-hamming", "torch-steps"])
def test_linear_inference_equals_training_forward(native):
    torch.manual_seed(3)
    layer = HashedLinear(12, 5, config=HashConfig(hash_length=32, output_tile_size=2))
    x = torch.randn(4, 12)
    with torch.no_grad(), native_hamming(native):
        fast = layer(x)
    torch.testing.assert_close(fast, layer(x), rtol=1e-5, atol=1e-5)


def test_gradients_still_flow_through_the_training_path():
    torch.manual_seed(4)
    layer = HashedConv2d(3, 4, 3, padding=1, config=HashConfig(hash_length=16, ste="clipped"))
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    assert layer.weight.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_finite_check_raises_on_nan_or_inf_but_not_on_a_sum_that_overflows():
    _check_finite(torch.full((4, 3), 3e38), "layer")  # the sum overflows, every element is finite
    _check_finite(torch.zeros(0), "layer")
    for bad in (float("nan"), float("inf"), float("-inf")):
        x = torch.ones(2, 3)
        x[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            _check_finite(x, "layer")


def test_a_stack_of_hashed_layers_gives_the_same_bits_with_the_native_stage_and_the_torch_steps():
    """Studies evaluate ideal hashed models through the native stage: their numbers must not move."""
    torch.manual_seed(5)
    config = HashConfig(hash_length=72)
    model = nn.Sequential(
        HashedConv2d(3, 8, 3, padding=1, config=config, seed=1),
        nn.ReLU(),
        HashedConv2d(8, 8, 3, stride=2, padding=1, config=config, seed=2),
        nn.BatchNorm2d(8).eval(),
        nn.Flatten(),
        HashedLinear(8 * 5 * 5, 4, config=config, seed=3),
    )
    x = torch.randn(6, 3, 10, 10)
    with torch.no_grad():
        native = model(x)
        with native_hamming(False):
            steps = model(x)
    assert torch.equal(native, steps)


@pytest.mark.parametrize("layer_class", ["conv", "linear"])
def test_weights_that_turn_nan_after_building_are_an_error_not_silent_zeros(layer_class):
    torch.manual_seed(6)
    if layer_class == "conv":
        layer, x = HashedConv2d(3, 4, 3, config=HashConfig(hash_length=16)), torch.randn(2, 3, 5, 5)
    else:
        layer, x = HashedLinear(6, 4, config=HashConfig(hash_length=16)), torch.randn(2, 6)
    with torch.no_grad():
        layer(x)  # finite weights: fine
        layer.weight.view(-1)[5] = float("nan")
    for grad in (False, True):
        with torch.set_grad_enabled(grad), pytest.raises(ValueError, match="weight holds 1 NaN or inf value"):
            layer(x)


class CountingConv(HashedConv2d):
    """Counts how often the weights are hashed."""

    def weight_codes(self, i, j):
        self.hashings = getattr(self, "hashings", 0) + 1
        return super().weight_codes(i, j)


@pytest.mark.parametrize("native", [True, False], ids=["native-hamming", "torch-steps"])
def test_inference_reuses_the_weight_codes_until_the_weight_or_projection_changes(native):
    torch.manual_seed(7)
    config = HashConfig(kernel="learned_projection", hash_length=24, output_tile_size=3)
    layer = CountingConv(4, 6, 3, padding=1, config=config)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad(), native_hamming(native):
        first = layer(x)
        assert layer.hashings == 2  # two output tiles
        assert torch.equal(layer(x), first) and layer.hashings == 2  # reused
        layer.weight.data[0, 0, 1, 1] += 1.0  # through .data: no version bump, still seen
        torch.testing.assert_close(layer(x), unfold_forward(layer, x), rtol=1e-5, atol=1e-5)
        assert layer.hashings == 3  # output channel 0: only the first tile is hashed again
        layer.kernel(0, 1).P.data.add_(torch.randn(24, 36))  # P of the second output tile
        changed = layer(x)
        torch.testing.assert_close(changed, unfold_forward(layer, x), rtol=1e-5, atol=1e-5)
        assert layer.hashings == 4 and not torch.equal(changed[:, 3:], first[:, 3:])
    layer(x)  # training path: hashed afresh, with gradients
    assert layer.hashings == 6
