"""Product-quantized layers: conv-shaped computation vs an unfold reference, STE gradients, errors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import HashedConv2d, PQConv2d, PQLinear, calibrate_pq

PQ = HashConfig(kernel="product_quantization", hash_length=16)


def _calibrated(layer: nn.Module, x: torch.Tensor, seed: int = 0) -> nn.Module:
    return calibrate_pq(nn.Sequential(layer), [x], seed=seed)[0]


def _unfold_reference(layer: PQConv2d, x: torch.Tensor) -> torch.Tensor:
    """The same layer the im2col way: patches -> flat kernel (nearest centroid, table) -> fold back."""
    g = layer.geometry
    patches = F.unfold(x, layer.kernel_size, g.dilation, g.padding, g.stride)  # (N, d, L)
    n, d, positions = patches.shape
    flat = layer.kernel(patches.transpose(1, 2).reshape(-1, d), layer.weight.flatten(1))  # (N*L, out)
    h = (x.shape[2] + 2 * g.padding[0] - g.dilation[0] * (layer.kernel_size[0] - 1) - 1) // g.stride[0] + 1
    out = flat.reshape(n, positions, -1).transpose(1, 2).reshape(n, -1, h, positions // h)
    return out + layer.bias.view(1, -1, 1, 1)


@pytest.mark.parametrize(
    "stride,padding,dilation,v,bits",
    [(1, 0, 1, None, 8), (1, 1, 1, None, None), (2, 1, 1, None, 8), (2, 0, 1, 18, 8), (1, 2, 2, None, 4)],
)
def test_conv_shaped_layer_equals_the_unfold_reference(stride, padding, dilation, v, bits):
    torch.manual_seed(0)
    config = PQ.replace(pq_subvector_length=v, pq_table_bits=bits)
    conv = nn.Conv2d(4, 6, 3, stride=stride, padding=padding, dilation=dilation)
    x = torch.randn(3, 4, 9, 9)
    layer = _calibrated(PQConv2d.from_digital(conv, config), x)
    assert layer.n_books == (2 if v == 18 else 4)
    with torch.no_grad():
        reference = _unfold_reference(layer, x)
        torch.testing.assert_close(layer(x), reference, rtol=1e-5, atol=1e-5)  # look-up path (inference)
    torch.testing.assert_close(layer(x).detach(), reference, rtol=1e-5, atol=1e-5)  # one-hot STE path


def test_k_equal_to_the_distinct_patches_reproduces_the_convolution():
    torch.manual_seed(0)
    levels = torch.tensor([-1.0, 0.5, 2.0, 3.0])
    x = levels[torch.randint(4, (8, 3, 1, 1))].expand(8, 3, 6, 6).contiguous()  # 4 distinct patches/channel
    x[:4] = levels.view(4, 1, 1, 1)  # every level occurs in every channel
    conv = nn.Conv2d(3, 5, 3)
    layer = _calibrated(PQConv2d.from_digital(conv, PQ.replace(hash_length=4, pq_table_bits=None)), x)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)


def test_linear_layer_matches_the_flat_kernel_and_keeps_leading_dims():
    torch.manual_seed(0)
    linear = nn.Linear(12, 5)
    x = torch.randn(2, 7, 12)
    layer = _calibrated(PQLinear.from_digital(linear, PQ.replace(hash_length=8)), x.reshape(-1, 12))
    assert layer.kernel.subvector_length == 4 and layer.n_books == 3
    with torch.no_grad():
        y = layer(x)
        expected = layer.kernel(x.reshape(-1, 12), linear.weight) + linear.bias
    assert y.shape == (2, 7, 5)
    torch.testing.assert_close(y.reshape(-1, 5), expected, rtol=1e-5, atol=1e-5)


def test_gradients_reach_centroids_temperature_weight_bias_and_input():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6)
    layer = _calibrated(PQConv2d.from_digital(nn.Conv2d(4, 3, 3, padding=1), PQ.replace(hash_length=4)), x)
    layer.train()
    x.requires_grad_(True)
    layer(x).square().sum().backward()
    grads = {
        "centroids": layer.kernel.centroids.grad,
        "temperature": layer.kernel.log_temperature.grad,
        "weight": layer.weight.grad,
        "bias": layer.bias.grad,
        "input": x.grad,
    }
    for name, grad in grads.items():
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_round_trip_to_digital_keeps_weights():
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1)
    back = PQConv2d.from_digital(conv, PQ).to_digital()
    assert (back.stride, back.padding) == (conv.stride, conv.padding)
    assert torch.equal(back.weight, conv.weight) and torch.equal(back.bias, conv.bias)
    linear = nn.Linear(8, 3, bias=False)
    assert torch.equal(PQLinear.from_digital(linear, PQ).to_digital().weight, linear.weight)


def test_uncalibrated_layer_tells_the_user_to_calibrate():
    layer = PQConv2d(4, 6, 3, config=PQ)
    assert layer.needs_calibration
    with pytest.raises(RuntimeError, match=r"PQConv2d .* not calibrated.*calibrate_pq\(model, batches\)"):
        layer(torch.randn(1, 4, 5, 5))


@pytest.mark.parametrize(
    "build,message",
    [
        (
            lambda: PQConv2d(4, 6, 3, config=PQ.replace(pq_subvector_length=4)),
            r"multiple of the kernel .*9, 18, 36",
        ),
        (
            lambda: PQConv2d(3, 6, 3, config=PQ.replace(pq_subvector_length=18)),
            r"g=2 .* in_channels=3; allowed V: 9, 27",
        ),
        (lambda: PQLinear(10, 3, config=PQ), r"V=4 .* in_channels=10; allowed V: 1, 2, 5, 10"),
        (lambda: PQConv2d(4, 6, 3, groups=2, config=PQ), "groups=1"),
        (lambda: PQConv2d(4, 6, 3, config=HashConfig()), "product-quantization kernel"),
        (lambda: HashedConv2d(4, 6, 3, config=PQ), "needs a SimHash kernel"),
    ],
)
def test_bad_layer_configurations_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()
