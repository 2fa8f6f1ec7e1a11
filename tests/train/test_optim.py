import math

import pytest
import torch

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.train import TrainConfig, WarmupCosine, build_optimizer, parameter_groups, projection_parameters


def test_learned_projections_get_their_own_learning_rate(digits_teacher):
    model = patch_model(digits_teacher, HashConfig(kernel="learned_projection", hash_length=8))
    optimizer = build_optimizer(model, TrainConfig(optimizer="adamw", weight_decay=0.01))
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert groups["weights"]["lr"] == pytest.approx(1e-3)
    assert groups["projections"]["lr"] == pytest.approx(1e-4)
    assert groups["projections"]["weight_decay"] == 0.0
    assert len(groups["projections"]["params"]) == len(projection_parameters(model)) == 2


def test_random_projections_are_not_trained(digits_teacher):
    model = patch_model(digits_teacher, HashConfig(kernel="random_projection", hash_length=8))
    groups = parameter_groups(model, 1e-3, 1e-4, 0.0)
    assert [g["name"] for g in groups] == ["weights"]


def test_warmup_cosine_schedule():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.Adam([{"params": [p], "lr": 1.0}])
    sched = WarmupCosine(opt, total_steps=12, warmup_steps=2, min_lr_ratio=0.1)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(12):
        sched.step()
        lrs.append(sched.get_last_lr()[0])
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0)
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[-1] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:], strict=False))
    state = sched.state_dict()
    other = WarmupCosine(opt, total_steps=99)
    other.load_state_dict(state)
    assert other.get_last_lr()[0] == pytest.approx(0.1)


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="bn_mode"):
        TrainConfig(bn_mode="off")
    with pytest.raises(ValueError, match="kd_alpha"):
        TrainConfig(kd_alpha=1.5)
    with pytest.raises(ValueError, match="recipe"):
        TrainConfig.for_recipe("magic")
    with pytest.raises(ValueError, match="no field"):
        TrainConfig().replace(lr=1.0)
    assert TrainConfig.for_recipe("calib").epochs == 0
    assert TrainConfig.for_recipe("blend_kd") == TrainConfig()  # the default recipe is the default config
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()


def test_comparator_thresholds_train_with_the_projections(digits_teacher):
    config = HashConfig(kernel="random_projection", hash_length=8, comparator_thresholds=True)
    model = patch_model(digits_teacher, config)
    thresholds = [p for name, p in model.named_parameters() if name.endswith("threshold")]
    assert len(thresholds) == 2
    groups = {g["name"]: g for g in parameter_groups(model, 1e-3, 3e-4, 0.01)}
    assert {id(p) for p in groups["projections"]["params"]} == {id(p) for p in thresholds}
    assert groups["projections"]["lr"] == pytest.approx(3e-4) and groups["projections"]["weight_decay"] == 0.0
    assert not {id(p) for p in thresholds} & {id(p) for p in groups["weights"]["params"]}
