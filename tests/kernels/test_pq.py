"""Product quantization math: k-means, the assignment STE, quantised tables and the PQ kernel."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aimc_lsh.kernels import (
    HashConfig,
    PQKernel,
    assignment_ste,
    build_kernel,
    distortion,
    kmeans,
    kmeans_plus_plus,
    lookup_table,
    quantize_table,
)


def _from_codewords(n: int, books: int, k: int, v: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Vectors (n, books*v) whose sub-vector b is one of k distinct codewords of codebook b."""
    g = torch.Generator().manual_seed(seed)
    codewords = torch.randn(books, k, v, generator=g)
    pick = torch.randint(k, (n, books), generator=g)
    pick[:k] = torch.arange(k).unsqueeze(1)  # every codeword occurs
    x = codewords[torch.arange(books), pick]  # (n, books, v)
    return x.reshape(n, books * v), codewords


def test_k_equal_to_the_distinct_subvectors_reproduces_the_exact_product():
    x, _ = _from_codewords(300, books=6, k=8, v=4, seed=0)
    w = torch.randn(5, 24, generator=torch.Generator().manual_seed(1))
    kernel = PQKernel(24, 8, subvector_length=4, table_bits=None)  # float table
    kernel.calibrate(x, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(kernel(x, w), x @ w.T, rtol=1e-5, atol=1e-5)


def test_int8_table_error_is_at_most_half_a_step_per_lookup():
    x, _ = _from_codewords(300, books=6, k=8, v=4, seed=0)
    w = torch.randn(5, 24, generator=torch.Generator().manual_seed(1))
    kernel = PQKernel(24, 8, subvector_length=4, table_bits=8)
    kernel.calibrate(x, seed=3)
    with torch.no_grad():
        error = (kernel(x, w) - x @ w.T).abs()
        step = lookup_table(w, kernel.centroids).abs().amax(1) / 127  # per output row
    assert (error <= kernel.n_books * step / 2 + 1e-5).all()  # 6 look-ups of <= half a step each
    assert error.max() > 0  # the table really is quantised


def test_kmeans_beats_random_centroids_and_is_seed_deterministic():
    g = torch.Generator().manual_seed(0)
    data = torch.cat(
        [torch.randn(3, 200, 5, generator=g) + 4 * torch.randn(3, 1, 5, generator=g) for _ in range(6)], 1
    )
    random = data[:, torch.randperm(data.shape[1], generator=g)[:6]]
    fitted = kmeans(data, 6, seed=0)
    assert (distortion(data, fitted) < 0.8 * distortion(data, random)).all()
    assert (
        distortion(data, fitted)
        <= distortion(data, kmeans_plus_plus(data, 6, torch.Generator().manual_seed(0)))
    ).all()
    assert torch.equal(fitted, kmeans(data, 6, seed=0))
    assert not torch.equal(kmeans(data, 6, seed=0, iterations=0), kmeans(data, 6, seed=1, iterations=0))


def test_kmeans_with_fewer_distinct_points_than_k_repeats_points():
    data = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]])
    centroids = kmeans(data, 4, seed=0)
    assert torch.isfinite(centroids).all()
    assert {tuple(c) for c in centroids[0].tolist()} == {(1.0, 0.0), (0.0, 2.0)}


def test_assignment_ste_is_hard_forward_and_soft_backward():
    torch.manual_seed(0)
    scores = torch.randn(7, 5, requires_grad=True)
    t = torch.tensor(0.7, requires_grad=True)
    upstream = torch.randn(7, 5)
    hard = assignment_ste(scores, t, dim=1)
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(scores.argmax(1), 5).float())
    (hard * upstream).sum().backward()
    s2, t2 = scores.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    (torch.softmax(s2 / t2, dim=1) * upstream).sum().backward()
    torch.testing.assert_close(scores.grad, s2.grad)
    torch.testing.assert_close(t.grad, t2.grad)
    assert t.grad != 0


def test_gradients_reach_centroids_temperature_and_weights():
    x, _ = _from_codewords(64, books=4, k=4, v=3, seed=2)
    kernel = PQKernel(12, 4, subvector_length=3)
    kernel.calibrate(x + 0.1 * torch.randn_like(x), seed=0)
    w = torch.randn(3, 12, requires_grad=True)
    kernel(x, w).square().sum().backward()
    for name, grad in (
        ("centroids", kernel.centroids.grad),
        ("t", kernel.log_temperature.grad),
        ("w", w.grad),
    ):
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


@settings(max_examples=40, deadline=None)
@given(bits=st.integers(2, 10), rows=st.integers(1, 5), cols=st.integers(1, 40), seed=st.integers(0, 10_000))
def test_quantized_table_levels_and_error(bits, rows, cols, seed):
    table = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 3
    quantised = quantize_table(table, bits)
    step = table.abs().amax(1, keepdim=True) / (2 ** (bits - 1) - 1)
    assert ((quantised - table).abs() <= step / 2 + 1e-6).all()
    for row in quantised:
        assert len(row.unique()) <= 2**bits - 1  # symmetric: int8 has at most 255 levels
    assert quantize_table(table, None) is table


def test_table_rounding_is_straight_through():
    table = torch.randn(3, 8, requires_grad=True)
    quantize_table(table, 4).mul(torch.arange(8.0)).sum().backward()
    torch.testing.assert_close(table.grad, torch.arange(8.0).expand(3, 8))


def test_kernel_is_registered_and_built_from_the_config():
    config = HashConfig(
        kernel="product_quantization", hash_length=16, pq_subvector_length=2, pq_table_bits=None
    )
    kernel = build_kernel(config.kernel, 10, config.hash_length, **config.kernel_options())
    assert isinstance(kernel, PQKernel) and kernel.centroids.shape == (5, 16, 2) and kernel.table_bits is None
    assert HashConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "args,kwargs,message",
    [
        ((10, 16), {"subvector_length": 4}, "V=4 does not divide in_features=10; allowed V .*: 1, 2, 5, 10"),
        ((8, 0), {}, "hash_length"),
        ((8, 4), {"table_bits": 1}, "table_bits"),
        ((8, 4), {"temperature": 0.0}, "temperature"),
    ],
)
def test_bad_kernel_arguments_are_named(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        PQKernel(*args, **kwargs)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"pq_subvector_length": 0}, "pq_subvector_length"),
        ({"pq_table_bits": 1}, "pq_table_bits"),
        ({"pq_temperature": -1.0}, "pq_temperature"),
        ({"input_tile_size": 8}, "does not tile"),
    ],
)
def test_bad_pq_config_fields_are_named(changes, message):
    with pytest.raises(ValueError, match=message):
        HashConfig(kernel="product_quantization", **changes)


def test_uncalibrated_kernel_tells_the_user_to_calibrate():
    kernel = PQKernel(8, 4)
    with pytest.raises(RuntimeError, match="not calibrated.*calibrate_pq"):
        kernel(torch.randn(2, 8), torch.randn(3, 8))


def test_docstring_examples_hold():
    import doctest

    import aimc_lsh.kernels.pq as module

    assert doctest.testmod(module, raise_on_error=False).failed == 0
