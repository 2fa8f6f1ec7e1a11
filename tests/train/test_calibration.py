import pytest
import torch
from torch import nn

from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model
from aimc_lsh.train import calibrate_layers, layer_reconstruction_errors, recalibrate_bn
from aimc_lsh.train.calibration import capture, execution_order


@pytest.mark.parametrize("kernel", ["random_projection", "learned_projection"])
def test_layerwise_calibration_reduces_every_layer_reconstruction_error(digits_teacher, digits_data, kernel):
    train, _ = digits_data
    images = train.tensors()[0][:256]
    student = patch_model(digits_teacher, HashConfig(kernel=kernel, hash_length=16, seed=0))
    paths = [p for p, _ in hashed_layers(student)]
    before = layer_reconstruction_errors(student, digits_teacher, images, paths)
    results = calibrate_layers(student, digits_teacher, images, steps=40, lr=3e-3)
    after = layer_reconstruction_errors(student, digits_teacher, images, paths)
    assert [r.path for r in results] == ["conv", "fc"]
    assert after["conv"] < 0.9 * before["conv"]
    assert sum(after.values()) < 0.9 * sum(before.values())
    for r in results:
        assert r.error_after <= r.error_before
    assert after["conv"] == pytest.approx(results[0].error_after, rel=1e-5)


def test_calibration_without_steps_changes_nothing(digits_teacher, digits_data):
    train, _ = digits_data
    student = patch_model(digits_teacher, HashConfig(hash_length=16))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    results = calibrate_layers(student, digits_teacher, train.tensors()[0][:64], steps=0)
    assert all(r.error_after == r.error_before for r in results)
    assert all(torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_recalibrate_bn_matches_the_data_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model.train()
    images = torch.randn(64, 3, 8, 8) * 3 + 1
    assert recalibrate_bn(model, images, batch_size=64) == 1
    with torch.no_grad():
        pre = model[0](images)
    assert torch.allclose(model[1].running_mean, pre.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(model[1].running_var, pre.var((0, 2, 3), unbiased=True), rtol=1e-4)
    assert model.training and model[1].momentum == 0.1


def test_capture_and_execution_order(digits_teacher, digits_data):
    x = digits_data[1].tensors()[0][:10]
    assert execution_order(digits_teacher, x, ["fc", "conv"]) == ["conv", "fc"]
    out = capture(digits_teacher, "conv", x, what="output", batch_size=4)
    assert torch.allclose(out, digits_teacher.conv(x))
    with pytest.raises(RuntimeError, match="did not run"):
        capture(digits_teacher, "conv", x[:0], what="input")
