"""Inference fast paths of the analog stages: shared patch norms, in-place periphery, same numbers."""

import pickle

import pytest
import torch
from torch import nn

import aimc_lsh.hardware.stages as analog_stages
from aimc_lsh.hardware import ADC, HardwareConfig, SenseAmp, TileSpec, drift, load_device, program
from aimc_lsh.nn import HashedConv2d, HashedLinear


def _layer(config, seed=0, kernel=3, stride=1, padding=1):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 10, kernel, stride=stride, padding=padding)
    nn.init.normal_(conv.bias)
    return program(HashedConv2d.from_digital(conv, config), seed=seed)


def _replay(layer, x, *, reference):
    """Forward from the programmed state's first read (same per-read draws); ``reference``: autograd path."""
    layer.stages._generator = None
    if reference:  # out-of-place arithmetic everywhere (straight-through, unfolded sense-amp noise)
        with torch.enable_grad():
            return layer(x.clone().requires_grad_(True)).detach()
    with torch.no_grad():
        return layer(x)


PCM = load_device("pcm")
CONFIGS = {
    "codes_on_array": dict(placement="codes_on_array"),
    "projection_on_array": dict(placement="projection_on_array"),
    "split_projection": dict(placement="projection_on_array", tile=TileSpec(rows=20, cols=16)),
    "split_codes_and_projection": dict(
        placement="codes_on_array", analog_projection=True, tile=TileSpec(rows=20, cols=7)
    ),
    "metastable_sense_amps": dict(
        placement="projection_on_array",
        sense_amp=SenseAmp(offset_std=0.02, noise_std=0.01, metastability=0.02),
    ),
    "compensated_ideal_adc": dict(
        placement="codes_on_array", device=PCM.replace(read_noise_std=0.0), adc=ADC(), drift_compensation=True
    ),
    "quantised_norms": dict(placement="codes_on_array", norm_bits=6, input_tile_size=4, output_tile_size=6),
}


@pytest.mark.parametrize("thresholds", [False, True], ids=["", "thresholds"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_inference_equals_the_out_of_place_reference_with_the_same_draws(name, thresholds):
    options = {"device": PCM, **CONFIGS[name]}
    layer = _layer(HardwareConfig(hash_length=48, comparator_thresholds=thresholds, **options), seed=3)
    if thresholds:  # learned comparator references (folded with the comparators' sigma in inference)
        generator = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for kernel in layer.kernels:
                kernel.threshold.uniform_(-0.2, 0.2, generator=generator)
    drift(layer, 86_400)
    x = torch.relu(torch.randn(4, 6, 9, 9, generator=torch.Generator().manual_seed(1)))
    x = x.contiguous(memory_format=torch.channels_last)
    x0 = x.clone()
    fast = _replay(layer, x, reference=False)
    assert torch.equal(x, x0)  # the input is left untouched
    assert torch.equal(fast, _replay(layer, x, reference=False))  # seeded: same draws, same numbers
    reference = _replay(layer, x, reference=True)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-4)
    assert fast.abs().amax() > 0.1


def test_linear_layers_take_the_same_paths():
    torch.manual_seed(0)
    config = HardwareConfig(
        hash_length=40, device=PCM, placement="projection_on_array", tile=TileSpec(rows=16)
    )
    layer = program(HashedLinear.from_digital(nn.Linear(30, 7), config), seed=1)
    x = torch.randn(5, 30, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(
        _replay(layer, x, reference=False), _replay(layer, x, reference=True), rtol=1e-5, atol=1e-4
    )


def test_comparators_reuse_the_layers_patch_norms(monkeypatch):
    layer = _layer(
        HardwareConfig(hash_length=32, device=PCM, placement="projection_on_array", output_tile_size=4)
    )
    calls = []

    def counting(x, kernel_size, geometry):
        calls.append(x.shape)
        return patch_norms(x, kernel_size, geometry)

    patch_norms = analog_stages.patch_norms
    monkeypatch.setattr(analog_stages, "patch_norms", counting)
    x = torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        layer(x)
    assert len(layer.out_tiles) == 3 and len(calls) == 1  # once per input tile, not once per tile pair


def test_patch_norm_cache_is_used_only_for_the_same_unmodified_tensor():
    layer = _layer(HardwareConfig(hash_length=32, device=PCM, placement="projection_on_array"))
    stages, geometry = layer.stages, layer.geometry
    x = torch.rand(2, 6, 8, 8)
    norms = stages.patch_norms(x, (3, 3), geometry)
    assert stages._patch_norms_of(x, (3, 3), geometry) is norms
    assert stages._patch_norms_of(x.clone(), (3, 3), geometry) is not norms
    assert stages._patch_norms_of(x, (1, 1), geometry) is not norms
    x.mul_(2.0)  # modified in place: recomputed
    torch.testing.assert_close(stages._patch_norms_of(x, (3, 3), geometry), 2 * norms)
    del x  # the cache holds the input weakly
    assert stages._norms[0]() is None
    restored = pickle.loads(pickle.dumps(stages))  # the weak reference is not pickled
    assert restored._norms is None
