import pytest
import yaml

from aimc_lsh.hardware import DeviceProfile, available_devices, load_device, save_device
from aimc_lsh.hardware.devices import DEVICES_ENV, NOISE_MODELS, noise_model_class

SHIPPED = ["hermes", "ideal", "pcm", "reram", "reram_wan2022"]


def test_shipped_profiles_load_and_build_their_aihwkit_models():
    names = available_devices()
    assert set(SHIPPED) <= set(names)
    for name in SHIPPED:
        profile = load_device(name)
        assert profile.name == name
        model = profile.build_noise_model()
        if profile.noise_model is None:
            assert model is None and profile.is_ideal
        else:
            assert type(model).__name__ == profile.noise_model
            assert profile.source  # every profile cites its numbers
    assert load_device("pcm").build_noise_model().g_max == 25.0
    assert load_device("reram").noise_model == "ReRamCMONoiseModel"


def test_profile_files_carry_source_comments():
    for name in SHIPPED:
        text = available_devices()[name].read_text()
        assert text.lstrip().startswith("#")


def test_yaml_round_trip(tmp_path):
    for name in SHIPPED:
        profile = load_device(name)
        path = save_device(profile, tmp_path / f"{name}_copy.yaml")
        again = load_device(path)
        assert again == profile
        assert yaml.safe_load(path.read_text())["noise_model"] == profile.noise_model


def test_users_add_devices_by_dropping_a_file(tmp_path, monkeypatch):
    custom = load_device("pcm").replace(name="pcm_cool", g_max=20.0, read_noise_std=0.0)
    save_device(custom, tmp_path / "pcm_cool.yaml")
    with pytest.raises(ValueError, match="unknown device 'pcm_cool'.*available: .*pcm"):
        load_device("pcm_cool")
    monkeypatch.setenv(DEVICES_ENV, str(tmp_path))
    assert load_device("pcm_cool") == custom
    assert load_device("pcm_cool").build_noise_model().g_max == 20.0


def test_unknown_name_lists_available_profiles():
    with pytest.raises(ValueError) as info:
        load_device("unobtainium")
    for name in SHIPPED:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"noise_model": "MagicNoise"}, "unknown noise_model 'MagicNoise'; known: .*PCMLikeNoiseModel"),
        ({"noise_model": "PCMLikeNoiseModel", "noise_params": {"colour": 1}}, "accepted parameters: .*t_0"),
        ({"noise_model": "PCMLikeNoiseModel", "noise_params": {"g_max": 3}}, "own field"),
        ({"noise_params": {"t_0": 1}}, "without a noise_model"),
        ({"g_max": -1.0}, "g_max"),
        ({"read_noise_std": -0.1}, "read_noise_std"),
        ({"sense_amp": {"offset_std": -1}}, "offset_std"),
        ({"adc": {"bits": 0}}, "bits"),
        ({"drift_compensation": "yes"}, "drift_compensation"),
        ({"name": ""}, "name"),
    ],
)
def test_invalid_profiles_raise_clear_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        DeviceProfile.from_dict({"name": "bad", **fields})


def test_bad_files_name_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("noise_model: [unclosed")
    with pytest.raises(ValueError, match="broken.yaml"):
        load_device(path)
    path.write_text("- a list")
    with pytest.raises(ValueError, match="mapping"):
        load_device(path)
    with pytest.raises(FileNotFoundError):
        load_device(tmp_path / "missing.yaml")


def test_wan2022_only_accepts_its_three_times():
    profile = load_device("reram_wan2022")
    assert profile.allowed_times() == [1.0, 86400.0, 172800.0]
    for t in (0, 1, 86400, 172800.0):
        profile.check_time(t)
    with pytest.raises(ValueError, match="only has data at t_inference = 1, 86400, 172800"):
        profile.check_time(3600)
    assert load_device("pcm").check_time(3600) == 3600.0
    with pytest.raises(ValueError, match="t_inference"):
        load_device("pcm").check_time(-1)


def test_noise_model_registry_matches_aihwkit():
    for name in NOISE_MODELS:
        assert noise_model_class(name).__name__ == name
    with pytest.raises(ValueError, match="known"):
        noise_model_class("Nope")
