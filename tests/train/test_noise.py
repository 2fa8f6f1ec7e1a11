import re

import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model
from aimc_lsh.train import (
    NoiseSpec,
    NoisyTrainingStages,
    WeightNoise,
    clip_weights,
    device_weights,
    inject_training_noise,
    noise_spec_for_device,
    remove_training_noise,
)


def test_training_noise_only_in_training_mode(digits_teacher, digits_data):
    x = digits_data[1].tensors()[0][:16]
    model = patch_model(digits_teacher, HashConfig(hash_length=32))
    model.eval()
    clean = model(x)
    assert (
        inject_training_noise(
            model,
            NoiseSpec(code_std=0.3, projection_std=0.2, sa_offset_std=0.5, sa_noise_std=0.5, output_std=0.1),
        )
        == 2
    )
    assert all(isinstance(layer.stages, NoisyTrainingStages) for _, layer in hashed_layers(model))
    assert torch.equal(model(x), clean)
    model.train()
    torch.manual_seed(0)
    noisy_a = model(x)
    noisy_b = model(x)
    assert not torch.equal(noisy_a, clean) and not torch.equal(noisy_a, noisy_b)
    assert remove_training_noise(model) == 2
    model.eval()
    assert torch.equal(model(x), clean)


def test_each_noise_term_changes_the_training_forward(digits_teacher, digits_data):
    x = digits_data[1].tensors()[0][:16]
    for field in ("projection_std", "code_std", "sa_offset_std", "sa_noise_std", "output_std"):
        model = patch_model(digits_teacher, HashConfig(hash_length=32))
        model.train()
        clean = model(x)
        inject_training_noise(model, NoiseSpec(**{field: 0.5}))
        assert not torch.equal(model(x), clean), field


@pytest.mark.parametrize(
    "noise",
    [WeightNoise(0.1), WeightNoise.from_spec(NoiseSpec(weight_device="pcm", weight_t_inference=3600.0))],
    ids=["additive", "device"],
)
def test_weight_noise_perturbs_training_forward_and_restores_weights(noise):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model.train()
    x = torch.randn(16, 8)
    weights = [p.detach().clone() for p in model.parameters()]
    clean = model(x)
    with noise.perturbed(model):
        noisy = model(x)
        noisy.sum().backward()
    assert not torch.allclose(noisy, clean)
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters(), strict=True))
    assert model[0].weight.grad is not None
    model.eval()
    clean = model(x)
    with noise.perturbed(model):
        assert torch.equal(model(x), clean)


def test_device_noise_is_measured_from_aihwkit_and_grows_with_drift():
    early = noise_spec_for_device("pcm", 1.0)
    day = noise_spec_for_device("pcm", 86_400.0)
    assert 0 < early.code_std < day.code_std < 0.5
    assert day.projection_std == day.code_std == day.weight_std
    assert noise_spec_for_device("ideal").active is False
    with pytest.raises(ValueError, match="unknown device"):
        noise_spec_for_device("flash")


@pytest.mark.parametrize(
    "name, t, message",
    [
        ("pcm", 0.0, "t_inference must be a finite number of seconds > 0, got 0.0"),
        ("pcm", -5.0, "t_inference must be a finite number of seconds > 0, got -5.0"),
        ("hermes", float("nan"), "got nan"),
        ("ideal", float("inf"), "got inf"),
        ("pcm", "1d", "got '1d'"),
        ("reram", 1000.0, "ReRamWan2022NoiseModel has no data at t_inference = 1000 s"),
    ],
)
def test_device_noise_names_a_time_it_cannot_measure(name, t, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        noise_spec_for_device(name, t)


def test_noise_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="code_std"):
        NoiseSpec(code_std=-0.1)
    with pytest.raises(ValueError, match="no field"):
        NoiseSpec.from_dict({"bogus": 1.0})


def _pcm():
    from aimc_lsh.train.devices import aihwkit_noise_model

    return aihwkit_noise_model("pcm")


