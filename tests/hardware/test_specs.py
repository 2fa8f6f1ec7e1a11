import pytest

from aimc_lsh.hardware import ADC, SenseAmp, TileSpec
from aimc_lsh.hardware.specs import equal_splits


def test_defaults_are_ideal_and_round_trip():
    for record in (SenseAmp(), ADC(), TileSpec()):
        assert type(record).from_dict(record.to_dict()) == record
    assert SenseAmp().ideal and ADC().ideal
    assert not SenseAmp(offset_std=0.01).ideal and not ADC(bits=8).ideal
    assert ADC(bits=4).levels == 16 and ADC().levels is None


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: SenseAmp(offset_std=-0.1), "offset_std"),
        (lambda: SenseAmp(noise_std=float("nan")), "noise_std"),
        (lambda: SenseAmp(metastability=-1), "metastability"),
        (lambda: SenseAmp(threshold=2.0), "threshold"),
        (lambda: ADC(bits=0), "bits"),
        (lambda: ADC(bits=2.5), "bits"),
        (lambda: ADC(full_scale=0.0), "full_scale"),
        (lambda: ADC(noise_std=-0.01), "noise_std"),
        (lambda: TileSpec(rows=0), "rows"),
        (lambda: TileSpec(cols=-3), "cols"),
        (lambda: SenseAmp.from_dict({"offset": 0.1}), "no field"),
        (lambda: SenseAmp(full_scale_mv=0.0), "full_scale_mv must be > 0"),
        (lambda: SenseAmp(full_scale_mv=-340.0), "full_scale_mv"),
        (lambda: SenseAmp(full_scale_mv=float("inf")), "full_scale_mv"),
        (lambda: SenseAmp().replace_mv(offset_std=2.0), "full_scale_mv is not set"),
        (lambda: SenseAmp(full_scale_mv=340.0).replace_mv(gain=2.0), "takes offset_std"),
    ],
)
def test_invalid_records_raise_clear_errors(factory, message):
    with pytest.raises(ValueError, match=message):
        factory()


def test_figures_in_millivolts_are_fractions_of_the_full_scale_swing():
    sense_amp = SenseAmp(offset_std=0.01, noise_std=0.002, full_scale_mv=340.0)
    two_mv = sense_amp.replace_mv(offset_std=2.0)
    assert two_mv.offset_std == pytest.approx(2.0 / 340.0) and two_mv.noise_std == 0.002
    assert two_mv.full_scale_mv == 340.0 and SenseAmp.from_dict(two_mv.to_dict()) == two_mv
    both = sense_amp.replace_mv(offset_std=3.4, noise_std=0.68, metastability=0.34, threshold=-1.7)
    assert both.to_dict() == pytest.approx(
        {"offset_std": 0.01, "noise_std": 0.002, "threshold": -0.005, "metastability": 0.001,
         "full_scale_mv": 340.0}
    )  # fmt: skip
    with pytest.raises(ValueError, match="threshold"):  # 400 mV is beyond a 340 mV full scale
        sense_amp.replace_mv(threshold=400.0)


def test_equal_splits_follow_aihwkit_rule():
    from aihwkit.simulator.tiles.array import TileModuleArray

    for size, max_size in [(576, 512), (10, 4), (7, 7), (1, 5), (1000, 256)]:
        ours = [stop - start for start, stop in equal_splits(size, max_size)]
        theirs = TileModuleArray.get_split_sizes(None, size, max_size)
        assert ours == theirs
