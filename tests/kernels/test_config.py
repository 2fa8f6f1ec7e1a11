import pytest

from aimc_lsh.kernels import HashConfig, HashStages, build_kernel, kernel_names, register_kernel
from aimc_lsh.kernels.random_proj import RandomProjKernel


def test_registry_lists_builtin_kernels_and_builds_them():
    assert {"random_projection", "learned_projection"} <= set(kernel_names())
    kernel = build_kernel("random_projection", 7, 9, orthogonal=True)
    assert isinstance(kernel, RandomProjKernel) and kernel.P.shape == (9, 7)


def test_unknown_kernel_lists_the_registered_ones():
    with pytest.raises(
        ValueError, match="unknown kernel 'simhash'; registered kernels: .*learned_projection"
    ):
        HashConfig(kernel="simhash")


def test_registering_a_second_class_under_a_taken_name_fails():
    with pytest.raises(ValueError, match="already registered"):
        register_kernel("random_projection")(type("Other", (RandomProjKernel,), {}))


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"hash_length": 0}, "hash_length"),
        ({"hash_length": -4}, "hash_length"),
        ({"ste": "tanh"}, "ste"),
        ({"input_tile_size": 0}, "input_tile_size"),
        ({"output_tile_size": 2.5}, "output_tile_size"),
    ],
)
def test_invalid_values_raise_clear_errors(changes, message):
    with pytest.raises(ValueError, match=message):
        HashConfig(**changes)


def test_dict_round_trip_and_replace():
    config = HashConfig(kernel="learned_projection", hash_length=64, input_tile_size=16)
    assert HashConfig.from_dict(config.to_dict()) == config
    assert config.replace(hash_length=32).hash_length == 32
    with pytest.raises(ValueError, match="no field.*bits"):
        config.replace(bits=3)
    with pytest.raises(ValueError, match="no field.*colour"):
        HashConfig.from_dict({"colour": "red"})


def test_digital_config_builds_ideal_stages():
    assert type(HashConfig().build_stages()) is HashStages
