import pytest
import torch
from torch import nn

from aimc_lsh.models import CifarResNet, Normalize, PadShortcut, resnet20_a, resnet20_b


def _upstream_keys(shortcut, classifier):
    """State-dict keys of the upstream checkpoints, written out from their architecture descriptions."""
    bn = ("weight", "bias", "running_mean", "running_var")
    keys = ["conv1.weight", *(f"bn1.{p}" for p in bn)]
    for stage in (1, 2, 3):
        for block in range(3):
            prefix = f"layer{stage}.{block}"
            keys += [f"{prefix}.conv1.weight", *(f"{prefix}.bn1.{p}" for p in bn)]
            keys += [f"{prefix}.conv2.weight", *(f"{prefix}.bn2.{p}" for p in bn)]
            if shortcut == "B" and stage > 1 and block == 0:
                keys += [f"{prefix}.downsample.0.weight", *(f"{prefix}.downsample.1.{p}" for p in bn)]
    return {*keys, f"{classifier}.weight", f"{classifier}.bias"}


def _keys(model):
    return {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("num_classes", [10, 100])
def test_option_a_shapes_and_layout(num_classes):
    model = resnet20_a(num_classes)
    assert _keys(model) == _upstream_keys("A", "linear")
    assert model.linear.weight.shape == (num_classes, 64)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, num_classes)
    if num_classes == 10:
        assert sum(p.numel() for p in model.parameters()) == 269_722  # the 0.27M of the paper


@pytest.mark.parametrize("num_classes", [10, 100])
def test_option_b_shapes_and_layout(num_classes):
    model = resnet20_b(num_classes)
    assert _keys(model) == _upstream_keys("B", "fc")
    assert model.layer2[0].downsample[0].weight.shape == (32, 16, 1, 1)
    assert model.layer2[0].downsample[0].stride == (2, 2)
    assert model.layer1[0].downsample is None
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, num_classes)
    # option B adds two 1x1 convs + BN: 16*32 + 32*64 weights and 2*(32+64) BN affine parameters
    extra = 16 * 32 + 32 * 64 + 2 * (32 + 64)
    base = sum(p.numel() for p in resnet20_a(num_classes).parameters())
    assert sum(p.numel() for p in model.parameters()) == base + extra


def test_option_a_shortcut_subsamples_and_zero_pads():
    shortcut = PadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, 8, 8)
    out = shortcut(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])  # planes // 4 = 8 zero channels each side
    assert torch.count_nonzero(out[:, :8]) == 0 and torch.count_nonzero(out[:, 24:]) == 0
    assert list(shortcut.parameters()) == []


def test_normalize_is_first_and_not_patchable():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    model = CifarResNet(20, shortcut="A", mean=mean, std=std).eval()
    first_name, first = next(iter(model.named_children()))
    assert first_name == "normalize" and isinstance(first, Normalize)
    assert not isinstance(first, nn.Conv2d | nn.Linear)
    assert "normalize.mean" not in model.state_dict()
    x = torch.rand(3, 3, 32, 32)
    bare = CifarResNet(20, shortcut="A").eval()
    bare.load_state_dict(model.state_dict())
    manual = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.allclose(model(x), bare(manual), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        first(torch.rand(2, 1, 32, 32))


def test_depths_and_errors():
    assert len(CifarResNet(32).layer1) == 5
    assert sum(p.numel() for p in CifarResNet(56).parameters()) == 853_018
    for bad in (19, 4, "20"):
        with pytest.raises(ValueError, match="6n \\+ 2"):
            CifarResNet(bad)
    with pytest.raises(ValueError, match="shortcut"):
        CifarResNet(20, shortcut="C")
    with pytest.raises(ValueError, match="num_classes"):
        CifarResNet(20, 0)
    with pytest.raises(ValueError, match="both mean and std"):
        CifarResNet(20, mean=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="std must be"):
        Normalize((0.5,), (0.0,))
    with pytest.raises(ValueError, match="equal lengths"):
        Normalize((0.5, 0.5), (0.2,))
