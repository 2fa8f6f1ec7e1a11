"""LSH neuron merging: exactness on duplicated neurons, ResNet residual consistency, counts, errors."""

import math

import pytest
import torch
from torch import nn

from aimc_lsh.eval.complexity import count_params_flops
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import DigitsNet, resnet20_a, resnet20_b
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.merging import MergeConfig, apply_merge_plan, merge_neurons, plan_merges
from tests.nn.twin_neurons import twin_neuron_probe

BLOCKS = [f"layer{s}.{b}" for s in (1, 2, 3) for b in (0, 1, 2)]


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.3 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.3 * torch.randn(n, generator=g))
    return model.eval()


@pytest.fixture(scope="module", params=["A", "B"])
def resnet(request):
    torch.manual_seed(0)
    model = resnet20_a() if request.param == "A" else resnet20_b()
    return _randomise_bn(model)


def test_duplicated_and_rescaled_neurons_merge_exactly_in_a_cnn():
    torch.manual_seed(0)
    model = DigitsNet(channels=8).eval()
    with torch.no_grad():  # neuron 3 = 2.5 x neuron 1, neuron 5 = neuron 1
        model.conv.weight[3], model.conv.bias[3] = 2.5 * model.conv.weight[1], 2.5 * model.conv.bias[1]
        model.conv.weight[5], model.conv.bias[5] = model.conv.weight[1], model.conv.bias[1]
    x = torch.rand(16, 1, 8, 8)
    for batches in (None, [x[:8], x[8:]]):  # weight geometry; input metric + activation weights
        plan = plan_merges(model, MergeConfig(target_ratio=1.0), batches)
        assert (plan.layers[0].metric is None) == (batches is None)
        merged, report = apply_merge_plan(model, plan)
        assert report.channels_before == 8 and report.channels_after == 6
        assert merged.conv.out_channels == 6 and merged.fc.in_features == 6 * 16
        torch.testing.assert_close(merged(x), model(x), rtol=1e-5, atol=1e-5)
    # untouched neurons (single-member buckets) keep their exact weights and consumer columns
    assert torch.equal(merged.conv.weight[0], model.conv.weight[0])
    assert torch.equal(merged.fc.weight[:, :16], model.fc.weight[:, :16])
    assert model.conv.out_channels == 8  # not in place


def test_batchnorm_folded_multiples_merge_exactly_in_a_residual_block(resnet):
    model = _randomise_bn(type(resnet)(20, shortcut=resnet.shortcut_type), seed=1)
    block = model.layer2[1]
    with torch.no_grad():  # channel 7 folds to 1.7 x channel 2 although its conv row and BN differ
        conv, bn = block.conv1, block.bn1
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight[7] = 3.0 * conv.weight[2]
        bn.running_var[7], bn.weight[7] = 0.8, 1.1
        g7 = bn.weight[7] / torch.sqrt(bn.running_var[7] + bn.eps)
        t = 3.0 * g7 / g[2]
        b2 = -g[2] * bn.running_mean[2] + bn.bias[2]
        bn.running_mean[7] = 0.25
        bn.bias[7] = t * b2 + g7 * bn.running_mean[7]
    merged, report = merge_neurons(model, MergeConfig(target_ratio=1.0))
    assert merged.layer2[1].conv1.out_channels == 31 and merged.layer2[1].bn1.num_features == 31
    assert report.channels_after == report.channels_before - 1
    x = torch.rand(4, 3, 32, 32)
    torch.testing.assert_close(merged(x), model(x), rtol=1e-4, atol=1e-4)


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.bn = nn.Linear(6, 10), nn.BatchNorm1d(10)
        self.fc2, self.fc3 = nn.Linear(10, 8), nn.Linear(8, 3)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.drop(torch.relu(self.bn(self.fc1(x))))
        return self.fc3(nn.functional.relu(self.fc2(x)))


