"""What swapped layer families share with digital layers: geometry, weight copies, faces, set_submodule."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aimc_lsh.kernels import ConvGeometry, HashConfig
from aimc_lsh.nn import HashedConv2d, HashedLinear, PQConv2d, PQLinear
from aimc_lsh.nn.digital import (
    Conv2dFace,
    LinearFace,
    check_zero_padding,
    conv_geometry,
    copy_parameters,
    digital_conv2d,
    digital_linear,
    new_weight,
    set_submodule,
)


class _ToyConv(Conv2dFace, nn.Module):
    """A minimal swapped convolution: the face plus an exact ``_forward_4d``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, bias=True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.geometry = conv_geometry("ToyConv", kernel_size, stride, padding, dilation)
        self.weight = new_weight(out_channels, in_channels, *self.kernel_size)
        self.bias = nn.Parameter(torch.randn(out_channels)) if bias else None

    def _forward_4d(self, x):
        g = self.geometry
        return F.conv2d(x, self.weight_4d(), self.bias, g.stride, g.padding, g.dilation)


class _ToyLinear(LinearFace, nn.Module):
    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = new_weight(out_features, in_features)
        self.bias = nn.Parameter(torch.randn(out_features)) if bias else None

    def _forward_4d(self, x):
        return F.conv2d(x, self.weight_4d(), self.bias)


def test_conv_geometry_expands_ints_to_pairs_and_keeps_pairs():
    kernel, geometry = conv_geometry("L", 3, 2, 1, 1)
    assert kernel == (3, 3)
    assert geometry == ConvGeometry(stride=(2, 2), padding=(1, 1), dilation=(1, 1))
    kernel, geometry = conv_geometry("L", (3, 1), [1, 2], (0, 2), (2, 1))
    assert kernel == (3, 1)
    assert geometry == ConvGeometry(stride=(1, 2), padding=(0, 2), dilation=(2, 1))
    assert isinstance(geometry.stride, tuple)  # a list argument still gives a hashable tuple


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"groups": 2}, r"^MyConv supports groups=1 only, got groups=2$"),
        ({"padding": "same"}, r"^MyConv needs explicit integer padding, got padding='same'$"),
        ({"padding": "valid"}, r"^MyConv needs explicit integer padding, got padding='valid'$"),
    ],
)
def test_conv_geometry_rejects_groups_and_string_padding_naming_the_layer(kwargs, match):
    args = {"kernel_size": 3, "stride": 1, "padding": 0, "dilation": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        conv_geometry("MyConv", **args)


def test_check_zero_padding_names_the_layer_the_allowed_mode_and_the_given_one():
    check_zero_padding("MyConv", nn.Conv2d(2, 2, 3, padding=1))  # zeros: no error
    for mode in ("reflect", "replicate", "circular"):
        conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode=mode)
        with pytest.raises(ValueError, match=rf"^MyConv supports padding_mode='zeros' only, got '{mode}'$"):
            check_zero_padding("MyConv", conv)


def test_new_weight_matches_the_default_init_of_a_linear_layer():
    torch.manual_seed(0)
    expected = nn.Linear(5, 3).weight
    torch.manual_seed(0)
    weight = new_weight(3, 5)
    assert isinstance(weight, nn.Parameter) and weight.requires_grad
    assert torch.equal(weight, expected)  # kaiming_uniform(a=sqrt 5) draws the same numbers
    assert new_weight(4, 2, 3, 3).shape == (4, 2, 3, 3)


def test_copy_parameters_copies_weight_and_bias_and_adopts_dtype():
    src = nn.Conv2d(2, 3, 3).double()
    dst = nn.Conv2d(2, 3, 3)
    out = copy_parameters(dst, src)
    assert out is dst
    assert dst.weight.dtype == torch.float64 and dst.bias.dtype == torch.float64
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, src.bias)
    assert dst.weight.data_ptr() != src.weight.data_ptr()  # a copy, not shared storage
    assert dst.weight.requires_grad


def test_copy_parameters_without_a_source_bias_leaves_the_destination_bias_alone():
    src, dst = nn.Linear(4, 2, bias=False), nn.Linear(4, 2)
    bias = dst.bias.detach().clone()
    copy_parameters(dst, src)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.bias, bias)


HASH = HashConfig(hash_length=8)
PQ = HashConfig(kernel="product_quantization", hash_length=8)
PQ_3X2 = HashConfig(kernel="product_quantization", hash_length=8, pq_subvector_length=6)  # 3x2 windows


