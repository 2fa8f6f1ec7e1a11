import pytest
import torch

from aimc_lsh.hardware import ADC, AnalogHashStages, HardwareConfig, SenseAmp, TileSpec, load_device
from aimc_lsh.hardware.reference import AihwkitHashStages
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model


def test_is_a_hash_config_and_builds_hardware_stages():
    hw = HardwareConfig(device="pcm", hash_length=64)
    assert isinstance(hw, HashConfig)
    assert type(hw.build_stages()) is AnalogHashStages
    assert type(hw.replace(backend="aihwkit").build_stages()) is AihwkitHashStages
    with pytest.raises(ValueError, match="conventional"):
        hw.replace(placement="conventional").build_stages()


def test_device_defaults_fill_unset_periphery():
    pcm = load_device("pcm")
    hw = HardwareConfig(device=pcm)
    assert hw.effective_sense_amp == pcm.sense_amp and hw.effective_adc == pcm.adc
    assert hw.effective_drift_compensation is True
    hw = HardwareConfig(device=pcm, sense_amp=SenseAmp(), adc=ADC(bits=4), drift_compensation=False)
    assert hw.effective_sense_amp.ideal and hw.effective_adc.bits == 4 and not hw.effective_drift_compensation
    assert not HardwareConfig().projection_is_analog and HardwareConfig().codes_are_analog
    proj = HardwareConfig(placement="projection_on_array")
    assert proj.projection_is_analog and not proj.codes_are_analog
    assert HardwareConfig(analog_projection=True).projection_is_analog


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"placement": "everywhere"}, ValueError, "unknown placement 'everywhere'; allowed: codes_on_array"),
        ({"backend": "spice"}, ValueError, "unknown backend"),
        ({"hash_length": 0}, ValueError, "hash_length"),
        ({"hash_length": -4}, ValueError, "hash_length"),
        ({"device": "nope"}, ValueError, "unknown device 'nope'"),
        ({"device": 3}, TypeError, "device must be"),
        ({"placement": "projection_on_array", "analog_projection": False}, ValueError, "analog_projection"),
        ({"sense_amp": {"noise_std": -1}}, ValueError, "noise_std"),
        ({"adc": {"bits": 0}}, ValueError, "bits"),
        ({"tile": {"rows": 0}}, ValueError, "rows"),
        ({"norm_bits": 0}, ValueError, "norm_bits"),
        ({"drift_compensation": 1}, ValueError, "drift_compensation"),
        ({"analog_projection": "yes"}, ValueError, "analog_projection"),
        ({"kernel": "magic"}, ValueError, "magic"),
    ],
)
def test_invalid_configs_raise_clear_errors(fields, error, message):
    with pytest.raises(error, match=message):
        HardwareConfig(**fields)


def test_dict_and_yaml_round_trip(tmp_path):
    hw = HardwareConfig(
        device="pcm", hash_length=96, placement="projection_on_array", sense_amp=SenseAmp(offset_std=0.02),
        adc=ADC(bits=6, noise_std=0.01), tile=TileSpec(256, 128), norm_bits=8, input_tile_size=16,
    )  # fmt: skip
    assert HardwareConfig.from_dict(hw.to_dict()) == hw
    assert HardwareConfig.from_yaml(hw.to_yaml()) == hw
    assert HardwareConfig.load(hw.save(tmp_path / "hw.yaml")) == hw
    assert HardwareConfig.from_dict({"device": "reram", "adc": {"bits": 4}}).effective_adc.bits == 4
    with pytest.raises(ValueError, match="no field"):
        HardwareConfig.from_dict({"voltage": 1})
    with pytest.raises(ValueError, match="mapping"):
        HardwareConfig.from_yaml("- 1")


def test_from_hash_config_keeps_every_hashing_field_and_takes_the_hardware_ones():
    digital = HashConfig(
        kernel="product_quantization", hash_length=8, seed=3, pq_subvector_length=4, pq_table_bits=6,
        pq_temperature=0.5,
    )  # fmt: skip
    hw = HardwareConfig.from_hash_config(digital, device="pcm", adc={"bits": 4})
    assert hw.hash_settings() == digital.hash_settings()
    assert hw.device.name == "pcm" and hw.adc == ADC(bits=4)
    # a checkpoint's dict of a config trained on hardware: its hardware fields are not carried over
    trained = HardwareConfig(
        device="pcm", hash_length=32, input_tile_size=16, placement="projection_on_array"
    )
    rebuilt = HardwareConfig.from_hash_config(trained.to_dict(), device="ideal")
    assert rebuilt.hash_settings() == trained.hash_settings()
    assert rebuilt.placement == "codes_on_array" and rebuilt.device.name == "ideal"
    with pytest.raises(ValueError, match="no field.*colour"):
        HardwareConfig.from_hash_config(digital, colour="red")


def test_replace_coerces_nested_dicts():
    hw = HardwareConfig(device="pcm").replace(adc={"bits": 3}, sense_amp={"offset_std": 0.1}, device="ideal")
    assert hw.adc == ADC(bits=3) and hw.sense_amp == SenseAmp(offset_std=0.1) and hw.device.name == "ideal"


def test_per_layer_overrides_by_module_path(tiny_net):
    hw = HardwareConfig(device="pcm", hash_length=32)
    model = patch_model(
        tiny_net, hw, overrides={"conv2": {"adc": {"bits": 4}, "hash_length": 16}, "fc": None}
    )
    layers = dict(hashed_layers(model))
    assert set(layers) == {"conv1", "conv2"}
    assert layers["conv2"].stages.adc.bits == 4 and layers["conv2"].config.hash_length == 16
    assert layers["conv1"].stages.adc == load_device("pcm").adc
    assert isinstance(model.fc, torch.nn.Linear)