def test_linear_chains_with_batchnorm1d_and_a_layer_in_two_chains():
    torch.manual_seed(0)
    model = _randomise_bn(_MLP())
    with torch.no_grad():
        model.fc1.weight[4], model.fc1.bias[4] = model.fc1.weight[0], model.fc1.bias[0]
        model.bn.running_mean[4], model.bn.running_var[4] = model.bn.running_mean[0], model.bn.running_var[0]
        model.bn.weight[4], model.bn.bias[4] = model.bn.weight[0], model.bn.bias[0]
        model.fc2.weight[5], model.fc2.bias[5] = model.fc2.weight[1] * 0.5, model.fc2.bias[1] * 0.5
    merged, report = merge_neurons(model, MergeConfig(target_ratio=1.0))
    assert [(r.producer, r.channels_after) for r in report.layers] == [("fc1", 9), ("fc2", 7)]
    assert merged.fc2.in_features == 9 and merged.fc3.in_features == 7
    x = torch.randn(5, 6)
    torch.testing.assert_close(merged(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ratio", [0.75, 0.5])
def test_resnet_merges_only_block_internal_channels(resnet, ratio):
    plan = plan_merges(resnet, MergeConfig(target_ratio=ratio))
    assert [(m.chain.producer, m.chain.norm, m.chain.consumer) for m in plan.layers] == [
        (f"{b}.conv1", f"{b}.bn1", f"{b}.conv2") for b in BLOCKS
    ]
    merged, report = apply_merge_plan(resnet, plan)
    for row, block in zip(report.layers, BLOCKS, strict=True):
        before = resnet.get_submodule(block)
        after = merged.get_submodule(block)
        kept = math.floor(ratio * before.conv1.out_channels)
        assert row.channels_after == kept  # refinement lands on the target
        assert after.conv1.out_channels == after.bn1.num_features == after.conv2.in_channels == kept
        # the residual stream keeps its width: block outputs, shortcuts, stem and classifier unchanged
        assert after.conv2.out_channels == before.conv2.out_channels
        assert after.bn2.num_features == before.bn2.num_features
        assert after.conv1.in_channels == before.conv1.in_channels
        if getattr(before, "downsample", None) is not None:
            assert torch.equal(after.downsample[0].weight, before.downsample[0].weight)
    assert torch.equal(merged.conv1.weight, resnet.conv1.weight)
    assert torch.equal(merged.classifier.weight, resnet.classifier.weight)
    x = torch.rand(2, 3, 32, 32)
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(o.shape)) for m in merged.modules()]
    try:
        assert merged(x).shape == (2, 10)  # every residual addition saw equal shapes
    finally:
        for h in hooks:
            h.remove()
    assert all(s[0] == 2 for s in shapes)


def test_param_and_flop_reduction_match_a_hand_count(resnet):
    merged, report = merge_neurons(resnet, MergeConfig(target_ratio=0.5))
    base, small = count_params_flops(resnet, (3, 32, 32)), count_params_flops(merged, (3, 32, 32))
    # layer1.0 by hand: conv1 16 -> 8 outputs (16 inputs, 3x3), bn1 16 -> 8, conv2 8 -> 16, on 32 x 32
    by_path = {c.path: c for c in small.layers}
    assert by_path["layer1.0.conv1"].params == 8 * 16 * 9 and by_path["layer1.0.conv2"].params == 16 * 8 * 9
    assert by_path["layer1.0.conv1"].macs == 32 * 32 * 8 * 16 * 9
    assert by_path["layer1.0.conv2"].macs == 32 * 32 * 16 * 8 * 9
    # whole model: each block loses (C - C') channels of conv1 (in x 9), bn1 (2) and conv2 (out x 9)
    params_saved = macs_saved = 0
    for row, block in zip(report.layers, BLOCKS, strict=True):
        b = resnet.get_submodule(block)
        lost = row.channels_before - row.channels_after
        hw = {"1": 32, "2": 16, "3": 8}[block[5]]
        params_saved += lost * (b.conv1.in_channels * 9 + 2 + b.conv2.out_channels * 9)
        macs_saved += lost * hw * hw * 9 * (b.conv1.in_channels + b.conv2.out_channels)
    assert base.params - small.params == params_saved
    assert base.macs - small.macs == macs_saved
    p_red, f_red = base.reduction(small)
    assert 0 < p_red < 0.5 and 0 < f_red < 0.5


def test_ratio_one_on_a_resnet_changes_nothing(resnet):
    merged, report = merge_neurons(resnet, MergeConfig(target_ratio=1.0))
    assert report.kept_fraction == 1.0
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(merged(x), resnet(x))


def test_plans_are_deterministic_and_seeded(resnet):
    config = MergeConfig(target_ratio=0.5, seed=3)
    first, second = plan_merges(resnet, config), plan_merges(resnet, config)
    assert all(
        torch.equal(a.assignment, b.assignment) for a, b in zip(first.layers, second.layers, strict=True)
    )
    other = plan_merges(resnet, MergeConfig(target_ratio=0.5, seed=4))
    assert any(
        not torch.equal(a.assignment, b.assignment) for a, b in zip(first.layers, other.layers, strict=True)
    )


