"""Merge-aware fine-tuning: cohesion training with rehashing, then an exact merge of the trained model."""

import copy

import pytest
import torch

from aimc_lsh.nn.merging import MergeConfig, merge_neurons
from aimc_lsh.nn.rehash import cohesion_penalty
from aimc_lsh.train.merge_aware import MergeAwareConfig, merge_aware_fine_tune


def _accuracy(model, data):
    images, labels = data.tensors()
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def test_merge_aware_training_tightens_buckets_and_merges(digits_teacher, digits_data):
    train, test = digits_data
    merge_config = MergeConfig(target_ratio=0.25)
    config = MergeAwareConfig(steps=40, cohesion=10.0, augment=False, rehash_interval=10, lr=3e-3)
    result = merge_aware_fine_tune(copy.deepcopy(digits_teacher), train, merge_config, config)
    assert len(result.history) == 40 and result.tracker.checks == 4
    assert result.history[-1]["cohesion"] < 0.6 * result.history[0]["cohesion"]
    assert result.report.channels_after == 4 and result.merged.conv.out_channels == 4
    # the merged model is the trained model with each bucket collapsed: closer to it than before training
    plan = result.tracker.plan
    assert float(cohesion_penalty(result.model, plan).detach()) < result.history[0]["cohesion"]
    baseline, _ = merge_neurons(digits_teacher, merge_config, train.tensors()[0][:256])
    assert _accuracy(result.merged, test) > _accuracy(baseline, test) - 0.05


def test_zero_steps_only_merges_and_bad_settings_raise(digits_teacher, digits_data):
    train, _ = digits_data
    result = merge_aware_fine_tune(
        copy.deepcopy(digits_teacher), train, MergeConfig(bits=2), MergeAwareConfig(steps=0)
    )
    assert result.history == [] and result.merged.conv.out_channels <= 4
    with pytest.raises(ValueError, match="kd_alpha > 0 needs the FP32 model as teacher="):
        merge_aware_fine_tune(digits_teacher, train, MergeConfig(bits=2), MergeAwareConfig(kd_alpha=0.5))
    with pytest.raises(ValueError, match="bn_mode must be 'freeze' or 'train'"):
        MergeAwareConfig(bn_mode="eval")
    with pytest.raises(ValueError, match="rehash_interval must be a positive integer"):
        MergeAwareConfig(rehash_interval=0)
