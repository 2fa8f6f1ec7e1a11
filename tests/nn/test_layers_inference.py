"""The inference (no_grad) path of hashed layers: in-place stages, patch norms, the finite check."""

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
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
def test_inference_equals_training_forward_and_unfold_reference(kernel, stride, padding, dilation, tile):
    torch.manual_seed(1)
    config = HashConfig(hash_length=40, input_tile_size=tile, output_tile_size=tile)
    layer = HashedConv2d(5, 3, kernel, stride, padding, dilation, config=config, seed=3)
    nn.init.normal_(layer.bias)
    x = torch.randn(2, 5, 9, 8)
    with torch.no_grad():
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


def test_linear_inference_equals_training_forward():
    torch.manual_seed(3)
    layer = HashedLinear(12, 5, config=HashConfig(hash_length=32, output_tile_size=2))
    x = torch.randn(4, 12)
    with torch.no_grad():
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
