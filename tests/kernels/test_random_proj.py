import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aimc_lsh.kernels import RandomProjKernel, random_projection


def _pair_at_angle(d: int, theta: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(2, d, generator=g, dtype=torch.float64)
    a = a / a.norm()
    b = b - (b @ a) * a
    b = b / b.norm()
    return a, math.cos(theta) * a + math.sin(theta) * b


@pytest.mark.parametrize("theta", [0.3, math.pi / 2, 2.5])
def test_bit_disagreement_probability_is_theta_over_pi(theta):
    # k independent Gaussian hyperplanes: disagreements ~ Binomial(k, theta/pi). Tolerance: 4 sigma.
    k, d = 20_000, 32
    kernel = RandomProjKernel(d, k, seed=7)
    a, b = _pair_at_angle(d, theta, seed=1)
    h_a, h_b = kernel.codes(a.float()), kernel.codes(b.float())
    observed = (h_a != h_b).double().mean().item()
    p = theta / math.pi
    sigma = math.sqrt(p * (1 - p) / k)
    assert abs(observed - p) < 4 * sigma, (observed, p, sigma)


def test_estimator_error_shrinks_like_one_over_sqrt_k():
    torch.manual_seed(0)
    x = torch.randn(200, 24)
    w = torch.randn(30, 24)
    exact = (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T

    def rmse(k: int) -> float:
        errors = []
        for seed in range(4):
            kernel = RandomProjKernel(24, k, seed=seed)
            estimate = kernel(x, w) / (x.norm(dim=1, keepdim=True) * w.norm(dim=1))
            errors.append(((estimate - exact) ** 2).mean())
        return torch.stack(errors).mean().sqrt().item()

    ratio = rmse(64) / rmse(1024)  # 1/sqrt(k) scaling predicts sqrt(1024/64) = 4
    assert 3.0 < ratio < 5.3, ratio


def test_more_bits_beat_fewer_bits_and_a_zero_guess():
    torch.manual_seed(1)
    x, w = torch.randn(100, 16), torch.randn(8, 16)
    exact = x @ w.T
    err_large = (RandomProjKernel(16, 4096)(x, w) - exact).abs().mean()
    err_small = (RandomProjKernel(16, 16)(x, w) - exact).abs().mean()
    assert err_large < 0.3 * exact.abs().mean() < err_small


def test_same_seed_same_projection_other_seed_other_projection():
    assert torch.equal(random_projection(8, 5, seed=3), random_projection(8, 5, seed=3))
    assert not torch.equal(random_projection(8, 5, seed=3), random_projection(8, 5, seed=4))


@pytest.mark.parametrize("k,d", [(8, 8), (5, 12), (20, 6)])
def test_orthogonal_rows_are_orthonormal_within_blocks(k, d):
    p = random_projection(k, d, orthogonal=True, seed=0)
    assert p.shape == (k, d)
    for start in range(0, k, d):
        block = p[start : start + d]
        assert torch.allclose(block @ block.T, torch.eye(block.shape[0]), atol=1e-5)


def test_zero_rows_give_zero_not_nan():
    kernel = RandomProjKernel(6, 32)
    x = torch.zeros(2, 6, requires_grad=True)
    w = torch.randn(3, 6)
    y = kernel(x, w)
    assert torch.equal(y, torch.zeros(2, 3))
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(kernel(torch.randn(2, 6), torch.zeros(3, 6)), torch.zeros(2, 3))


def test_bad_shapes_and_values_raise_clear_errors():
    kernel = RandomProjKernel(6, 32)
    with pytest.raises(ValueError, match=r"weights must have shape \(M, 6\)"):
        kernel(torch.randn(2, 6), torch.randn(3, 5))
    with pytest.raises(ValueError, match="hashes vectors of length 6"):
        kernel(torch.randn(2, 7), torch.randn(3, 6))
    with pytest.raises(ValueError, match="NaN"):
        kernel(torch.tensor([[float("nan")] * 6]), torch.randn(3, 6))
    with pytest.raises(ValueError, match="hash_length"):
        RandomProjKernel(6, 0)
    with pytest.raises(ValueError, match="in_features"):
        RandomProjKernel(-1, 8)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 64), st.integers(0, 2**31))
def test_estimate_is_bounded_by_the_norm_product(d, k, seed):
    g = torch.Generator().manual_seed(seed)
    x, w = torch.randn(3, d, generator=g), torch.randn(2, d, generator=g)
    y = RandomProjKernel(d, k, seed=seed)(x, w)
    bound = x.norm(dim=1, keepdim=True) * w.norm(dim=1)
    assert (y.abs() <= bound * (1 + 1e-5)).all()
