import torch
from torch import nn

from aimc_lsh.kernels import HashConfig, LearnedProjKernel, RandomProjKernel
from aimc_lsh.nn import HashedConv2d


def test_projection_is_a_parameter_initialised_like_random():
    learned = LearnedProjKernel(10, 16, seed=5)
    assert isinstance(learned.P, nn.Parameter)
    assert torch.equal(learned.P.detach(), RandomProjKernel(10, 16, seed=5).P)
    assert not any(p is learned.P for p in RandomProjKernel(10, 16).parameters())


def test_ste_passes_gradients_to_projection_inputs_and_weights():
    kernel = LearnedProjKernel(10, 32, seed=0)
    x = torch.randn(4, 10, requires_grad=True)
    w = torch.randn(3, 10, requires_grad=True)
    kernel(x, w).pow(2).sum().backward()
    for grad in (kernel.P.grad, x.grad, w.grad):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_hashed_conv_with_learned_projection_trains_p_and_weight():
    layer = HashedConv2d(3, 4, 3, padding=1, config=HashConfig(kernel="learned_projection", hash_length=16))
    layer(torch.randn(2, 3, 5, 5)).pow(2).mean().backward()
    assert layer.weight.grad.abs().sum() > 0
    assert layer.kernels[0].P.grad.abs().sum() > 0
