import pytest
import torch

from aimc_lsh.hardware import ADC
from aimc_lsh.hardware.periphery import (
    adc_convert,
    comparator,
    pooled_noise,
    quantize_midrise,
    quantize_norms,
)


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 8])
def test_adc_yields_two_to_the_bits_levels(bits):
    ramp = torch.linspace(-3.0, 3.0, 20001)
    levels = torch.unique(quantize_midrise(ramp, bits, 2.0))
    assert levels.numel() == 2**bits
    assert levels.max() <= 2.0 and levels.min() >= -2.0
    assert torch.allclose(levels, -levels.flip(0))  # symmetric
    converted = torch.unique(adc_convert(ramp, ADC(bits=bits, full_scale=2.0), 2.0))
    assert torch.equal(converted, levels)


def test_one_bit_adc_is_a_sign_and_unclipped_adc_keeps_the_step():
    x = torch.tensor([-5.0, -0.1, 0.0, 0.2, 7.0])
    assert torch.equal(quantize_midrise(x, 1, 1.0), torch.tensor([-0.5, -0.5, 0.5, 0.5, 0.5]))
    out = quantize_midrise(x, 2, 1.0, clip=False)
    assert out.max() > 1.0  # values beyond the range pass through quantised
    assert torch.allclose(out / 0.5 - 0.5, torch.round(out / 0.5 - 0.5))


def test_ideal_adc_is_identity_and_noise_has_the_requested_std():
    x = torch.randn(1000)
    assert adc_convert(x, ADC(), 1.0) is x
    gen = torch.Generator().manual_seed(0)
    noisy = adc_convert(torch.zeros(200_000), ADC(noise_std=0.3), 1.0, gen)
    assert abs(noisy.std().item() - 0.3) < 0.01 and abs(noisy.mean().item()) < 0.01
    combined = adc_convert(torch.zeros(200_000), ADC(noise_std=0.3), 1.0, gen, extra_noise_std=0.4)
    assert abs(combined.std().item() - 0.5) < 0.01


def test_adc_is_straight_through_in_training():
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    adc_convert(x, ADC(bits=2), 1.0).sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_comparator_metastability_band_gives_random_signs():
    margin = torch.full((100_000,), 0.01)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(comparator(margin), torch.ones_like(margin))
    flips = comparator(margin, band=0.05, generator=gen)
    assert 0.45 < (flips < 0).float().mean().item() < 0.55
    assert torch.equal(comparator(margin, band=0.001, generator=gen), torch.ones_like(margin))


def test_pooled_noise_is_standard_normal_reproducible_and_fresh_per_read():
    like = torch.empty(8, 16, 10, 10).contiguous(memory_format=torch.channels_last)
    a = pooled_noise(like, torch.Generator().manual_seed(3))
    b = pooled_noise(like, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    c, d = pooled_noise(like, gen), pooled_noise(like, gen)
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(c, d)
    assert abs(a.mean().item()) < 0.05 and abs(a.std().item() - 1) < 0.05
    # Samples of one read are not copies of each other at the same position.
    assert not torch.equal(a[0], a[1])


def test_quantize_norms_levels():
    norms = torch.rand(1000) * 3
    q = quantize_norms(norms, 3)
    assert torch.unique(q).numel() <= 8 and (q - norms).abs().max() <= 3 / 7 / 2 + 1e-6
    assert quantize_norms(norms, None) is norms
