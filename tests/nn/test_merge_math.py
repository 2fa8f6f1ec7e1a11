"""Neuron-merging arithmetic: folding, fingerprints, buckets, representatives, new_like, chain rewrites."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from aimc_lsh.nn.merge_math import (
    bucket_assignment,
    bucket_count,
    fingerprint_bits,
    folded_vectors,
    merge_chain_modules,
    new_like,
    representatives,
)


def _random_bn(bn: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.running_mean.copy_(0.5 * torch.randn(n, generator=g))
        bn.running_var.copy_(0.3 + torch.rand(n, generator=g))
        bn.weight.copy_(torch.randn(n, generator=g))  # some negative gammas too
        bn.bias.copy_(0.5 * torch.randn(n, generator=g))
    bn.num_batches_tracked.fill_(7)
    return bn.eval()


def _augmented_patches(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    u = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    return torch.cat([u, torch.ones(u.shape[0], 1, u.shape[2], dtype=u.dtype)], dim=1)  # (N, D + 1, L)


# ------------------------------------------------------------------------------------ folded_vectors
def test_folded_vectors_reproduce_conv_batchnorm_eval_pre_activations():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3, stride=2, padding=1).double()
    bn = _random_bn(nn.BatchNorm2d(4).double(), seed=1)
    x = torch.randn(3, 2, 7, 7, dtype=torch.float64)
    vectors, fold, beta = folded_vectors(conv, bn)
    assert vectors.shape == (4, 2 * 9 + 1) and vectors.dtype == torch.float64
    expected = bn(conv(x))  # eval mode: running statistics
    pre = torch.einsum("cd,ndl->ncl", vectors, _augmented_patches(conv, x)).reshape(expected.shape)
    torch.testing.assert_close(pre, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fold, bn.weight / torch.sqrt(bn.running_var + bn.eps))
    assert torch.equal(beta, bn.bias)


def test_folded_vectors_without_norm_or_bias_append_a_zero_bias():
    linear = nn.Linear(5, 3, bias=False)
    vectors, fold, beta = folded_vectors(linear, None)
    assert torch.equal(vectors[:, :5], linear.weight) and torch.equal(vectors[:, 5], torch.zeros(3))
    assert torch.equal(fold, torch.ones(3)) and torch.equal(beta, torch.zeros(3))
    with_bias = nn.Linear(5, 3)
    assert torch.equal(folded_vectors(with_bias, None)[0][:, 5], with_bias.bias)


def test_folded_vectors_are_differentiable_through_the_layer_and_the_norm():
    torch.manual_seed(1)
    linear, bn = nn.Linear(4, 3), _random_bn(nn.BatchNorm1d(3), seed=2)
    vectors, _, _ = folded_vectors(linear, bn)
    vectors.square().sum().backward()
    assert linear.weight.grad.abs().sum() > 0 and linear.bias.grad.abs().sum() > 0
    assert bn.weight.grad.abs().sum() > 0 and bn.bias.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------- fingerprints
def test_fingerprint_bits_are_signs_of_projections_and_ignore_positive_scale():
    torch.manual_seed(2)
    vectors, projection = torch.randn(6, 5), torch.randn(8, 5)
    bits = fingerprint_bits(vectors, projection)
    assert bits.dtype == torch.bool and bits.shape == (6, 8)
    assert torch.equal(bits, (vectors.double() @ projection.double().T) > 0)
    assert torch.equal(fingerprint_bits(3.7 * vectors, projection), bits)
    assert torch.equal(fingerprint_bits(-vectors, projection), ~bits)  # no projection is exactly 0 here
    assert not fingerprint_bits(torch.zeros(2, 5), projection).any()


# ------------------------------------------------------------------------------------------ buckets
def test_bucket_assignment_numbers_buckets_by_first_member():
    rows = torch.tensor([[1, 0], [0, 0], [1, 0], [1, 1], [0, 0], [1, 1]], dtype=torch.bool)
    assignment = bucket_assignment(rows)
    assert assignment.dtype == torch.long
    assert assignment.tolist() == [0, 1, 0, 2, 1, 2]
    # the same rows in another order are renumbered by their new first members
    assert bucket_assignment(rows[[3, 0, 1, 2, 4, 5]]).tolist() == [0, 1, 2, 1, 2, 0]


def test_bucket_assignment_and_count_edge_cases():
    assert bucket_assignment(torch.zeros(4, 0, dtype=torch.bool)).tolist() == [0, 0, 0, 0]
    assert bucket_assignment(torch.zeros(0, 3, dtype=torch.bool)).shape == (0,)
    assert bucket_count(torch.zeros(4, 0, dtype=torch.bool)) == 1  # no columns: one bucket
    assert bucket_count(torch.zeros(0, 3, dtype=torch.bool)) == 0  # no rows: no bucket
    assert bucket_count(torch.zeros(0, 0, dtype=torch.bool)) == 0
    assert bucket_count(torch.tensor([[True, False], [True, False], [False, False]])) == 2


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 12), cols=st.integers(0, 4), seed=st.integers(0, 10_000))
def test_bucket_assignment_groups_exactly_the_identical_rows(rows, cols, seed):
    bits = torch.rand(rows, cols, generator=torch.Generator().manual_seed(seed)) > 0.5
    assignment = bucket_assignment(bits)
    n = bucket_count(bits)
    assert sorted(set(assignment.tolist())) == list(range(n))
    for i in range(rows):
        for j in range(rows):
            assert (assignment[i] == assignment[j]) == torch.equal(bits[i], bits[j])
    first = [assignment.tolist().index(b) for b in range(n)]
    assert first == sorted(first)  # bucket b has a smaller first member than b + 1


# ---------------------------------------------------------------------------------- representatives
def test_single_member_buckets_are_copied_with_scale_one():
    torch.manual_seed(3)
    vectors = torch.randn(4, 5, dtype=torch.float64)
    vectors[2] = 0.0  # even a zero vector alone in its bucket
    reps, scales = representatives(vectors, torch.tensor([2, 0, 1, 3]), None)
    assert torch.equal(reps, vectors[[1, 2, 0, 3]])
    assert torch.equal(scales, torch.ones(4, dtype=torch.float64))


def test_identical_members_give_the_vector_itself_and_scale_one():
    v = torch.tensor([0.3, -1.2, 2.0, 0.5], dtype=torch.float64)
    reps, scales = representatives(
        torch.stack([v, v, v]), torch.tensor([0, 0, 0]), torch.tensor([0.2, 3.0, 1.0])
    )
    torch.testing.assert_close(reps[0], v, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(scales, torch.ones(3, dtype=torch.float64), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("weights", [None, torch.tensor([0.5, 2.0, 0.1, 1.0])])
def test_positive_multiples_reconstruct_exactly_and_keep_the_mean_norm(weights):
    torch.manual_seed(4)
    v = torch.randn(6, dtype=torch.float64)
    factors = torch.tensor([1.0, 2.5, 0.3, 4.0], dtype=torch.float64)
    vectors = factors[:, None] * v
    reps, scales = representatives(vectors, torch.zeros(4, dtype=torch.long), weights)
    torch.testing.assert_close(scales[:, None] * reps[0], vectors, rtol=1e-12, atol=1e-12)
    w = torch.ones(4, dtype=torch.float64) if weights is None else weights.double()
    norms = vectors.norm(dim=1)
    assert float(reps[0].norm()) == pytest.approx(float((w * norms).sum() / w.sum()), rel=1e-12)


def test_scales_are_least_squares_projections_and_members_pointing_away_get_zero():
    vectors = torch.tensor([[2.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.1, 0.0], [0.0, 0.0, 5.0]])
    reps, scales = representatives(vectors, torch.tensor([0, 0, 0, 1]), None)
    units = vectors[:3].double() / vectors[:3].double().norm(dim=1, keepdim=True)
    d = units.sum(0) / units.sum(0).norm()
    c = float(vectors[:3].double().norm(dim=1).mean())
    torch.testing.assert_close(reps[0], c * d, rtol=1e-12, atol=1e-12)
    assert float(vectors[2].double() @ d) < 0 and scales[2] == 0.0  # points away: dropped
    for i in (0, 1):  # the residual of a kept member is orthogonal to the representative
        residual = vectors[i].double() - scales[i] * reps[0]
        assert float(residual @ reps[0]) == pytest.approx(0.0, abs=1e-12)
        assert scales[i] > 0
    assert torch.equal(reps[1], vectors[3].double()) and scales[3] == 1.0


def test_member_weights_steer_the_direction_and_all_zero_weights_fall_back_to_uniform():
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    one_bucket = torch.zeros(2, dtype=torch.long)
    reps, _ = representatives(vectors, one_bucket, torch.tensor([3.0, 1.0]))
    d = reps[0] / reps[0].norm()
    torch.testing.assert_close(d, torch.tensor([3.0, 1.0], dtype=torch.float64) / 10**0.5)
    assert float(reps[0].norm()) == pytest.approx((3 * 1 + 1 * 2) / 4)  # weighted mean length
    uniform = representatives(vectors, one_bucket, None)
    zero = representatives(vectors, one_bucket, torch.zeros(2))
    assert all(torch.equal(a, b) for a, b in zip(uniform, zero, strict=True))


def test_cancelling_members_keep_the_heaviest_and_zero_buckets_stay_zero():
    v = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    reps, scales = representatives(torch.stack([v, -2 * v]), torch.zeros(2, dtype=torch.long), None)
    d = -v / v.norm()  # -2v has the larger norm
    torch.testing.assert_close(reps[0], 1.5 * v.norm() * d)
    assert scales[0] == 0.0 and float(scales[1]) == pytest.approx(2 / 1.5)
    reps, scales = representatives(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long), None)
    assert torch.equal(reps, torch.zeros(1, 3, dtype=torch.float64)) and not scales.any()
    reps, scales = representatives(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), None)
    assert reps.shape == (0, 4) and scales.shape == (0,)


# ------------------------------------------------------------------------------------------ new_like
def test_new_like_conv_keeps_options_dtype_mode_and_requires_grad_without_touching_the_rng():
    conv = nn.Conv2d(3, 5, (3, 1), stride=(2, 1), padding=(1, 0), dilation=(1, 2), bias=False)
    conv = conv.double().eval()
    conv.weight.requires_grad_(False)
    state = torch.get_rng_state()
    new = new_like(conv, out_channels=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert type(new) is nn.Conv2d and (new.in_channels, new.out_channels) == (3, 2)
    for attr in ("kernel_size", "stride", "padding", "dilation", "groups", "padding_mode"):
        assert getattr(new, attr) == getattr(conv, attr), attr
    assert new.bias is None and new.weight.dtype == torch.float64
    assert not new.training and not new.weight.requires_grad
    wide = new_like(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), in_channels=6)
    assert (wide.in_channels, wide.out_channels, wide.padding_mode) == (6, 4, "reflect")
    assert wide.training and wide.weight.requires_grad and wide.bias.requires_grad


def test_new_like_linear_and_batchnorm():
    linear = nn.Linear(4, 3)
    linear.bias.requires_grad_(False)
    state = torch.get_rng_state()
    new = new_like(linear, in_channels=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert type(new) is nn.Linear and (new.in_features, new.out_features) == (7, 3)
    assert new.weight.requires_grad and not new.bias.requires_grad
    bn = nn.BatchNorm1d(6, eps=1e-3, momentum=0.3).double().eval()
    new = new_like(bn, out_channels=2)
    assert type(new) is nn.BatchNorm1d and new.num_features == 2
    assert (new.eps, new.momentum, new.affine, new.track_running_stats) == (1e-3, 0.3, True, True)
    assert new.weight.dtype == torch.float64 and not new.training
    plain = new_like(nn.BatchNorm2d(4, affine=False, track_running_stats=False), out_channels=3)
    assert type(plain) is nn.BatchNorm2d and plain.num_features == 3
    assert not plain.affine and not plain.track_running_stats
    assert new_like(bn).num_features == 6  # no width given: its own, as for Conv2d and Linear


# ------------------------------------------------------------------------------ merge_chain_modules
class _Chain(nn.Module):
    """producer -> bn -> ReLU -> [max pool -> flatten] -> consumer."""

    def __init__(self, producer, norm, consumer, flatten):
        super().__init__()
        self.producer, self.norm, self.consumer, self.flatten = producer, norm, consumer, flatten

    def forward(self, x):
        h = self.producer(x)
        h = torch.relu(self.norm(h) if self.norm is not None else h)
        if self.flatten:
            h = F.max_pool2d(h, 2).flatten(1)
        return self.consumer(h)


def _conv_chain(flatten: bool) -> tuple[_Chain, torch.Tensor]:
    """Channel 3 folds to 2.5 x channel 1 and channel 5 to 0.4 x channel 1 (with other BN statistics)."""
    torch.manual_seed(5)
    producer = nn.Conv2d(2, 6, 3, padding=1).double()
    bn = _random_bn(nn.BatchNorm2d(6).double(), seed=6)
    with torch.no_grad():
        bn.weight.abs_()  # a negative gamma would flip the sign of the fold
        fold = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        target = fold[1] * (producer.bias[1] - bn.running_mean[1]) + bn.bias[1]  # folded bias of 1
        for i, t in ((3, 2.5), (5, 0.4)):
            producer.weight[i] = t * fold[1] / fold[i] * producer.weight[1]
            producer.bias[i] = bn.running_mean[i] + (t * target - bn.bias[i]) / fold[i]
    consumer = nn.Linear(6 * 4 * 4, 3).double() if flatten else nn.Conv2d(6, 4, 3, padding=1).double()
    return _Chain(producer, bn, consumer, flatten).eval(), torch.randn(4, 2, 8, 8, dtype=torch.float64)


ASSIGNMENT = torch.tensor([0, 1, 2, 1, 3, 1])  # channels 1, 3, 5 share bucket 1


@pytest.mark.parametrize("flatten", [False, True])
def test_merging_positive_multiples_leaves_the_chain_output_unchanged(flatten):
    chain, x = _conv_chain(flatten)
    expected = chain(x)
    p, n, c = merge_chain_modules(chain.producer, chain.norm, chain.consumer, ASSIGNMENT, None)
    assert (p.out_channels, n.num_features) == (4, 4)
    assert (c.in_features == 4 * 16) if flatten else (c.in_channels == 4)
    merged = _Chain(p, n, c, flatten).eval()
    torch.testing.assert_close(merged(x), expected, rtol=1e-10, atol=1e-10)
    assert chain.producer.out_channels == 6 and chain.norm.num_features == 6  # inputs untouched
    torch.testing.assert_close(chain(x), expected, rtol=0, atol=0)


def test_merged_buckets_realise_the_representative_and_single_buckets_are_verbatim():
    chain, _ = _conv_chain(flatten=False)
    producer, bn = chain.producer, chain.norm
    weights = torch.tensor([1.0, 0.2, 1.0, 3.0, 1.0, 0.7])
    p, n, c = merge_chain_modules(producer, bn, chain.consumer, ASSIGNMENT, weights)
    with torch.no_grad():
        vectors, old_fold, _ = folded_vectors(producer, bn)
        new_vectors, new_fold, _ = folded_vectors(p, n)
    reps, scales = representatives(vectors, ASSIGNMENT, weights)
    torch.testing.assert_close(new_vectors[1], reps[1], rtol=1e-10, atol=1e-10)  # eval output a_r.x + b_r
    members = [1, 3, 5]
    k = float((old_fold[members].abs() * weights[members].double()).sum() / weights[members].sum())
    assert float(new_fold[1]) == pytest.approx(k)  # the members' mean |fold|, weighted
    assert float(n.running_var[1]) > 0
    for new_b, old_i in ((0, 0), (2, 2), (3, 4)):  # copied verbatim
        assert torch.equal(p.weight[new_b], producer.weight[old_i]) and p.bias[new_b] == producer.bias[old_i]
        for name in ("weight", "bias", "running_mean", "running_var"):
            assert getattr(n, name)[new_b] == getattr(bn, name)[old_i], name
    assert int(n.num_batches_tracked) == 7
    # consumer: the bucket's input column is sum_i s_i W[:, i]
    expected = sum(scales[i] * chain.consumer.weight[:, i] for i in (1, 3, 5))
    torch.testing.assert_close(c.weight[:, 1], expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(c.weight[:, 3], chain.consumer.weight[:, 4]) and torch.equal(
        c.bias, chain.consumer.bias
    )


def test_merged_modules_keep_dtype_training_flags_and_requires_grad():
    chain, _ = _conv_chain(flatten=False)
    chain.producer.train()
    chain.consumer.weight.requires_grad_(False)
    p, n, c = merge_chain_modules(chain.producer, chain.norm, chain.consumer, ASSIGNMENT, None)
    assert p.training and not n.training and not c.training
    assert all(t.dtype == torch.float64 for t in (p.weight, n.weight, n.running_var, c.weight))
    assert p.weight.requires_grad and not c.weight.requires_grad and c.bias.requires_grad


def test_a_metric_factor_keeps_merges_of_positive_multiples_exact():
    chain, x = _conv_chain(flatten=True)
    expected = chain(x)
    g = torch.Generator().manual_seed(7)
    d = chain.producer.weight[0].numel() + 1
    factor = torch.tril(0.3 * torch.randn(d, d, generator=g, dtype=torch.float64)) + 2 * torch.eye(d)
    p, n, c = merge_chain_modules(chain.producer, chain.norm, chain.consumer, ASSIGNMENT, None, metric=factor)
    torch.testing.assert_close(_Chain(p, n, c, True).eval()(x), expected, rtol=1e-9, atol=1e-9)


def test_linear_chain_without_norm_merges_exactly():
    torch.manual_seed(8)
    fc1, fc2 = nn.Linear(5, 4), nn.Linear(4, 2)
    with torch.no_grad():
        fc1.weight[2], fc1.bias[2] = 3.0 * fc1.weight[0], 3.0 * fc1.bias[0]
    chain = _Chain(fc1, None, fc2, flatten=False)
    x = torch.randn(16, 5)
    p, n, c = merge_chain_modules(fc1, None, fc2, torch.tensor([0, 1, 0, 2]), None)
    assert n is None and (p.out_features, c.in_features) == (3, 3)
    assert p.weight.dtype == torch.float32
    torch.testing.assert_close(_Chain(p, None, c, flatten=False)(x), chain(x), rtol=1e-5, atol=1e-5)