def test_bits_mode_skip_and_min_channels(resnet):
    plan = plan_merges(resnet, MergeConfig(bits=2, skip=("layer1", "layer3.2.conv1")))
    rows = {r.producer: r for r in plan.report().layers}
    assert all(rows[f"layer1.{b}.conv1"].channels_after == 16 for b in range(3))
    assert rows["layer3.2.conv1"].channels_after == 64
    assert all(rows[f"layer2.{b}.conv1"].channels_after <= 4 for b in range(3))  # 2 bits: <= 4 buckets
    plan = plan_merges(resnet, MergeConfig(bits=1, min_channels=6))
    assert all(r.channels_after >= 6 and r.bits > 1 for r in plan.report().layers)


def test_merged_model_can_be_hashed(resnet):
    merged, _ = merge_neurons(resnet, MergeConfig(target_ratio=0.5))
    hashed = patch_model(merged, HashConfig(hash_length=32))
    assert hashed(torch.rand(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target_ratio": 0.0}, r"target_ratio must be a number in \(0, 1\]"),
        ({"target_ratio": 1.5}, r"target_ratio must be a number in \(0, 1\]"),
        ({"target_ratio": True}, r"target_ratio must be a number in \(0, 1\]"),
        ({"bits": 0}, "bits must be a positive integer"),
        ({"bits": -3}, "bits must be a positive integer"),
        ({"bits": 80}, "bits must be at most max_bits=64"),
        ({}, "give exactly one of bits and target_ratio"),
        ({"bits": 4, "target_ratio": 0.5}, "give exactly one of bits and target_ratio"),
        ({"bits": 4, "min_channels": 0}, "min_channels must be a positive integer"),
        ({"bits": 4, "skip": "layer1"}, "skip must be a sequence of module paths"),
    ],
)
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MergeConfig(**kwargs)


def test_unknown_skip_path_and_untraceable_model_raise():
    with pytest.raises(ValueError, match=r"skip paths \['layer9'\] match no module of CifarResNet"):
        plan_merges(resnet20_a(), MergeConfig(bits=2, skip=("layer9",)))

    class Checks(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            if x.sum() > 0:
                x = -x
            return self.conv(x)

    with pytest.raises(ValueError, match="cannot trace Checks with torch.fx"):
        plan_merges(Checks(), MergeConfig(bits=2))


def test_a_plan_does_not_apply_to_an_already_merged_model():
    model = DigitsNet(channels=8).eval()
    plan = plan_merges(model, MergeConfig(bits=1))
    merged, _ = apply_merge_plan(model, plan)
    with pytest.raises(ValueError, match=r"the plan expects 8 channels at 'conv', the model has [12]\b"):
        apply_merge_plan(merged, plan)


def test_dependent_chains_are_recalibrated_in_the_input_metric():
    torch.manual_seed(1)
    model = _randomise_bn(_MLP())
    with torch.no_grad():
        model.fc2.weight[5], model.fc2.bias[5] = model.fc2.weight[1] * 0.5, model.fc2.bias[1] * 0.5
    x = torch.randn(64, 6)
    plan = plan_merges(model, MergeConfig(target_ratio=0.5), [x[:32], x[32:]])
    fc1, fc2 = plan.layers
    assert fc1.channels_after == 5 and fc1.metric.shape == (7, 7)
    assert fc2.metric.shape == (6, 6)  # fc2's inputs after fc1 merged: 5 channels + bias
    merged, _ = apply_merge_plan(model, plan)
    assert merged(x).shape == (64, 3) and merged.fc2.in_features == 5


def test_the_input_metric_merges_neurons_that_respond_alike_on_the_data():
    model, x = twin_neuron_probe(hidden=4, seed=0)  # neurons 0 and 1 differ only on inputs x never uses
    on_data, report = merge_neurons(model, MergeConfig(target_ratio=1.0, metric="inputs"), x)
    assert report.channels_after == 3
    torch.testing.assert_close(on_data(x), model(x), rtol=1e-3, atol=1e-3)
    _, report = merge_neurons(model, MergeConfig(target_ratio=1.0, metric="weights"), x)
    assert report.channels_after == 4
    with pytest.raises(ValueError, match='metric="inputs" needs calibration batches'):
        plan_merges(model, MergeConfig(bits=2, metric="inputs"))
    with pytest.raises(ValueError, match="metric must be one of"):
        MergeConfig(bits=2, metric="cosine")
