"""Calibration statistics for neuron merging: batches, metric factors, mean activations, input moments."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aimc_lsh.nn import merge_calibration
from aimc_lsh.nn.fx_chains import MergeChain
from aimc_lsh.nn.merge_calibration import calibrate_chains, iter_batches, metric_factor
from aimc_lsh.nn.merge_math import folded_vectors, merge_chain_modules
from tests.nn.twin_neurons import twin_neuron_probe


class _ConvNet(nn.Module):
    """conv -> bn -> ReLU -> conv2 -> ReLU -> mean -> fc: two chains, one with a norm."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(2, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.fc = nn.Conv2d(4, 3, 1), nn.Linear(3, 2)
        with torch.no_grad():  # shift the norm so that ReLU(bn(conv)) differs from ReLU(conv)
            self.bn.running_mean.fill_(0.4)
            self.bn.running_var.fill_(2.0)
            self.bn.bias.copy_(torch.tensor([0.5, -0.5, 1.0, 0.0]))

    def forward(self, x):
        h = self.conv2(torch.relu(self.bn(self.conv(x))))
        return self.fc(torch.relu(h).mean((2, 3)))


CHAINS = [
    MergeChain("conv", "bn", "conv2", (), False),
    MergeChain("conv2", None, "fc", ("mean",), False),
]


def _patches(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    u = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
    u = u.transpose(1, 2).reshape(-1, u.shape[1]).double()
    return torch.cat([u, torch.ones(len(u), 1, dtype=torch.float64)], dim=1)


# --------------------------------------------------------------------------------------- iter_batches
def test_iter_batches_yields_the_inputs_of_every_documented_form():
    a, b, y = torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 1])
    assert list(iter_batches(None)) == []
    (only,) = list(iter_batches(a))  # a tensor is one batch, not a sequence of rows
    assert only is a
    assert [t is s for t, s in zip(iter_batches([a, b]), (a, b), strict=True)] == [True, True]
    assert list(iter_batches([(a, y), [b, y[:1]]]))[1] is b  # (inputs, labels) as tuples or lists
    assert list(iter_batches([(a, y)]))[0] is a
    assert list(iter_batches(t for t in (a, b)))[1] is b  # any iterable, e.g. a generator
    loader = DataLoader(TensorDataset(torch.randn(5, 3), torch.zeros(5)), batch_size=2)
    shapes = [tuple(t.shape) for t in iter_batches(loader)]
    assert shapes == [(2, 3), (2, 3), (1, 3)]


# -------------------------------------------------------------------------------------- metric_factor
def test_metric_factor_is_the_lower_cholesky_factor_of_the_loaded_moment():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=g)
    s = (x.T @ x / 50).float()
    for ridge in (0.0, 1e-6, 0.1):
        factor = metric_factor(s, ridge) if ridge else metric_factor(s, ridge=0.0)
        assert factor.dtype == torch.float64
        assert torch.equal(factor, torch.tril(factor))
        loaded = s.double() + ridge * float(s.double().diagonal().mean()) * torch.eye(4, dtype=torch.float64)
        torch.testing.assert_close(factor @ factor.T, loaded, rtol=1e-12, atol=1e-12)
    default = metric_factor(s)
    loaded = s.double() + 1e-6 * float(s.double().diagonal().mean()) * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(default @ default.T, loaded, rtol=1e-12, atol=1e-12)


def test_metric_factor_makes_rank_deficient_statistics_invertible():
    x = torch.cat([torch.randn(30, 2, dtype=torch.float64), torch.zeros(30, 1, dtype=torch.float64)], 1)
    s = x.T @ x / 30  # a dead input: a zero row and column
    with pytest.raises(torch.linalg.LinAlgError):
        torch.linalg.cholesky(s)
    factor = metric_factor(s)
    assert torch.isfinite(factor).all() and (factor.diagonal() > 0).all()
    assert torch.isfinite(metric_factor(torch.zeros(3, 3))).all()  # all-zero statistics too


