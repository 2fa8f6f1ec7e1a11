import copy
import csv
import dataclasses

import pytest
import torch

from aimc_lsh.data import ImageTensorDataset, make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model
from aimc_lsh.train import NoiseSpec, TrainConfig, fine_tune, load_checkpoint, model_from_checkpoint
from aimc_lsh.train.bn_refresh import refresh_batchnorm
from aimc_lsh.train.trainer import _refresh_seconds


def evaluate_model(model, data):
    return evaluate(model.eval(), make_loader(data, batch_size=256, shuffle=False), progress=False).accuracy


def _quick(**changes):
    base = dict(epochs=1.0, batch_size=128, augment=False, progress=False, warmup_steps=2)
    return TrainConfig.for_recipe("ce", **{**base, **changes})


def test_finetune_recovers_accuracy_of_hashed_digits_model(digits_teacher, digits_data, tmp_path):
    train, test = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=32, seed=1))
    config = _quick(epochs=4.0, batch_size=64, lr_weights=3e-3)
    result = fine_tune(student, train, config, val_set=test, log_csv=tmp_path / "log.csv")
    assert result.initial_accuracy is not None and result.final_accuracy is not None
    # hashing collapses the model; training must win back a large part of it
    assert result.final_accuracy >= result.initial_accuracy + 0.15
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [r["phase"] for r in rows] == ["initial"] + ["train"] * 4
    assert float(rows[-1]["val_accuracy"]) == pytest.approx(result.final_accuracy)


def test_finetune_without_steps_changes_nothing(digits_teacher, digits_data):
    train, test = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    result = fine_tune(student, train, _quick(epochs=0.0), val_set=test)
    assert result.steps == 0
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def _resumable_config():
    return TrainConfig.for_recipe(
        "kd",
        epochs=1.0,
        batch_size=128,
        augment=True,
        crop_padding=1,
        progress=False,
        checkpoint_every=3,
        warmup_steps=3,
    )


@pytest.mark.parametrize(
    "noise",
    [
        NoiseSpec(projection_std=0.05, code_std=0.05, sa_offset_std=0.1, sa_noise_std=0.1),
        # the hashed layers on PCM arrays in the loop (every step programmed from its step number)
        NoiseSpec(hardware_profile="pcm", weight_t_inference=3600.0, sa_noise_std=0.1),
    ],
    ids=["sampled-noise", "arrays-in-the-loop"],
)
def test_checkpoint_resume_gives_identical_continuation(digits_teacher, digits_data, tmp_path, noise):
    train, test = digits_data
    config = HashConfig(kernel="learned_projection", hash_length=16, seed=3)

    straight = patch_model(digits_teacher, config)
    full = fine_tune(
        straight,
        train,
        _resumable_config(),
        teacher=digits_teacher,
        noise=noise,
        checkpoint=tmp_path / "a.pt",
    )
    interrupted = patch_model(digits_teacher, config)
    first = fine_tune(
        interrupted,
        train,
        _resumable_config(),
        teacher=digits_teacher,
        noise=noise,
        checkpoint=tmp_path / "b.pt",
        stop_after=4,
    )
    assert first.stopped_early and first.steps == 4
    assert load_checkpoint(tmp_path / "b.pt")["step"] == 4
    resumed_model = patch_model(digits_teacher, config)
    second = fine_tune(
        resumed_model,
        train,
        _resumable_config(),
        teacher=digits_teacher,
        noise=noise,
        checkpoint=tmp_path / "b.pt",
        resume=True,
    )
    assert second.steps == full.steps == 10
    a, b = straight.state_dict(), resumed_model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ckpt_a, ckpt_b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    assert ckpt_a["history"][-1]["step"] == 10
    assert [r.get("train_loss") for r in ckpt_a["history"]] == [
        r.get("train_loss") for r in ckpt_b["history"]
    ]


def test_resume_with_other_config_is_refused(digits_teacher, digits_data, tmp_path):
    train, _ = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    fine_tune(student, train, _quick(), checkpoint=tmp_path / "c.pt", stop_after=2)
    with pytest.raises(ValueError, match="another TrainConfig"):
        fine_tune(student, train, _quick(lr_weights=0.5), checkpoint=tmp_path / "c.pt", resume=True)


def test_checkpoint_holds_config_and_fp32_accuracy_and_rebuilds_the_model(
    digits_teacher, digits_data, tmp_path
):
    train, test = digits_data
    student = patch_model(
        digits_teacher, HashConfig(hash_length=24, seed=5), overrides={"fc": {"hash_length": 12}}
    )
    result = fine_tune(
        student,
        train,
        _quick(kd_alpha=0.5),
        teacher=digits_teacher,
        val_set=test,
        checkpoint=tmp_path / "m.pt",
        backbone="digits_cnn",
    )
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt["fp32_accuracy"] == pytest.approx(result.fp32_accuracy) and ckpt["fp32_accuracy"] > 0.8
    assert ckpt["layers"]["conv"]["config"]["hash_length"] == 24
    assert ckpt["layers"]["fc"]["config"]["hash_length"] == 12
    assert ckpt["backbone"] == "digits_cnn" and ckpt["final"] is True
    rebuilt = model_from_checkpoint(ckpt, model=type(digits_teacher)())
    assert {p: m.config for p, m in hashed_layers(rebuilt)} == {
        p: m.config for p, m in hashed_layers(student)
    }
    x = test.tensors()[0][:32]
    student.eval()
    assert torch.equal(rebuilt(x), student(x))


