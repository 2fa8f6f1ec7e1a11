"""The fast analog hash stages: exactness when ideal, physics when not, reproducibility."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from aimc_lsh.hardware import (
    ADC,
    DeviceProfile,
    HardwareConfig,
    SenseAmp,
    TileSpec,
    drift,
    load_device,
    program,
)
from aimc_lsh.hardware.stages import patch_norms
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import HashedConv2d, hashed_layers, patch_model


def _forward(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
@pytest.mark.parametrize("tile", [TileSpec(), TileSpec(rows=50, cols=7)])
@pytest.mark.parametrize("kernel", ["random_projection", "learned_projection"])
def test_ideal_hardware_reproduces_the_pure_kernel_exactly(tiny_net, tiny_input, placement, tile, kernel):
    pure = patch_model(tiny_net, HashConfig(kernel=kernel, hash_length=64))
    hw = HardwareConfig(kernel=kernel, hash_length=64, device="ideal", placement=placement, tile=tile)
    hardware = program(patch_model(tiny_net, hw), seed=4)
    assert torch.equal(_forward(pure, tiny_input), _forward(hardware, tiny_input))
    drift(hardware, 3.15e7)  # an ideal device does not drift
    assert torch.equal(_forward(pure, tiny_input), _forward(hardware, tiny_input))


def test_ideal_analog_projection_and_ideal_periphery_on_a_noisy_profile_are_exact(tiny_net, tiny_input):
    pure = patch_model(tiny_net, HashConfig(hash_length=32, input_tile_size=8, output_tile_size=6))
    # A device profile whose periphery is noisy but overridden by ideal sense amps and ADCs.
    device = load_device("pcm").replace(noise_model=None, noise_params={}, g_max=None, read_noise_std=0.0)
    hw = HardwareConfig(
        hash_length=32, input_tile_size=8, output_tile_size=6, device=device, analog_projection=True,
        sense_amp=SenseAmp(), adc=ADC(),
    )  # fmt: skip
    assert torch.equal(_forward(pure, tiny_input), _forward(program(patch_model(tiny_net, hw)), tiny_input))


def test_tiles_are_split_when_k_or_outputs_exceed_the_tile(tiny_net):
    hw = HardwareConfig(hash_length=64, device="pcm", placement="codes_on_array", analog_projection=True,
                        tile=TileSpec(rows=20, cols=5))  # fmt: skip
    model = program(patch_model(tiny_net, hw))
    state = model.conv1.stages.tiles[(0, 0)]
    assert len(state.codes_plan.row_splits) == 4 and len(state.codes_plan.col_splits) == 4  # k=64, out=16
    assert len(state.proj_plan.row_splits) == 4 and len(state.proj_plan.col_splits) == 13  # d=72, k=64


def _single_layer(config, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(6, 10, 3, padding=1)
    return HashedConv2d.from_digital(conv, config)


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
def test_sense_amp_offset_flips_exactly_the_codes_within_the_offset(placement):
    config = HardwareConfig(hash_length=48, device="ideal", placement=placement,
                            sense_amp=SenseAmp(offset_std=0.05))  # fmt: skip
    layer = program(_single_layer(config), seed=2)
    stages, tile = layer.stages, (0, 0)
    x = torch.randn(3, 6, 7, 7, generator=torch.Generator().manual_seed(0))
    filters = layer.projection_filters(0, 0).detach()
    with torch.no_grad():
        h_x = stages.binarize(stages.project(x, filters, layer.geometry, tile), tile)
    pre = F.conv2d(x, filters, None, 1, 1)
    z = pre / (filters.reshape(48, -1).norm(dim=1).view(1, -1, 1, 1) * patch_norms(x, (3, 3), layer.geometry))
    offsets = stages.tiles[tile].sa_offsets.view(1, -1, 1, 1)
    clear = (z + offsets).abs() > 1e-5  # away from the exact decision boundary (float rounding)
    flipped = h_x != torch.where(z >= 0, 1.0, -1.0)
    expected = (z.abs() < offsets.abs()) & (torch.sign(z) != torch.sign(offsets))
    assert flipped.any() and torch.equal(flipped[clear], expected[clear])
    assert clear.float().mean() > 0.999


def test_sense_amp_noise_and_read_noise_are_drawn_per_read(tiny_net, tiny_input):
    hw = HardwareConfig(hash_length=64, device="pcm", placement="projection_on_array")
    model = program(patch_model(tiny_net, hw), seed=0)
    first, second = _forward(model, tiny_input), _forward(model, tiny_input)
    assert not torch.equal(first, second)
    ideal_reads = HardwareConfig(
        hash_length=64,
        device=load_device("pcm").replace(read_noise_std=0.0),
        placement="projection_on_array",
        sense_amp=SenseAmp(offset_std=0.01),
    )
    model = program(patch_model(tiny_net, ideal_reads), seed=0)
    assert torch.equal(_forward(model, tiny_input), _forward(model, tiny_input))  # static non-idealities only


def test_read_noise_on_code_match_has_the_equivalent_output_std():
    device = DeviceProfile(name="noisy_reads", read_noise_std=0.05)
    config = HardwareConfig(hash_length=100, device=device, sense_amp=SenseAmp(), adc=ADC())
    layer = program(_single_layer(config), seed=0)
    h_x = torch.sign(torch.randn(64, 100, 8, 8))
    codes = layer.weight_codes(0, 0).detach()
    with torch.no_grad():
        noisy = layer.stages.match(h_x, codes, (0, 0))
    exact = F.conv2d(h_x, codes[:, :, None, None])
    assert abs((noisy - exact).std().item() - 0.05 * math.sqrt(100)) < 0.02
    assert abs((noisy - exact).mean().item()) < 0.02


def test_match_adc_quantises_to_its_levels():
    config = HardwareConfig(hash_length=64, device="ideal", adc=ADC(bits=3))
    layer = program(_single_layer(config), seed=0)
    h_x = torch.sign(torch.randn(8, 64, 5, 5))
    with torch.no_grad():
        s = layer.stages.match(h_x, layer.weight_codes(0, 0).detach(), (0, 0))
    levels = torch.unique(s)
    assert levels.numel() <= 8
    assert torch.allclose(levels / 16 - 0.5, torch.round(levels / 16 - 0.5))  # step 2*64/8 = 16


def _drift_errors(tiny_net, tiny_input, compensation, seeds=(0, 1, 2)):
    pure = _forward(patch_model(tiny_net, HashConfig(hash_length=128)), tiny_input)
    hw = HardwareConfig(hash_length=128, device="pcm", sense_amp=SenseAmp(), adc=ADC(),
                        drift_compensation=compensation)  # fmt: skip
    errors = torch.zeros(4)
    for seed in seeds:
        model = program(patch_model(tiny_net, hw.replace(device=hw.device.replace(read_noise_std=0.0))), seed)
        for i, t in enumerate((0.0, 3600.0, 86400.0, 3.15e7)):
            drift(model, t)
            errors[i] += ((_forward(model, tiny_input) - pure).norm() / pure.norm()).item()
    return errors / len(seeds)


def test_outputs_degrade_monotonically_with_drift_without_compensation(tiny_net, tiny_input):
    errors = _drift_errors(tiny_net, tiny_input, compensation=False)
    assert all(a < b for a, b in zip(errors, errors[1:], strict=False)), errors
    compensated = _drift_errors(tiny_net, tiny_input, compensation=True)
    assert compensated[-1] < errors[-1]


def test_same_seed_same_outputs_different_seed_different(tiny_net, tiny_input):
    for placement in ("codes_on_array", "projection_on_array"):
        hw = HardwareConfig(hash_length=64, device="pcm", placement=placement)
        a = program(patch_model(tiny_net, hw), seed=3)
        b = program(patch_model(tiny_net, hw), seed=3)
        c = program(patch_model(tiny_net, hw), seed=4)
        ya = [_forward(a, tiny_input) for _ in range(2)]
        yb = [_forward(b, tiny_input) for _ in range(2)]
        assert all(torch.equal(p, q) for p, q in zip(ya, yb, strict=True))
        assert not torch.equal(ya[0], _forward(c, tiny_input))
        drift(a, 3600)
        drift(b, 3600)
        assert torch.equal(_forward(a, tiny_input), _forward(b, tiny_input))
        program(a, seed=3)  # reprogramming resets everything, the per-read stream included
        assert torch.equal(_forward(a, tiny_input), ya[0])


def test_norm_quantisation_changes_outputs_and_keeps_few_levels(tiny_net, tiny_input):
    exact = program(patch_model(tiny_net, HardwareConfig(hash_length=64)))
    coarse = program(patch_model(tiny_net, HardwareConfig(hash_length=64, norm_bits=2)))
    assert not torch.equal(_forward(exact, tiny_input), _forward(coarse, tiny_input))
    fine = program(patch_model(tiny_net, HardwareConfig(hash_length=64, norm_bits=16)))
    assert torch.allclose(_forward(exact, tiny_input), _forward(fine, tiny_input), rtol=1e-3, atol=1e-3)


def test_gradients_flow_through_the_hardware_model(tiny_net, tiny_input):
    hw = HardwareConfig(kernel="learned_projection", hash_length=32, device="pcm", analog_projection=True)
    model = program(patch_model(tiny_net, hw)).train()
    model(tiny_input).square().mean().backward()
    grads = [p.grad for _, layer in hashed_layers(model) for p in (layer.weight, layer.kernels[0].P)]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_unprogrammed_layers_raise_a_clear_error(tiny_net, tiny_input):
    model = patch_model(tiny_net, HardwareConfig(hash_length=16, device="pcm"))
    with pytest.raises(RuntimeError, match=r"aimc_lsh.hardware.program\(model, seed\)"):
        model(tiny_input)


def test_module_moves_carry_the_programmed_state(tiny_net, tiny_input):
    hw = HardwareConfig(hash_length=32, device="pcm", analog_projection=True)
    model = program(patch_model(tiny_net, hw), seed=1)
    reference = _forward(model, tiny_input)
    moved = program(patch_model(tiny_net, hw), seed=1).double()
    assert moved.conv1.stages.tiles[(0, 0)].match_weight.dtype == torch.float64
    assert torch.allclose(_forward(moved, tiny_input.double()).float(), reference, atol=1e-3, rtol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tiny_net, tiny_input):
    for placement in ("codes_on_array", "projection_on_array"):
        ideal = HardwareConfig(hash_length=64, device="ideal", placement=placement)
        cpu = _forward(program(patch_model(tiny_net, ideal)), tiny_input)
        gpu = _forward(program(patch_model(tiny_net.cuda(), ideal)), tiny_input.cuda()).cpu()
        assert (cpu - gpu).abs().max() < 1e-3 * cpu.abs().max()
        noisy = HardwareConfig(hash_length=64, device="pcm", placement=placement)
        a = program(patch_model(tiny_net.cuda(), noisy), seed=2)
        drift(a, 86400)
        b = program(patch_model(tiny_net.cuda(), noisy), seed=2)
        drift(b, 86400)
        assert torch.equal(_forward(a, tiny_input.cuda()), _forward(b, tiny_input.cuda()))
        tiny_net.cpu()
