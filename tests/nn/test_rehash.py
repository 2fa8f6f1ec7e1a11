"""Mongoose-style rehashing of merge plans and the bucket-cohesion penalty."""

import pytest
import torch

from aimc_lsh.models import DigitsNet, resnet20_b
from aimc_lsh.nn.merging import MergeConfig, apply_merge_plan, plan_merges
from aimc_lsh.nn.rehash import RehashTracker, cohesion_penalty


@pytest.fixture
def model():
    torch.manual_seed(0)
    return resnet20_b().eval()


def test_a_tracker_whose_weights_do_not_change_never_rehashes(model):
    tracker = RehashTracker(model, MergeConfig(target_ratio=0.5), threshold=0.0, interval=2)
    before = [layer.assignment.clone() for layer in tracker.plan.layers]
    assert not any(tracker.step(model) for _ in range(6))
    assert (tracker.calls, tracker.checks, tracker.rehashes) == (6, 3, 0)
    assert all(e.changed_fraction == 0.0 and not e.rehashed for e in tracker.history)
    assert all(torch.equal(a, layer.assignment) for a, layer in zip(before, tracker.plan.layers, strict=True))


def test_a_large_weight_change_triggers_a_rehash_with_new_buckets(model):
    tracker = RehashTracker(model, MergeConfig(target_ratio=0.5), threshold=0.2, interval=3)
    old = {layer.chain.producer: layer.assignment.clone() for layer in tracker.plan.layers}
    with torch.no_grad():  # redraw one layer's weights: about half of its fingerprint bits flip
        model.layer2[1].conv1.weight.copy_(torch.randn_like(model.layer2[1].conv1.weight))
    assert not tracker.step(model) and not tracker.step(model)  # between checks nothing happens
    assert tracker.step(model)
    (event,) = [e for e in tracker.history if e.rehashed]
    assert event.producer == "layer2.1.conv1" and event.changed_fraction > 0.2 and event.call == 3
    assert tracker.rehashes == 1
    new = {layer.chain.producer: layer.assignment for layer in tracker.plan.layers}
    assert not torch.equal(new["layer2.1.conv1"], old["layer2.1.conv1"])
    assert all(torch.equal(new[p], old[p]) for p in old if p != "layer2.1.conv1")
    merged, report = apply_merge_plan(model, tracker.plan)
    assert merged(torch.rand(1, 3, 32, 32)).shape == (1, 10) and report.kept_fraction == 0.5


def test_force_rehashes_every_layer(model):
    tracker = RehashTracker(model, plan_merges(model, MergeConfig(bits=3)), threshold=0.5, interval=1)
    assert tracker.check(model, force=True) and tracker.rehashes == 9


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.0}, r"threshold must be a fraction of bits in \[0, 1\)"),
        ({"threshold": -0.1}, r"threshold must be a fraction of bits in \[0, 1\)"),
        ({"interval": 0}, "interval must be a positive integer"),
    ],
)
def test_bad_tracker_arguments(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RehashTracker(model, MergeConfig(bits=2), **kwargs)


def test_cohesion_penalty_is_zero_for_aligned_buckets_and_differentiable(model):
    plan = plan_merges(model, MergeConfig(target_ratio=0.5))
    penalty = cohesion_penalty(model, plan)
    assert 0 < float(penalty.detach()) < 2
    penalty.backward()
    assert model.layer1[0].conv1.weight.grad.abs().sum() > 0
    digits = DigitsNet(channels=6)
    with torch.no_grad():  # one bucket {1, 3} of aligned neurons, the others alone
        digits.conv.weight[3], digits.conv.bias[3] = 2 * digits.conv.weight[1], 2 * digits.conv.bias[1]
    plan = plan_merges(digits, MergeConfig(target_ratio=1.0))
    assert plan.report().layers[0].channels_after == 5
    assert float(cohesion_penalty(digits, plan).detach()) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        digits.conv.weight[3, 0, 0, 0] += 1.0
    assert float(cohesion_penalty(digits, plan).detach()) > 1e-3
