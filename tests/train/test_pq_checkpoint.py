"""Checkpoints of product-quantized models: codebooks, temperature and calibration state come back."""

import torch
from torch import nn

from aimc_lsh.hardware import HardwareConfig, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import calibrate_pq, needs_data, patch_model, pq_layers
from aimc_lsh.train import (
    TrainConfig,
    default_checkpoint,
    load_checkpoint,
    model_from_checkpoint,
    patch_like,
    save_checkpoint,
)
from aimc_lsh.train.checkpoint import layer_configs


def _net():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5)
    ).eval()


def test_checkpoint_rebuilds_the_calibrated_pq_model(tmp_path):
    x = torch.randn(6, 3, 4, 4)
    config = HashConfig(kernel="product_quantization", hash_length=8, pq_table_bits=6, pq_temperature=0.5)
    model = calibrate_pq(patch_model(_net(), config), [x])
    with torch.no_grad():
        model[0].kernel.log_temperature.add_(0.25)  # as if trained
    path = save_checkpoint(tmp_path / "pq.pt", model)
    rebuilt = model_from_checkpoint(path, model=_net())
    assert needs_data(rebuilt) == [] and rebuilt[0].kernel.table_bits == 6
    assert torch.equal(rebuilt[0].kernel.log_temperature, model[0].kernel.log_temperature)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    # the studies' route: the checkpoint's kernel settings with hardware fields, on ideal tiles
    layers = {
        p: {
            "config_class": "aimc_lsh.hardware.config:HardwareConfig",
            "config": {**e["config"], "device": "ideal"},
        }
        for p, e in load_checkpoint(path)["layers"].items()
    }
    analog = patch_like(_net(), layers)
    analog.load_state_dict(load_checkpoint(path)["model_state"])
    assert set(layer_configs(analog)) == {"0", "3"} and len(list(pq_layers(analog))) == 2
    assert isinstance(analog[0].config, HardwareConfig)
    with torch.no_grad():
        torch.testing.assert_close(program(analog)(x), model(x), rtol=1e-5, atol=1e-5)


def test_hardware_model_keeps_the_pq_settings_of_a_checkpoint(tmp_path):
    from aimc_lsh.train.robustness import hardware_model

    x = torch.randn(6, 3, 4, 4)
    config = HashConfig(kernel="product_quantization", hash_length=8, pq_table_bits=6, pq_temperature=0.5)
    model = calibrate_pq(patch_model(_net(), config), [x])
    path = save_checkpoint(tmp_path / "pq.pt", model)
    analog = hardware_model(load_checkpoint(path), _net(), device="ideal")
    assert {layer.config.hash_settings()["pq_table_bits"] for _, layer in pq_layers(analog)} == {6}
    assert all(layer.config.pq_temperature == 0.5 for _, layer in pq_layers(analog))
    with torch.no_grad():
        torch.testing.assert_close(program(analog)(x), model(x), rtol=1e-5, atol=1e-5)


def test_parts_of_layers_holding_a_config_are_not_layers():
    hashed = patch_model(_net(), HardwareConfig(hash_length=8))  # its AnalogHashStages hold the config too
    conventional = patch_model(_net(), HardwareConfig(placement="conventional"))  # and its tile arrays
    assert set(layer_configs(hashed)) == set(layer_configs(conventional)) == {"0", "3"}


def test_default_checkpoint_calibrates_pq_before_fine_tuning(tmp_path):
    config = TrainConfig.for_recipe(
        "kd", epochs=0.5, batch_size=128, augment=False, progress=False, eval_every=0
    )
    kwargs = dict(backbone="digits_cnn", kernel="product_quantization", hash_length=8, config=config)
    model = model_from_checkpoint(default_checkpoint(cache_dir=tmp_path, **kwargs))
    assert len(list(pq_layers(model))) == 2 and needs_data(model) == []
