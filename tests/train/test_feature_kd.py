"""Feature distillation: the loss, the taps, the TrainConfig fields, training and resumption with it."""

import copy

import pytest
import torch

from aimc_lsh.kernels import HashConfig
from aimc_lsh.models.resnet import resnet20_a
from aimc_lsh.nn import patch_model
from aimc_lsh.train import TrainConfig, default_checkpoint_path, fine_tune, load_checkpoint
from aimc_lsh.train.feature_taps import FeatureTaps, default_feature_layers
from aimc_lsh.train.losses import feature_distillation_loss


def test_loss_is_the_mean_relative_error_and_scale_free():
    t = [torch.ones(2, 3), torch.full((4,), 10.0)]
    assert feature_distillation_loss([x.clone() for x in t], t) == 0
    s = [torch.zeros(2, 3), torch.full((4,), 12.0)]  # relative errors 1 and 0.04
    assert feature_distillation_loss(s, t).item() == pytest.approx((1.0 + 0.04) / 2)
    assert feature_distillation_loss([3 * x for x in s], [3 * x for x in t]).item() == pytest.approx(0.52)
    with pytest.raises(ValueError, match="does not match"):
        feature_distillation_loss([torch.ones(2)], [torch.ones(3)])
    with pytest.raises(ValueError, match="as many"):
        feature_distillation_loss([], [])


def test_default_layers_are_the_children_with_weights_but_the_classifier(digits_teacher):
    resnet = resnet20_a()
    assert default_feature_layers(resnet) == ["conv1", "layer1", "layer2", "layer3"]
    hashed = patch_model(resnet, HashConfig(hash_length=16))  # swapped layers keep their weights
    assert default_feature_layers(hashed) == ["conv1", "layer1", "layer2", "layer3"]
    assert default_feature_layers(digits_teacher) == ["conv"]


def test_taps_keep_each_forwards_outputs(digits_teacher):
    with pytest.raises(ValueError, match=r"no module \['layer9'\].*children: conv, fc"):
        FeatureTaps(digits_teacher, ["layer9"])
    taps = FeatureTaps(digits_teacher, ["conv", "fc"])
    with pytest.raises(RuntimeError, match="did not run"):
        taps.take()
    x = torch.rand(5, 1, 8, 8)
    logits = digits_teacher(x)
    conv, fc = taps.take()
    assert conv.shape == (5, 16, 8, 8) and torch.equal(fc, logits)
    taps.close()
    digits_teacher(x)
    with pytest.raises(RuntimeError):
        taps.take()  # hooks removed: nothing kept


def test_config_fields_validate_and_stay_out_of_tags_while_off(tmp_path):
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="feature_kd must be a non-negative number"):
            TrainConfig(feature_kd=bad)
    with pytest.raises(ValueError, match="feature_kd_layers must be module paths"):
        TrainConfig(feature_kd_layers=("",))
    assert TrainConfig(feature_kd_layers=["conv1"]).feature_kd_layers == ("conv1",)
    settings = TrainConfig().result_settings()
    assert "feature_kd" not in settings and "feature_kd_layers" not in settings
    assert TrainConfig(feature_kd=1.0).result_settings()["feature_kd_layers"] == ()
    # the cached default checkpoints of earlier versions keep their names (their settings are unchanged)
    path = default_checkpoint_path(cache_dir=tmp_path, fit_energy=None)
    assert path.name == "cifar10_resnet20_random_projection_k256_blend_kd_a9fe591123.pt"
    assert default_checkpoint_path(cache_dir=tmp_path, config=TrainConfig(feature_kd=1.0)) != path


def _relative_error(student, teacher, images, path):
    s_taps, t_taps = FeatureTaps(student, [path]), FeatureTaps(teacher, [path])
    with torch.no_grad():
        student(images), teacher(images)
        error = feature_distillation_loss(s_taps.take(), t_taps.take()).item()
    s_taps.close(), t_taps.close()
    return error


def test_training_with_feature_distillation_pulls_the_features_to_the_teacher(digits_teacher, digits_data):
    """A student whose convolution was perturbed: the feature term brings its output back to the teacher's.

    (Hashed students work the same way, but at the digits model's sizes their layer error is mostly the
    estimator's noise, which no training removes; measured: 0.556 vs 0.534 after 20 steps at k = 16.)
    """
    train, test = digits_data
    images = test.tensors()[0][:256]
    errors = {}
    for weight in (0.0, 5.0):
        student = copy.deepcopy(digits_teacher)
        noise = torch.randn(student.conv.weight.shape, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            student.conv.weight.add_(noise * student.conv.weight.std())
        config = TrainConfig.for_recipe(
            "ce", epochs=2.0, lr_weights=1e-2, batch_size=64, augment=False, progress=False, feature_kd=weight
        )
        fine_tune(student, train, config, teacher=digits_teacher)
        errors[weight] = _relative_error(student.eval(), digits_teacher, images, "conv")
    assert errors[5.0] < 0.5 * errors[0.0], errors  # measured 0.26 vs 0.89 (0.77 before training)


def test_feature_distillation_needs_a_teacher_and_real_paths(digits_teacher, digits_data):
    train, _ = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    with pytest.raises(ValueError, match="feature_kd > 0"):
        fine_tune(student, train, TrainConfig.for_recipe("ce", feature_kd=1.0, progress=False))
    config = TrainConfig.for_recipe("ce", feature_kd=1.0, feature_kd_layers=("conv", "nope"), progress=False)
    with pytest.raises(ValueError, match=r"no module \['nope'\]"):
        fine_tune(student, train, config, teacher=digits_teacher)


def test_a_checkpoint_written_before_the_fields_existed_resumes(digits_teacher, digits_data, tmp_path):
    train, _ = digits_data
    config = TrainConfig.for_recipe("ce", epochs=1.0, batch_size=128, augment=False, progress=False)
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    fine_tune(student, train, config, checkpoint=tmp_path / "c.pt", stop_after=2)
    state = load_checkpoint(tmp_path / "c.pt")
    del state["train_config"]["feature_kd"], state["train_config"]["feature_kd_layers"]
    torch.save(state, tmp_path / "c.pt")
    resumed = fine_tune(
        patch_model(digits_teacher, HashConfig(hash_length=16)), train, config,
        checkpoint=tmp_path / "c.pt", resume=True,
    )  # fmt: skip
    assert resumed.steps == resumed.steps_per_epoch == len(train) // 128  # the whole epoch, continued
    with pytest.raises(ValueError, match="another TrainConfig"):
        fine_tune(student, train, config.replace(feature_kd=1.0), teacher=digits_teacher,
                  checkpoint=tmp_path / "c.pt", resume=True)  # fmt: skip
