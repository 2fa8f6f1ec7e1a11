"""Model building of the studies: checkpoints on ideal hardware reproduce the digital hashed model."""

import pytest
import torch

from aimc_lsh.hardware import ADC, HardwareConfig, SenseAmp, program
from aimc_lsh.studies.workload import (
    accuracy_row,
    analog_model,
    config_columns,
    digits_checkpoint,
    eval_batches,
    resolve_checkpoint,
    resolve_source,
)
from aimc_lsh.train import model_from_checkpoint


@pytest.fixture(scope="module")
def source():
    return resolve_source("digits", batch_size=256)


def test_ideal_hardware_reproduces_the_fine_tuned_digital_model(source):
    path = resolve_checkpoint(source, "auto", 64)
    assert path == str(digits_checkpoint(64, train=False))
    context = source.context()
    digital = model_from_checkpoint(path)
    ideal = HardwareConfig(device="ideal", hash_length=64, sense_amp=SenseAmp(), adc=ADC())
    analog = program(analog_model(context, ideal, path), seed=0)
    images, _ = eval_batches(context)[0]
    with torch.no_grad():
        torch.testing.assert_close(analog(images), digital(images), rtol=1e-4, atol=1e-4)
    assert accuracy_row(analog, context) == accuracy_row(digital, context)
    untrained = program(analog_model(context, ideal, None), seed=0)
    assert accuracy_row(untrained, context)["accuracy"] < accuracy_row(digital, context)["accuracy"]


def test_config_columns_resolve_device_defaults():
    columns = config_columns(HardwareConfig(device="pcm", hash_length=32))
    assert columns["sense_amp.offset_std"] == 0.01 and columns["adc.bits"] == 8  # pcm.yaml defaults
    assert columns["drift_compensation"] is True and columns["hash_length"] == 32
    assert not any(c.startswith(("device.sense_amp", "device.adc", "device.source")) for c in columns)
    conventional = config_columns(HardwareConfig(device="pcm", placement="conventional"))
    assert conventional["hash_length"] is None and conventional["kernel"] is None


def test_foreign_or_missing_checkpoint(tmp_path, source):
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_checkpoint(source, str(tmp_path / "missing.pt"), 64)
    bogus = tmp_path / "bogus.pt"
    torch.save({"hello": 1}, bogus)
    with pytest.raises(ValueError, match="not an aimc_lsh training checkpoint"):
        resolve_checkpoint(source, str(bogus), 64)
    assert resolve_checkpoint(source, "none", 64) is None
