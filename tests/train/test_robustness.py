import pytest
import torch

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model
from aimc_lsh.train import NoiseSpec, NoisyTrainingStages, accuracy_under_noise


def test_noise_lowers_accuracy_and_leaves_the_model_untouched(digits_teacher, digits_data):
    _, test = digits_data
    clean = accuracy_under_noise(digits_teacher, test, NoiseSpec(), repeats=1)
    noisy = accuracy_under_noise(digits_teacher, test, NoiseSpec(weight_std=0.5), repeats=2)
    assert clean.std == 0.0 and clean.mean > 0.9
    assert noisy.mean < clean.mean - 0.05 and noisy.repeats == 2
    again = accuracy_under_noise(digits_teacher, test, NoiseSpec(weight_std=0.5), repeats=2)
    assert again == noisy  # seeded


def test_hashed_model_under_noise_is_evaluated_on_a_copy(digits_teacher, digits_data):
    _, test = digits_data
    model = patch_model(digits_teacher, HashConfig(hash_length=64))
    accuracy_under_noise(model, test, NoiseSpec(code_std=0.2), repeats=1)
    assert not any(isinstance(layer.stages, NoisyTrainingStages) for _, layer in hashed_layers(model))
    with pytest.raises(ValueError, match="repeats"):
        accuracy_under_noise(model, test, NoiseSpec(), repeats=0)


def test_trained_checkpoint_runs_on_programmed_pcm_tiles(digits_teacher, digits_data, tmp_path):
    from aimc_lsh.models import DigitsNet
    from aimc_lsh.train import load_checkpoint, save_checkpoint
    from aimc_lsh.train.robustness import hardware_accuracy, hardware_model

    _, test = digits_data
    hashed = patch_model(digits_teacher, HashConfig(hash_length=64, seed=4))
    save_checkpoint(tmp_path / "h.pt", hashed)
    ckpt = load_checkpoint(tmp_path / "h.pt")
    hw = hardware_model(ckpt, DigitsNet(), device="ideal", placement="codes_on_array")
    x = test.tensors()[0][:32]
    from aimc_lsh.hardware import program

    program(hw, seed=0)
    hashed.eval()
    assert torch.allclose(hw(x), hashed(x), rtol=1e-4, atol=1e-4)  # ideal device == digital hashing
    acc = hardware_accuracy(
        ckpt, DigitsNet(), test, device="pcm", placement="projection_on_array", seeds=(0, 1)
    )
    assert 0.0 <= acc.mean <= 1.0 and acc.repeats == 2
    with pytest.raises(ValueError, match="no BatchNorm"):  # DigitsNet has none to re-estimate
        hardware_accuracy(ckpt, DigitsNet(), test, device="pcm", bn_images=x)


def test_hardware_model_takes_the_drift_reference(digits_teacher, tmp_path):
    from aimc_lsh.hardware import analog_layers
    from aimc_lsh.models import DigitsNet
    from aimc_lsh.train import load_checkpoint, save_checkpoint
    from aimc_lsh.train.robustness import hardware_model

    save_checkpoint(tmp_path / "c.pt", digits_teacher)  # conventional: no hashed layers
    save_checkpoint(tmp_path / "h.pt", patch_model(digits_teacher, HashConfig(hash_length=16)))
    for name, placement in (("c", "conventional"), ("h", "codes_on_array")):
        ckpt = load_checkpoint(tmp_path / f"{name}.pt")
        for reference, effective in ((None, "random_sign"), ("one_hot", "one_hot")):
            model = hardware_model(ckpt, DigitsNet(), placement=placement, drift_reference=reference)
            configs = [layer.config for _, layer in analog_layers(model)]
            assert configs and {c.effective_drift_reference for c in configs} == {effective}, name
