import pytest
import torch
from torch import nn

import aimc_lsh.nn.layers as layers_module
from aimc_lsh.kernels import HashConfig, HashStages
from aimc_lsh.nn import HashedConv2d, HashedLinear, split_range, unfold_forward


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("tile", [None, 3])
def test_conv_shaped_equals_unfold_reference(stride, padding, tile):
    torch.manual_seed(stride * 10 + padding)
    conv = nn.Conv2d(7, 9, 3, stride=stride, padding=padding)
    config = HashConfig(hash_length=48, input_tile_size=tile, output_tile_size=tile)
    layer = HashedConv2d.from_digital(conv, config, seed=11)
    x = torch.randn(3, 7, 10, 10)
    torch.testing.assert_close(layer(x), unfold_forward(layer, x), rtol=1e-5, atol=1e-5)


def test_conv_shaped_equals_unfold_with_dilation_rectangular_kernel_and_no_bias():
    torch.manual_seed(3)
    layer = HashedConv2d(
        4,
        6,
        (3, 2),
        stride=(1, 2),
        padding=(2, 1),
        dilation=2,
        bias=False,
        config=HashConfig(hash_length=32, orthogonal=True),
    )
    x = torch.randn(2, 4, 9, 8)
    torch.testing.assert_close(layer(x), unfold_forward(layer, x), rtol=1e-5, atol=1e-5)


def test_linear_equals_unfold_reference_with_leading_dims():
    torch.manual_seed(4)
    layer = HashedLinear(12, 5, config=HashConfig(hash_length=40, input_tile_size=5, output_tile_size=2))
    x = torch.randn(2, 3, 12)
    y = layer(x)
    assert y.shape == (2, 3, 5)
    torch.testing.assert_close(y, unfold_forward(layer, x), rtol=1e-5, atol=1e-5)


def test_large_k_approaches_the_digital_layer_and_beats_small_k():
    torch.manual_seed(5)
    conv = nn.Conv2d(6, 8, 3, padding=1)
    x = torch.randn(2, 6, 8, 8)
    exact = conv(x)

    def error(k: int) -> float:
        return (HashedConv2d.from_digital(conv, HashConfig(hash_length=k))(x) - exact).abs().mean().item()

    assert error(4096) < 0.25 * error(16)
    assert error(4096) < 0.25 * exact.abs().mean().item()


def test_tiling_creates_one_kernel_per_tile_pair_with_distinct_projections():
    layer = HashedConv2d(10, 6, 3, config=HashConfig(hash_length=8, input_tile_size=4, output_tile_size=4))
    assert layer.in_tiles == [(0, 4), (4, 8), (8, 10)] and layer.out_tiles == [(0, 4), (4, 6)]
    assert len(layer.kernels) == 6
    assert layer.projection_filters(2, 1).shape == (8, 2, 3, 3)
    assert not torch.equal(layer.kernel(0, 0).P, layer.kernel(0, 1).P)


def test_zero_input_gives_bias_and_finite_gradients():
    layer = HashedConv2d(3, 4, 3, padding=1, config=HashConfig(hash_length=16))
    x = torch.zeros(1, 3, 5, 5, requires_grad=True)
    y = layer(x)
    torch.testing.assert_close(y, layer.bias.view(1, -1, 1, 1).expand_as(y))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="groups=1 only, got groups=2"):
        HashedConv2d(4, 4, 3, groups=2)
    with pytest.raises(ValueError, match="explicit integer padding"):
        HashedConv2d(4, 4, 3, padding="same")
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        HashedConv2d.from_digital(nn.Conv2d(2, 2, 3, padding_mode="reflect"), HashConfig())
    layer = HashedConv2d(4, 4, 3)
    with pytest.raises(ValueError, match="4 channels"):
        layer(torch.randn(1, 3, 5, 5))
    with pytest.raises(ValueError, match="4-D input"):
        layer(torch.randn(4, 5, 5))
    with pytest.raises(ValueError, match="NaN or inf"):
        layer(torch.full((1, 4, 5, 5), float("nan")))
    with pytest.raises(ValueError, match="6 channels/features"):
        HashedLinear(6, 2)(torch.randn(3, 5))
    with pytest.raises(TypeError, match="HashConfig"):
        HashedLinear(6, 2, config={"hash_length": 3})


def test_inputs_of_another_type_dtype_or_too_small_are_named():
    conv = HashedConv2d(3, 4, 5, padding=1, dilation=1)
    for x, message in (
        ([[1.0]], "HashedConv2d expects a torch.Tensor input, got list"),
        (torch.randn(1, 3, 8, 8, dtype=torch.float64), "expects torch.float32 inputs .*got torch.float64"),
        (torch.ones(1, 3, 8, 8, dtype=torch.int64), "expects torch.float32 inputs .*got torch.int64"),
    ):
        with pytest.raises(TypeError, match=message):
            conv(x)
    with pytest.raises(ValueError, match=r"at least 3 x 3 pixels \(kernel \(5, 5\), padding \(1, 1\)"):
        conv(torch.randn(1, 3, 2, 8))
    assert conv(torch.randn(1, 3, 3, 3)).shape == (1, 4, 1, 1)  # the smallest input that fits
    with pytest.raises(TypeError, match="HashedLinear expects torch.float32 inputs"):
        HashedLinear(6, 2)(torch.randn(3, 6).double())
    assert HashedLinear(6, 2).double()(torch.randn(3, 6).double()).dtype == torch.float64


