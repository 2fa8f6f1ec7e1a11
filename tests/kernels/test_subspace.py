import math

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig, RandomProjKernel, random_projection
from aimc_lsh.kernels.subspace import affine_residual, principal_basis, simhash_estimate, subspace_projection
from aimc_lsh.nn import patch_model


def _low_rank_inputs(n: int, d: int, r: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n vectors in a random r-dimensional subspace of R^d, and that subspace's orthonormal basis."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, r, generator=g, dtype=torch.float64))
    return torch.randn(n, r, generator=g, dtype=torch.float64) @ basis.T, basis


def test_principal_basis_keeps_the_fewest_leading_directions_reaching_the_energy():
    m = torch.diag(torch.tensor([1.0, 6.0, 0.0, 3.0]))  # trace 10
    assert principal_basis(m, 0.6).shape == (4, 1)  # 6 / 10
    basis = principal_basis(m, 0.85)  # 6 + 3 = 9 / 10 >= 0.85
    assert basis.shape == (4, 2) and basis.dtype == torch.float64
    assert basis.abs().argmax(dim=0).tolist() == [1, 3]  # ordered by eigenvalue
    assert principal_basis(m, 1.0).shape == (4, 3)  # the zero direction is never needed
    assert principal_basis(m, 0.9).shape == (4, 2)  # exactly reached counts


def test_principal_basis_recovers_the_span_of_low_rank_data():
    x, basis = _low_rank_inputs(500, 20, 5, seed=0)
    found = principal_basis(x.T @ x / len(x), 0.999)
    assert found.shape == (20, 5)
    torch.testing.assert_close(found @ found.T, basis @ basis.T, atol=1e-9, rtol=0)  # same projector
    torch.testing.assert_close(found.T @ found, torch.eye(5, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("matrix", "energy", "message"),
    [
        (torch.eye(3), 0.0, "energy must be a fraction in \\(0, 1\\]"),
        (torch.eye(3), 1.5, "energy must be a fraction"),
        (torch.eye(3), True, "energy must be a fraction"),
        (torch.ones(2, 3), 0.9, "square"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), 0.9, "NaN or inf"),
        (torch.zeros(3, 3), 0.9, "all zero"),
    ],
)
def test_principal_basis_rejects_bad_input_by_name(matrix, energy, message):
    with pytest.raises(ValueError, match=message):
        principal_basis(matrix, energy)


def test_subspace_projection_rows_lie_in_the_subspace_with_unit_norm_like_random_rows():
    _, basis = _low_rank_inputs(1, 30, 6, seed=1)
    p = subspace_projection(64, basis, orthogonal=True, seed=3)
    assert p.shape == (64, 30) and p.dtype == torch.float32
    outside = p.double() - p.double() @ basis @ basis.T
    assert outside.abs().max() < 1e-6
    torch.testing.assert_close(p.norm(dim=1), torch.ones(64), atol=1e-5, rtol=0)
    torch.testing.assert_close(p, subspace_projection(64, basis, orthogonal=True, seed=3))
    assert not torch.equal(p, subspace_projection(64, basis, orthogonal=True, seed=4))
    expected = random_projection(64, 6, orthogonal=True, seed=3).double() @ basis.T
    torch.testing.assert_close(p, expected.float())


def test_subspace_projection_rejects_a_basis_of_the_wrong_shape():
    with pytest.raises(ValueError, match="basis must have shape \\(d, r\\)"):
        subspace_projection(8, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="basis must have shape"):
        subspace_projection(8, torch.zeros(4))


@pytest.mark.parametrize("theta", [0.4, math.pi / 2, 2.6])
def test_bits_disagree_with_probability_theta_over_pi_inside_the_subspace(theta):
    # the SimHash statistic holds for any pair inside the subspace: Binomial(k, theta/pi), 4 sigma
    k, d, r = 20_000, 40, 7
    _, basis = _low_rank_inputs(1, d, r, seed=2)
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, r, generator=g, dtype=torch.float64)
    a = a / a.norm()
    b = b - (b @ a) * a
    b = b / b.norm()
    u, v = basis @ a, basis @ (math.cos(theta) * a + math.sin(theta) * b)
    p = subspace_projection(k, basis, seed=9).double()
    observed = (torch.sign(p @ u) != torch.sign(p @ v)).double().mean().item()
    sigma = math.sqrt(theta / math.pi * (1 - theta / math.pi) / k)
    assert abs(observed - theta / math.pi) < 4 * sigma, (observed, theta / math.pi)


def test_fitted_projection_estimates_dot_products_of_low_rank_inputs_with_less_error():
    # inputs in an 8-dimensional subspace of R^96, weight rows anywhere: with the same k the fitted
    # projection's estimate ||x|| ||B^T w|| cos(theta_hat) of x . w beats the random one's
    d, r, k = 96, 8, 64
    x, _ = _low_rank_inputs(400, d, r, seed=3)
    w = torch.randn(32, d, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    exact = x @ w.T
    basis = principal_basis(x.T @ x / len(x), 0.999)

    def relative_error(p: torch.Tensor, w_norm: torch.Tensor) -> float:
        estimate = simhash_estimate(x, w, p, w_norm)
        return ((estimate - exact).norm() / exact.norm()).item()

    seeds = range(4)
    errors_random = [relative_error(RandomProjKernel(d, k, seed=s).P, w.norm(dim=1)) for s in seeds]
    errors_fitted = [
        relative_error(subspace_projection(k, basis, seed=s), (w @ basis).norm(dim=1)) for s in seeds
    ]
    assert sum(errors_fitted) < 0.5 * sum(errors_random), (errors_fitted, errors_random)


def test_simhash_estimate_is_what_a_hashed_layer_computes():
    layer = patch_model(nn.Sequential(nn.Linear(24, 5, bias=False)), HashConfig(hash_length=32, seed=2))[0]
    x = torch.randn(7, 24, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = layer(x)
    estimate = simhash_estimate(x, layer.weight.detach(), layer.kernel(0, 0).P)
    torch.testing.assert_close(estimate.float(), expected, rtol=1e-5, atol=1e-5)
    halved = simhash_estimate(x, layer.weight.detach(), layer.kernel(0, 0).P, layer.weight.norm(dim=1) / 2)
    torch.testing.assert_close(halved, estimate / 2)
    with pytest.raises(ValueError, match="must share d"):
        simhash_estimate(x, layer.weight.detach()[:, :20], layer.kernel(0, 0).P)


def test_affine_residual_is_the_variance_a_per_channel_affine_map_cannot_recover():
    g = torch.Generator().manual_seed(1)
    exact = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.tensor([1.0, 2.0, 3.0])
    scaled = exact * torch.tensor([0.5, -2.0, 7.0]) + torch.tensor([1.0, 0.0, -3.0])
    assert affine_residual(scaled, exact) == pytest.approx(0.0, abs=1e-12)
    noise = torch.randn(2000, 3, generator=g, dtype=torch.float64)
    assert affine_residual(noise, exact) == pytest.approx(1.0, abs=0.01)  # independent: nothing recovered
    # half the variance of each column recoverable: estimate = exact + independent noise of equal variance
    assert affine_residual(exact + noise * exact.std(0), exact) == pytest.approx(0.5, abs=0.03)
    assert affine_residual(torch.zeros_like(exact), exact) == 1.0  # a constant estimate recovers nothing
    with pytest.raises(ValueError, match="one shape"):
        affine_residual(exact[:, :2], exact)
    with pytest.raises(ValueError, match="constant in every column"):
        affine_residual(exact, torch.ones_like(exact))