def test_device_weights_follow_the_pcm_model_over_time():
    torch.manual_seed(0)
    w = torch.randn(64, 16, 3, 3)
    errors = []
    for t in (1.0, 86_400.0, 3.15e7):
        torch.manual_seed(1)
        noisy = device_weights(_pcm(), w, t)
        assert noisy.shape == w.shape and noisy.dtype == w.dtype
        errors.append(float((noisy - w).norm() / w.norm()))
        # global compensation keeps the mean magnitude (the drift itself would shrink it by ~30% at 1 y)
        assert float(noisy.abs().mean() / w.abs().mean()) == pytest.approx(1.0, abs=0.05)
    assert 0.02 < errors[0] < errors[1] < errors[2] < 0.6
    torch.manual_seed(1)
    assert torch.equal(device_weights(_pcm(), w, 3.15e7), noisy)  # same seed, same draw


def test_device_weight_error_depends_on_the_weight_like_the_device():
    # PCM's programming noise and drift spread grow with conductance: zero weights move least
    torch.manual_seed(0)
    w = torch.cat([torch.zeros(64, 256), torch.ones(64, 256)], 1)
    err = (device_weights(_pcm(), w, 86_400.0) - w).abs()
    assert float(err[:, :256].mean()) < 0.5 * float(err[:, 256:].mean())


def test_device_weights_scale_each_tile_on_its_own():
    # 1024 inputs = two tiles of 512 rows; the second holds weights 100x smaller. Scaled per tile, both
    # see the same relative error; one shared scale would bury the small tile in programming noise.
    torch.manual_seed(0)
    base = torch.randn(8, 512)
    w = torch.cat([base, base / 100], 1)
    err = device_weights(_pcm(), w, 86_400.0) - w
    big, small = float(err[:, :512].norm() / base.norm()), float(err[:, 512:].norm() * 100 / base.norm())
    assert small == pytest.approx(big, rel=0.3)


def test_device_weight_noise_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"weight_device must be None or one of pcm, hermes, reram, got 'fl"):
        NoiseSpec(weight_device="flash")
    with pytest.raises(ValueError, match="weight_t_inference"):
        NoiseSpec(weight_device="pcm", weight_t_inference=float("nan"))
    with pytest.raises(ValueError, match="t_inference must be a finite number > 0"):
        WeightNoise(0.0, device="pcm", t_inference=0.0)
    assert not WeightNoise.from_spec(None).enabled and not WeightNoise.from_spec(NoiseSpec()).enabled
    assert WeightNoise.from_spec(NoiseSpec(weight_device="pcm", weight_t_inference=60.0)).t_inference == 60.0
    spec = NoiseSpec(weight_device="hermes", weight_t_inference=60.0)
    assert NoiseSpec.from_dict(spec.to_dict()) == spec and not spec.active


def test_clip_weights_clips_conventional_layers_only(digits_teacher):
    model = patch_model(digits_teacher, HashConfig(hash_length=32), skip=["conv"])
    conv, fc = model.conv.weight.detach().clone(), model.fc.weight.detach().clone()
    assert float(conv.abs().max() / conv.std()) > 2.0  # the trained weights have tails to clip
    assert clip_weights(model, 1.5) == 1
    bound = 1.5 * float(conv.std())
    assert float(model.conv.weight.detach().abs().max()) == pytest.approx(bound)
    inside = conv.abs() <= bound
    assert torch.equal(model.conv.weight[inside], conv[inside])
    assert torch.equal(model.fc.weight, fc)  # hashed layer untouched
    assert clip_weights(model, 0.0) == 0
    with pytest.raises(ValueError, match="clip sigma"):
        clip_weights(model, float("inf"))


def test_hardware_loop_spec_is_the_default_hwa():
    from aimc_lsh.train import DEFAULT_WEIGHT_CLIP_SIGMA, hardware_loop_spec

    conventional = hardware_loop_spec("pcm", 3600.0, conventional=True)
    assert conventional.hardware_profile == "pcm" and conventional.weight_t_inference == 3600.0
    assert conventional.weight_clip_sigma == DEFAULT_WEIGHT_CLIP_SIGMA == 3.0
    assert conventional.weight_std == 0.0 and not conventional.active  # no sampled noise on top
    hashed = hardware_loop_spec("pcm", conventional=False, placement="projection_on_array")
    assert hashed.weight_clip_sigma == 0.0 and hashed.hardware_placement == "projection_on_array"
    assert hashed.hardware_drift_reference == "random_sign"
    one_hot = hardware_loop_spec("pcm", conventional=True, drift_reference="one_hot")
    assert one_hot.hardware_drift_reference == "one_hot"
    with pytest.raises(ValueError, match="pcm"):
        hardware_loop_spec("flash", conventional=True)
