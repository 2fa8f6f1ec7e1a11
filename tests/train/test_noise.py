import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model
from aimc_lsh.train import (
    NoiseSpec,
    NoisyTrainingStages,
    WeightNoise,
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


def test_weight_noise_perturbs_forward_and_restores_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    model.train()
    x = torch.randn(16, 8)
    weights = [p.detach().clone() for p in model.parameters()]
    clean = model(x)
    with WeightNoise(0.1).perturbed(model):
        noisy = model(x)
        noisy.sum().backward()
    assert not torch.allclose(noisy, clean)
    assert all(torch.equal(w, p) for w, p in zip(weights, model.parameters(), strict=True))
    assert model[0].weight.grad is not None
    model.eval()
    with WeightNoise(0.1).perturbed(model):
        assert torch.equal(model(x), model(x))


def test_device_noise_is_measured_from_aihwkit_and_grows_with_drift():
    early = noise_spec_for_device("pcm", 1.0)
    day = noise_spec_for_device("pcm", 86_400.0)
    assert 0 < early.code_std < day.code_std < 0.5
    assert day.projection_std == day.code_std == day.weight_std
    assert noise_spec_for_device("ideal").active is False
    with pytest.raises(ValueError, match="unknown device"):
        noise_spec_for_device("flash")


def test_noise_spec_rejects_bad_values():
    with pytest.raises(ValueError, match="code_std"):
        NoiseSpec(code_std=-0.1)
    with pytest.raises(ValueError, match="no field"):
        NoiseSpec.from_dict({"bogus": 1.0})
