"""The ``--sa-*`` options of the hardware studies: comparators given in mV or as fractions of full scale."""

import argparse

import pandas as pd
import pytest

from aimc_lsh.hardware import load_device
from aimc_lsh.studies.common import Prepared, base_config, sense_amp_from_args, sense_amp_note
from aimc_lsh.studies.drift import main

SWEEP = [
    "--dataset", "digits", "--times", "1d", "--seeds", "0,1",
    "--placements", "projection_on_array,conventional", "--compensation", "on",
    "--no-progress", "--workers", "1",
]  # fmt: skip


def _options(**given):
    names = ("sa_offset", "sa_offset_mv", "sa_noise", "sa_noise_mv", "sa_full_scale_mv")
    return argparse.Namespace(**{name: given.get(name) for name in names})


def test_options_replace_only_the_figures_given():
    pcm = load_device("pcm")
    assert sense_amp_from_args(_options(), pcm) is None
    two_mv = sense_amp_from_args(_options(sa_offset_mv=2.0), pcm)
    assert two_mv == pcm.sense_amp.replace(offset_std=2.0 / 340.0)
    wider = sense_amp_from_args(_options(sa_offset_mv=2.0, sa_full_scale_mv=500.0, sa_noise=0.0), pcm)
    assert wider.offset_std == pytest.approx(0.004) and wider.noise_std == 0 and wider.full_scale_mv == 500
    assert sense_amp_note(two_mv) == "; sense amps offset 2 mV, noise 0.68 mV of 340 mV FS"
    unknown_swing = pcm.sense_amp.replace(full_scale_mv=None)
    assert sense_amp_note(unknown_swing) == "; sense amps offset 0.01 FS, noise 0.002 FS"


def test_base_config_gives_the_comparators_to_hashed_placements_only():
    pcm = load_device("pcm")
    args = argparse.Namespace(drift_reference="random_sign", kernel="random_projection", hash_length=64)
    comparators = pcm.sense_amp.replace(offset_std=0.03)
    prepared = Prepared(source=None, device=pcm, seeds=[0], choice="none", sense_amp=comparators)
    hashed = base_config(args, prepared, placement="projection_on_array")
    assert hashed.effective_sense_amp == comparators
    assert base_config(args, prepared, placement="conventional").sense_amp is None


def _accuracies(out, *options):
    assert main([*SWEEP, "--out", str(out), *options]) == 0
    frame = pd.read_csv(out / "drift_pcm_digits.csv")
    return frame, frame.groupby("placement")["accuracy"].apply(list).to_dict()


def test_an_offset_in_mv_is_the_same_physics_as_its_fraction_of_full_scale(tmp_path):
    in_mv, by_mv = _accuracies(tmp_path / "mv", "--sa-offset-mv", "17")
    fraction, by_fraction = _accuracies(tmp_path / "fs", "--sa-offset", "0.05")
    _, default = _accuracies(tmp_path / "default")
    assert by_mv == by_fraction  # 17 mV of PCM's 340 mV full scale = 0.05
    hashed = in_mv[in_mv["placement"] == "projection_on_array"]
    assert hashed["sense_amp.offset_std"].eq(0.05).all() and hashed["sense_amp.full_scale_mv"].eq(340).all()
    # the offset reaches the comparators: a 5x larger offset than the profile's changes the hashed model
    assert by_mv["projection_on_array"] != default["projection_on_array"]
    assert by_mv["conventional"] == default["conventional"]  # no comparators there
    assert fraction["sense_amp.offset_std"][fraction["placement"] == "conventional"].eq(0.01).all()


def test_every_study_title_names_the_comparators_and_the_time():
    """Prepared.title (used by the drift, noise, k and ADC studies) carries the --sa-* note."""
    pcm = load_device("pcm")
    source = argparse.Namespace(backbone="digits_cnn", dataset="digits")
    prepared = Prepared(source=source, device=pcm, seeds=[0, 1], choice="none", sense_amp=None)
    head = "digits_cnn on digits test set, device pcm"
    assert prepared.title() == f"{head}; mean +- std over 2 programming seeds"
    prepared.sense_amp = pcm.sense_amp.replace_mv(offset_std=2.0)
    assert prepared.title("1d", notes=["; hashed model NOT fine-tuned"]) == (
        f"{head}, t = 1d; mean +- std over 2 programming seeds; hashed model NOT fine-tuned"
        "; sense amps offset 2 mV, noise 0.68 mV of 340 mV FS"
    )
