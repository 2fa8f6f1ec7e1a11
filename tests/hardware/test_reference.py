"""The fast path agrees with the same layers computed through real aihwkit inference tiles."""

import pytest
import torch

from aimc_lsh.hardware import ADC, HardwareConfig, SenseAmp, TileSpec, drift, load_device, program
from aimc_lsh.hardware.reference import AihwkitHashStages, Periphery, PeripheryMVM
from aimc_lsh.nn import patch_model


def _forward(model, x):
    with torch.no_grad():
        return model(x)


def _pair(net, **fields):
    # the aihwkit backend reads drift with aihwkit's one-hot GlobalDriftCompensation
    fields.setdefault("drift_reference", "one_hot")
    fast = patch_model(net, HardwareConfig(**fields))
    reference = patch_model(net, HardwareConfig(backend="aihwkit", **fields))
    assert isinstance(reference.conv1.stages, AihwkitHashStages)
    return fast, reference


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
@pytest.mark.parametrize(
    ("tile", "adc"),
    [(TileSpec(), ADC()), (TileSpec(rows=50, cols=7), ADC(bits=8)), (TileSpec(rows=40), ADC())],
)
def test_backends_agree_with_shared_draws(tiny_net, tiny_input, placement, tile, adc):
    """Same seeds => same programming noise, drift and offsets; no per-read noise => same outputs."""
    device = load_device("pcm").replace(read_noise_std=0.0)
    fast, reference = _pair(
        tiny_net, hash_length=64, placement=placement, tile=tile, device=device, adc=adc,
        sense_amp=SenseAmp(offset_std=0.02),
    )  # fmt: skip
    program(fast, seed=3)
    program(reference, seed=3)
    for t in (None, 3600.0, 3.15e7):
        if t is not None:
            drift(fast, t)
            drift(reference, t)
        yf, yr = _forward(fast, tiny_input), _forward(reference, tiny_input)
        assert (yf - yr).abs().max() <= 1e-5 * yr.abs().max()


def test_analog_projection_in_codes_on_array_agrees(tiny_net, tiny_input):
    device = load_device("hermes").replace(read_noise_std=0.0)
    fast, reference = _pair(tiny_net, hash_length=32, device=device, analog_projection=True,
                            adc=ADC(bits=6), sense_amp=SenseAmp(offset_std=0.03))  # fmt: skip
    program(fast, seed=1)
    program(reference, seed=1)
    drift(fast, 86400)
    drift(reference, 86400)
    yf, yr = _forward(fast, tiny_input), _forward(reference, tiny_input)
    assert (yf - yr).abs().max() <= 1e-5 * yr.abs().max()


@pytest.mark.parametrize("placement", ["codes_on_array", "projection_on_array"])
def test_backends_agree_statistically_with_per_read_noise(tiny_net, tiny_input, placement):
    """Full pcm periphery (read, ADC and sense-amp noise per read): compare the distributions over reads.

    Drift compensation is off: its factor is estimated from one noisy read-out per backend, a
    difference of single draws rather than of the per-read noise under test.
    """
    fast, reference = _pair(
        tiny_net, hash_length=64, placement=placement, device="pcm", drift_compensation=False
    )
    program(fast, seed=0)
    program(reference, seed=0)
    drift(fast, 3600)
    drift(reference, 3600)
    yf = torch.stack([_forward(fast, tiny_input) for _ in range(12)])
    yr = torch.stack([_forward(reference, tiny_input) for _ in range(12)])
    # Same distribution => the mean difference over reads is a standard-normal multiple of its error.
    se = ((yf.var(0) + yr.var(0)) / yf.shape[0]).sqrt()
    z2 = ((yf.mean(0) - yr.mean(0)) / se).square().mean()
    assert z2 < 1.6, z2
    ratio = yf.std(0).mean() / yr.std(0).mean()
    assert 0.8 < ratio < 1.25, ratio


def test_sense_amp_periphery_returns_signs_not_three_levels():
    gen = torch.Generator().manual_seed(0)
    periphery = Periphery(
        "sense_amp", gen, sense_amp=SenseAmp(), column_norms=torch.ones(3), offsets=torch.zeros(3)
    )
    out = periphery.read(torch.tensor([[-0.2, 0.0, 0.3]]), torch.ones(1, 4))
    assert torch.equal(out, torch.tensor([[-1.0, 1.0, 1.0]]))
    assert issubclass(PeripheryMVM, object)


def test_ideal_reference_matches_the_pure_kernel(tiny_net, tiny_input):
    from aimc_lsh.kernels import HashConfig

    pure = _forward(patch_model(tiny_net, HashConfig(hash_length=32)), tiny_input)
    for placement in ("codes_on_array", "projection_on_array"):
        reference = program(patch_model(tiny_net, HardwareConfig(hash_length=32, placement=placement,
                                                                 backend="aihwkit")))  # fmt: skip
        assert torch.allclose(_forward(reference, tiny_input), pure, atol=1e-5, rtol=1e-5)


def test_reference_backend_refuses_learned_comparator_thresholds(tiny_net, tiny_input):
    """The aihwkit backend decides the input bits inside its tiles: zero thresholds only, else an error."""
    config = HardwareConfig(
        hash_length=32, backend="aihwkit", comparator_thresholds=True, kernel="learned_projection"
    )
    reference = program(patch_model(tiny_net, config))
    pure = patch_model(tiny_net, HardwareConfig(hash_length=32, kernel="learned_projection"))
    torch.testing.assert_close(_forward(reference, tiny_input), _forward(program(pure), tiny_input))
    with torch.no_grad():
        reference.conv1.kernels[0].threshold.fill_(0.1)
    with pytest.raises(NotImplementedError, match="learned comparator thresholds.*backend='fast'"):
        _forward(reference, tiny_input)