@pytest.mark.parametrize("sizes", [(0, 4), (3, -1), (3, 2.5)])
def test_non_positive_layer_sizes_are_named(sizes):
    with pytest.raises(ValueError, match="needs a positive int number of (input|output) channels/features"):
        HashedConv2d(*sizes, 3)
    with pytest.raises(ValueError, match="needs a positive int number of"):
        HashedLinear(*sizes)


def test_nan_weights_are_refused_when_swapped_in():
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match="HashedLinear from Linear: its weight holds 1 NaN or inf value"):
        HashedLinear.from_digital(linear, HashConfig())


def test_from_digital_and_to_digital_copy_weights():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1)
    back = HashedConv2d.from_digital(conv, HashConfig()).to_digital()
    assert (back.stride, back.padding, back.kernel_size) == (conv.stride, conv.padding, conv.kernel_size)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(back(x), conv(x))
    linear = nn.Linear(7, 3, bias=False)
    assert torch.equal(HashedLinear.from_digital(linear, HashConfig()).to_digital().weight, linear.weight)


def test_split_range():
    assert split_range(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert split_range(5, 8) == [(0, 5)]


@pytest.mark.parametrize("kernel", ["random_projection", "learned_projection"])
@pytest.mark.parametrize("tile", [None, 3])
def test_comparator_thresholds_equal_the_unfold_reference_in_training_and_inference(kernel, tile):
    torch.manual_seed(8)
    conv = nn.Conv2d(7, 9, 3, padding=1)
    config = HashConfig(
        kernel=kernel, hash_length=48, input_tile_size=tile, output_tile_size=tile, comparator_thresholds=True
    )
    layer = HashedConv2d.from_digital(conv, config, seed=2)
    plain = HashedConv2d.from_digital(conv, config.replace(comparator_thresholds=False), seed=2)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for kern in layer.kernels:
            kern.threshold.uniform_(-0.2, 0.2, generator=generator)
    x = torch.relu(torch.randn(3, 7, 8, 8))
    with torch.no_grad():
        inference = layer(x)
    training = layer(x)
    reference = unfold_forward(layer, x)
    torch.testing.assert_close(inference, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(training, reference, rtol=1e-5, atol=1e-5)
    assert (inference - plain(x)).abs().amax() > 0.1  # the thresholds change the codes
    training.square().sum().backward()
    assert all(kern.threshold.grad.abs().sum() > 0 for kern in layer.kernels)


@pytest.fixture
def stacked_calls(monkeypatch):
    """Counts the layers' calls of the all-tiles-at-once path (the real function still runs)."""
    calls = []
    real = layers_module.stacked_tiles_forward

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(layers_module, "stacked_tiles_forward", counting)
    return calls


@pytest.mark.parametrize(("kernel_size", "stride", "padding"), [(3, 1, 1), (3, 2, 1), (1, 2, 0)])
@pytest.mark.parametrize("kernel", ["learned_projection", "random_projection"])
def test_training_runs_equal_input_tiles_at_once_with_the_reference_outputs_and_gradients(
    kernel_size, stride, padding, kernel, stacked_calls
):
    torch.manual_seed(12)
    conv = nn.Conv2d(12, 5, kernel_size, stride=stride, padding=padding)
    config = HashConfig(kernel=kernel, hash_length=24, input_tile_size=4)
    layer = HashedConv2d.from_digital(conv, config, seed=3)
    x = torch.randn(2, 12, 9, 9, requires_grad=True)
    y = layer(x)
    assert len(stacked_calls) == 1
    reference = unfold_forward(layer, x)
    torch.testing.assert_close(y, reference, rtol=1e-4, atol=1e-4)
    upstream = torch.randn(y.shape)
    inputs = [x, layer.weight, layer.bias] + [p for p in layer.kernels.parameters()]
    grads = torch.autograd.grad((y * upstream).sum(), inputs)
    expected = torch.autograd.grad((reference * upstream).sum(), inputs)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with torch.no_grad():  # inference keeps the per-tile native stage, with the same numbers
        torch.testing.assert_close(layer(x), reference, rtol=1e-4, atol=1e-4)
    assert len(stacked_calls) == 1


def test_linear_training_with_input_tiles_runs_them_at_once(stacked_calls):
    torch.manual_seed(13)
    config = HashConfig(kernel="learned_projection", hash_length=40, input_tile_size=3)
    layer = HashedLinear(12, 5, config=config)
    x = torch.randn(4, 12, requires_grad=True)
    y = layer(x)
    assert len(stacked_calls) == 1 and y.shape == (4, 5)
    torch.testing.assert_close(y, unfold_forward(layer, x), rtol=1e-4, atol=1e-4)


class _OffsetProjection(HashStages):
    """A stage a hardware model might replace: the projection shifted."""

    def project(self, x, filters, geometry, tile):
        return super().project(x, filters, geometry, tile) + 0.01


@pytest.mark.parametrize(
    "why",
    ["one tile", "uneven tiles", "output tiles", "thresholds", "replaced stage"],
)
def test_tiles_go_one_at_a_time_where_they_cannot_run_at_once(why, stacked_calls):
    options = {
        "one tile": {},
        "uneven tiles": {"input_tile_size": 5},
        "output tiles": {"input_tile_size": 4, "output_tile_size": 3},
        "thresholds": {"input_tile_size": 4, "comparator_thresholds": True},
        "replaced stage": {"input_tile_size": 4},
    }[why]
    layer = HashedConv2d(12, 6, 3, padding=1, config=HashConfig(hash_length=16, **options))
    if why == "replaced stage":
        layer.stages = _OffsetProjection()
    x = torch.randn(2, 12, 6, 6, requires_grad=True)
    layer(x).sum().backward()
    assert not stacked_calls
    assert x.grad is not None
