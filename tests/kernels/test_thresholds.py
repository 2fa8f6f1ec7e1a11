"""Learned comparator thresholds: ``h_x = sign(P x - t ||p|| ||x||)`` on the input side only."""

import math

import pytest
import torch

from aimc_lsh.kernels import HashConfig, LearnedProjKernel, RandomProjKernel, build_kernel


def _signs(v):
    return torch.where(v >= 0, 1.0, -1.0)


@pytest.mark.parametrize("cls", [RandomProjKernel, LearnedProjKernel])
def test_thresholds_are_a_zero_initialised_parameter_only_when_asked(cls):
    plain, thresholded = cls(12, 16, seed=3), cls(12, 16, seed=3, thresholds=True)
    assert plain.threshold is None and plain.comparator_shift() is None
    assert isinstance(thresholded.threshold, torch.nn.Parameter)
    assert torch.equal(thresholded.threshold.detach(), torch.zeros(16))
    assert torch.equal(plain.projection, thresholded.projection)  # P is drawn as before
    assert "threshold" in dict(thresholded.named_parameters())
    x, w = torch.randn(5, 12), torch.randn(3, 12)
    torch.testing.assert_close(plain(x, w), thresholded(x, w))  # zero thresholds: plain SimHash


def test_kernel_forward_compares_the_input_cosines_with_the_thresholds():
    kernel = LearnedProjKernel(12, 64, seed=1, thresholds=True)
    with torch.no_grad():
        kernel.threshold.uniform_(-0.3, 0.3, generator=torch.Generator().manual_seed(0))
    x, w = 4.0 * torch.randn(6, 12), torch.randn(3, 12)
    p = kernel.P.detach()
    cos_xp = (x / x.norm(dim=1, keepdim=True)) @ (p / p.norm(dim=1, keepdim=True)).T
    h_x = _signs(cos_xp - kernel.threshold.detach())
    h_w = _signs(w @ p.T)  # the weight codes ignore the thresholds
    expected = x.norm(dim=1, keepdim=True) * w.norm(dim=1) * torch.cos(0.5 * math.pi * (1 - h_x @ h_w.T / 64))
    out = kernel(x, w)
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, LearnedProjKernel(12, 64, seed=1)(x, w))  # the thresholds matter
    out.square().sum().backward()
    assert kernel.threshold.grad is not None and kernel.threshold.grad.abs().sum() > 0


def test_config_builds_kernels_with_thresholds_and_refuses_bad_values():
    config = HashConfig(kernel="learned_projection", hash_length=8, comparator_thresholds=True)
    kernel = build_kernel(config.kernel, 10, config.hash_length, **config.kernel_options())
    assert kernel.threshold is not None and kernel.threshold.shape == (8,)
    assert HashConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="comparator_thresholds must be a bool"):
        HashConfig(comparator_thresholds=1)
    with pytest.raises(ValueError, match="comparator_thresholds needs a SimHash kernel"):
        HashConfig(kernel="product_quantization", hash_length=16, comparator_thresholds=True)