def test_kd_and_calibration_need_a_teacher(digits_teacher, digits_data):
    train, _ = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    with pytest.raises(ValueError, match="teacher"):
        fine_tune(student, train, TrainConfig(progress=False))


def test_calib_kd_recipe_runs_calibration_then_distillation(digits_teacher, digits_data):
    train, test = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=32, seed=2))
    config = TrainConfig.for_recipe(
        "calib_kd",
        epochs=1.0,
        batch_size=128,
        augment=False,
        progress=False,
        calib_images=128,
        calib_steps=10,
    )
    result = fine_tune(student, train, config, teacher=digits_teacher, val_set=test)
    assert [c.path for c in result.calibration] == ["conv", "fc"]
    assert all(c.error_after <= c.error_before for c in result.calibration)
    assert result.calibrated_accuracy is not None and result.final_accuracy is not None


def test_fine_tune_leaves_the_teachers_parameters_trainable(digits_teacher, digits_data):
    train, _ = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    before = {k: v.clone() for k, v in digits_teacher.state_dict().items()}
    fine_tune(
        student, train, TrainConfig.for_recipe("kd", epochs=0.2, progress=False), teacher=digits_teacher
    )
    # the caller's model is a teacher only for this call: not frozen for later training, not changed
    assert all(p.requires_grad for p in digits_teacher.parameters())
    assert all(torch.equal(v, digits_teacher.state_dict()[k]) for k, v in before.items())


def _digits_with_batchnorm() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32, 10),
    )


def test_final_bn_refresh_re_estimates_the_trained_weights_statistics_and_logs_the_decision(digits_data):
    train, test = digits_data
    trained_on = ImageTensorDataset(train.images[:-200], train.labels[:-200], num_classes=10)
    holdout = ImageTensorDataset(train.images[-200:], train.labels[-200:], num_classes=10)
    config = _quick(epochs=2.0, batch_size=32, augment=True, crop_padding=1, ema_decay=0.9)
    plain = fine_tune(_digits_with_batchnorm(), trained_on, config, val_set=test)
    refreshed = fine_tune(
        _digits_with_batchnorm(), trained_on, config.replace(final_bn_images=600), val_set=test,
        holdout_set=holdout,
    )  # fmt: skip
    # the same training, then the statistics of the returned (averaged) weights re-estimated on 600 images
    expected = copy.deepcopy(plain.model)
    outcome = refresh_batchnorm(expected, trained_on, count=600, crop_padding=1, seed=0, holdout=holdout)
    assert refreshed.bn_refresh == dataclasses.replace(outcome, seconds=refreshed.bn_refresh.seconds)
    assert refreshed.accuracy_before_bn_refresh == plain.final_accuracy
    state, wanted = refreshed.model.state_dict(), expected.state_dict()
    assert all(torch.equal(state[key], wanted[key]) for key in wanted)
    assert refreshed.final_accuracy == pytest.approx(evaluate_model(refreshed.model, test))
    assert refreshed.history[-1]["phase"] == ("bn_refresh" if outcome.kept else "bn_refresh_rejected")
    assert refreshed.history[-1]["val_accuracy"] == refreshed.final_accuracy


def test_the_budget_reserves_the_refresh_forwards_and_evaluations(digits_data):
    _, test = digits_data
    holdout = ImageTensorDataset(test.images[:50], test.labels[:50], num_classes=10)
    config = _quick(final_bn_images=400)
    # 400 training images (at most the training set's 300 here), 2 x 50 held-out, the test split again
    assert _refresh_seconds(config, 300, holdout, test, per_image=0.01) == pytest.approx(
        0.01 * (300 + 100 + len(test))
    )
    assert _refresh_seconds(config, 1000, None, None, per_image=0.01) == pytest.approx(4.0)
    assert _refresh_seconds(_quick(), 1000, holdout, test, per_image=0.01) == 0.0


def test_resuming_a_finished_run_with_a_bn_refresh_gives_the_same_outcome(digits_data, tmp_path):
    train, test = digits_data
    trained_on = ImageTensorDataset(train.images[:-200], train.labels[:-200], num_classes=10)
    holdout = ImageTensorDataset(train.images[-200:], train.labels[-200:], num_classes=10)
    config = _quick(
        epochs=1.0, batch_size=64, augment=True, crop_padding=1, ema_decay=0.9, final_bn_images=300
    )

    def run():
        return fine_tune(
            _digits_with_batchnorm(), trained_on, config, val_set=test, holdout_set=holdout,
            checkpoint=tmp_path / "r.pt", resume=True,
        )  # fmt: skip

    first, again = run(), run()
    assert again.steps == first.steps and again.final_accuracy == first.final_accuracy
    assert again.accuracy_before_bn_refresh == first.accuracy_before_bn_refresh
    assert again.final_live_accuracy == first.final_live_accuracy
    assert [r["phase"] for r in again.history] == [r["phase"] for r in first.history]  # one refresh row
    assert first.history[-1]["phase"].startswith("bn_refresh")
    state, wanted = again.model.state_dict(), first.model.state_dict()
    assert all(torch.equal(state[key], wanted[key]) for key in wanted)