@pytest.mark.parametrize(("family", "config"), [(HashedConv2d, HASH), (PQConv2d, PQ_3X2)])
@pytest.mark.parametrize("bias", [True, False])
def test_digital_conv2d_round_trips_a_swapped_convolution(family, config, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=bias).double()
    back = digital_conv2d(family.from_digital(conv, config))
    assert type(back) is nn.Conv2d
    for attr in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(back, attr) == getattr(conv, attr), attr
    assert back.padding_mode == "zeros"
    assert back.weight.dtype == torch.float64
    assert torch.equal(back.weight, conv.weight)
    assert (back.bias is None) == (not bias)
    if bias:
        assert torch.equal(back.bias, conv.bias)
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    assert torch.equal(back(x), conv(x))


@pytest.mark.parametrize(("family", "config"), [(HashedLinear, HASH), (PQLinear, PQ)])
@pytest.mark.parametrize("bias", [True, False])
def test_digital_linear_round_trips_a_swapped_linear_layer(family, config, bias):
    torch.manual_seed(1)
    linear = nn.Linear(8, 3, bias=bias)
    back = digital_linear(family.from_digital(linear, config))
    assert type(back) is nn.Linear
    assert (back.in_features, back.out_features) == (8, 3)
    assert torch.equal(back.weight, linear.weight)
    assert (back.bias is None) == (not bias)
    if bias:
        assert torch.equal(back.bias, linear.bias)


def test_conv_face_forward_and_to_digital_agree_with_the_digital_layer():
    torch.manual_seed(2)
    toy = _ToyConv(3, 5, 3, stride=2, padding=1, dilation=1)
    x = torch.randn(2, 3, 9, 9)
    digital = toy.to_digital()
    assert type(digital) is nn.Conv2d and digital.stride == (2, 2) and digital.padding == (1, 1)
    torch.testing.assert_close(toy(x), digital(x))
    assert toy.weight_4d() is toy.weight


def test_conv_face_rejects_wrong_rank_and_channel_count_with_the_class_name():
    toy = _ToyConv(3, 5, 3)
    with pytest.raises(
        ValueError, match=r"_ToyConv expects a 4-D input \(N, C, H, W\), got shape \(3, 9, 9\)"
    ):
        toy(torch.randn(3, 9, 9))
    with pytest.raises(ValueError, match=r"_ToyConv expects inputs with 3 channels/features in dim 1, got"):
        toy(torch.randn(1, 4, 9, 9))


def test_linear_face_keeps_leading_dims_and_is_x_wt_plus_b():
    torch.manual_seed(3)
    toy = _ToyLinear(4, 3)
    assert toy.weight_4d().shape == (3, 4, 1, 1)
    assert toy.weight_4d().data_ptr() == toy.weight.data_ptr()  # a view, not a copy
    x = torch.randn(2, 5, 4)
    y = toy(x)
    assert y.shape == (2, 5, 3)
    torch.testing.assert_close(y, F.linear(x, toy.weight, toy.bias))
    torch.testing.assert_close(toy(x[0, 0]), F.linear(x[0, 0], toy.weight, toy.bias))  # 1-D input
    digital = toy.to_digital()
    assert type(digital) is nn.Linear
    torch.testing.assert_close(digital(x), y)
    with pytest.raises(ValueError, match=r"_ToyLinear expects inputs with 4 channels/features in dim -1"):
        toy(torch.randn(2, 5))


def test_set_submodule_replaces_top_level_and_nested_modules():
    model = nn.Module()
    model.stem = nn.Conv2d(1, 2, 3)
    model.blocks = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), nn.Linear(2, 2))
    stem, inner = nn.Identity(), nn.Tanh()
    set_submodule(model, "stem", stem)
    set_submodule(model, "blocks.0.1", inner)
    assert model.stem is stem
    assert model.blocks[0][1] is inner
    assert model.get_submodule("blocks.0.1") is inner
    assert isinstance(model.blocks[0][0], nn.Linear) and isinstance(model.blocks[1], nn.Linear)
    assert dict(model.named_modules())["blocks.0.1"] is inner


def test_set_submodule_raises_on_a_path_through_a_missing_module():
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(AttributeError, match="nope"):
        set_submodule(model, "0.nope.fc", nn.Identity())
    with pytest.raises(AttributeError):
        set_submodule(model, "1.fc", nn.Identity())


@pytest.mark.parametrize("path", ["0.fc", "1", ""])
def test_set_submodule_never_adds_a_module(path):
    model = nn.Sequential(nn.Sequential(nn.Linear(2, 2)))
    before = [name for name, _ in model.named_modules()]
    with pytest.raises(AttributeError, match=f"has no submodule {path!r} to replace"):
        set_submodule(model, path, nn.Identity())
    assert [name for name, _ in model.named_modules()] == before