# ----------------------------------------------------------------------------------- calibrate_chains
def test_means_are_the_mean_post_relu_activations_over_all_batches():
    torch.manual_seed(1)
    model = _ConvNet()
    batches = [torch.randn(3, 2, 6, 6), torch.randn(5, 2, 6, 6)]  # unequal sizes: a pooled mean
    means, factors = calibrate_chains(model, CHAINS, batches, metric=False)
    assert factors == {} and set(means) == {"conv", "conv2"}
    assert model.training  # calibration ran in eval mode; the reference below must too
    model.eval()
    x = torch.cat(batches)
    with torch.no_grad():
        act = torch.relu(model.bn(model.conv(x)))
        act2 = torch.relu(model.conv2(act))
    assert means["conv"].dtype == torch.float64 and means["conv"].shape == (4,)
    torch.testing.assert_close(means["conv"], act.double().mean((0, 2, 3)), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(means["conv2"], act2.double().mean((0, 2, 3)), rtol=1e-6, atol=1e-7)
    no_norm = torch.relu(model.conv(x)).double().mean((0, 2, 3))
    assert not torch.allclose(means["conv"], no_norm, atol=1e-3)  # measured after the norm


def test_factors_turn_neuron_dot_products_into_pre_activation_correlations_on_the_data():
    torch.manual_seed(2)
    model = _ConvNet()
    batches = [(torch.randn(3, 2, 6, 6), torch.zeros(3)), (torch.randn(2, 2, 6, 6), torch.zeros(2))]
    _, factors = calibrate_chains(model, CHAINS, batches, metric=True)
    assert set(factors) == {"conv", "conv2"} and factors["conv"].shape == (2 * 9 + 1, 2 * 9 + 1)
    model.eval()
    x = torch.cat([b for b, _ in batches])
    u = _patches(model.conv, x)  # the producer's augmented inputs, with its stride and padding
    moment = u.T @ u / len(u)
    factor = factors["conv"]
    assert factor.dtype == torch.float64 and torch.equal(factor, torch.tril(factor))
    torch.testing.assert_close(factor @ factor.T, moment, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # v_i^T S v_j = E[(v_i . x~)(v_j . x~)] with the norm folded in
        vectors = folded_vectors(model.conv, model.bn)[0].double()
    metric_coords = vectors @ factor
    pre = u @ vectors.T
    torch.testing.assert_close(metric_coords @ metric_coords.T, pre.T @ pre / len(u), rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        h = torch.relu(model.bn(model.conv(x)))
    u2 = _patches(model.conv2, h)
    torch.testing.assert_close(
        factors["conv2"] @ factors["conv2"].T, u2.T @ u2 / len(u2), rtol=1e-5, atol=1e-5
    )


def test_calibration_runs_in_eval_mode_and_restores_training_flags():
    torch.manual_seed(3)
    model = _ConvNet().train()
    model.conv2.eval()  # mixed flags must come back as they were
    stats = {k: v.clone() for k, v in model.bn.state_dict().items()}
    calibrate_chains(model, CHAINS, [torch.randn(4, 2, 6, 6)], metric=True)
    assert all(torch.equal(v, model.bn.state_dict()[k]) for k, v in stats.items())  # no BN update
    assert model.training and model.bn.training and model.conv.training and not model.conv2.training
    assert not model.conv._forward_hooks and not model.bn._forward_hooks  # hooks removed


def test_calibration_without_batches_returns_empty_statistics():
    model = _ConvNet()
    assert calibrate_chains(model, CHAINS, None, metric=True) == ({}, {})
    assert calibrate_chains(model, CHAINS, [], metric=True) == ({}, {})


def test_more_than_max_rows_patches_are_subsampled_evenly(monkeypatch):
    monkeypatch.setattr(merge_calibration, "MAX_ROWS", 4)
    fc1, fc2 = nn.Linear(2, 3), nn.Linear(3, 1)
    model = nn.Sequential(fc1, nn.ReLU(), fc2)
    x = torch.randn(10, 2, generator=torch.Generator().manual_seed(5))
    _, factors = calibrate_chains(model, [MergeChain("0", None, "2", (), False)], x, metric=True)
    rows = torch.cat([x[::3], torch.ones(4, 1)], dim=1).double()  # rows 0, 3, 6, 9
    torch.testing.assert_close(factors["0"], metric_factor(rows.T @ rows / 4), rtol=1e-5, atol=1e-5)
    _, full = calibrate_chains(model, [MergeChain("0", None, "2", (), False)], x[:4], metric=True)
    rows = torch.cat([x[:4], torch.ones(4, 1)], dim=1).double()  # at most MAX_ROWS: every row
    torch.testing.assert_close(full["0"], metric_factor(rows.T @ rows / 4), rtol=1e-5, atol=1e-5)


def test_the_calibrated_metric_lowers_the_merge_error_on_the_data():
    model, x = twin_neuron_probe(hidden=3, seed=4)  # neurons 0 and 1 differ only on inputs x never uses
    chain = MergeChain("fc1", None, "fc2", (), False)
    means, factors = calibrate_chains(model, [chain], [x[:100], x[100:]], metric=True)
    assignment = torch.tensor([0, 0, 1])

    def error(metric):
        fc1, _, fc2 = merge_chain_modules(model.fc1, None, model.fc2, assignment, means["fc1"], metric=metric)
        with torch.no_grad():
            return float((fc2(torch.relu(fc1(x))) - model(x)).abs().mean())

    scale = float(model(x).detach().abs().mean())
    plain, calibrated = error(None), error(factors["fc1"])
    assert plain > 0.01 * scale  # in weight space the dead inputs pull the representative away
    assert calibrated < 1e-3 * plain  # in the input metric the two neurons are the same neuron
