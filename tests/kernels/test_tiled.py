import math

import pytest
import torch
import torch.nn.functional as F

from aimc_lsh.kernels import ConvGeometry, sign_ste, stacked_tiles_forward


def tile_by_tile(x, weight, projections, geometry):
    """The hashed output summed over the input tiles, one tile at a time from unfolded patches."""
    n_tiles, k, _ = projections.shape
    tile_channels = weight.shape[1] // n_tiles
    kernel_size = weight.shape[2:]
    out = 0
    for i in range(n_tiles):
        channels = slice(i * tile_channels, (i + 1) * tile_channels)
        patches = F.unfold(x[:, channels], kernel_size, geometry.dilation, geometry.padding, geometry.stride)
        patches = patches.transpose(1, 2)  # (N, L, d)
        w = weight[:, channels].flatten(1)  # (out, d)
        h_x, h_w = sign_ste(patches @ projections[i].T), sign_ste(w @ projections[i].T)
        cosine = torch.cos(0.5 * math.pi * (1 - h_x @ h_w.T / k))  # (N, L, out)
        out = out + cosine * patches.norm(dim=2, keepdim=True) * w.norm(dim=1)
    return out


@pytest.mark.parametrize(
    ("kernel_size", "geometry"),
    [
        ((3, 3), ConvGeometry((1, 1), (1, 1))),
        ((3, 3), ConvGeometry((2, 2), (1, 1))),
        ((1, 1), ConvGeometry()),
    ],
)
def test_stacked_tiles_equal_the_sum_of_each_tiles_estimate_with_the_same_gradients(kernel_size, geometry):
    gen = torch.Generator().manual_seed(2)
    n_tiles, tile_channels, k = 3, 4, 32
    x = torch.randn(2, n_tiles * tile_channels, 7, 7, generator=gen).requires_grad_()
    weight = torch.randn(5, n_tiles * tile_channels, *kernel_size, generator=gen).requires_grad_()
    d = tile_channels * kernel_size[0] * kernel_size[1]
    projections = torch.randn(n_tiles, k, d, generator=gen).requires_grad_()
    y = stacked_tiles_forward(x.contiguous(memory_format=torch.channels_last), weight, projections, geometry)
    reference = tile_by_tile(x, weight, projections, geometry)  # (N, L, out)
    torch.testing.assert_close(y.flatten(2).transpose(1, 2), reference, rtol=1e-4, atol=1e-4)
    upstream = torch.randn(reference.shape, generator=gen)
    grads = torch.autograd.grad((y.flatten(2).transpose(1, 2) * upstream).sum(), [x, weight, projections])
    expected = torch.autograd.grad((reference * upstream).sum(), [x, weight, projections])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_stacked_tiles_refuse_projections_that_do_not_split_the_weight():
    x, weight = torch.ones(1, 8, 4, 4), torch.ones(3, 8, 3, 3)
    with pytest.raises(ValueError, match=r"3 projections of 36 inputs do not split a weight \(3, 8, 3, 3\)"):
        stacked_tiles_forward(x, weight, torch.ones(3, 16, 36), ConvGeometry())
    with pytest.raises(ValueError, match="2 projections of 18 inputs"):
        stacked_tiles_forward(x, weight, torch.ones(2, 16, 18), ConvGeometry())
