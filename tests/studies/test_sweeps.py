"""The noise, k and ADC studies on the digits benchmark: every variant lands in the CSV as config columns."""

import json

import pandas as pd

from aimc_lsh.studies import adc, ksweep, noise

COMMON = ["--dataset", "digits", "--seeds", "0,1", "--no-progress", "--workers", "1"]


def test_noise_sweep_sets_each_knob_in_the_config_columns(tmp_path):
    args = ["--knobs", "sa_offset,sa_offset_mv,prog_noise_scale", "--values", "sa_offset=0,0.2", "--values",
            "prog_noise_scale=0,3", "--values", "sa_offset_mv=0,68"]  # fmt: skip
    assert noise.main([*COMMON, *args, "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "noise_pcm_digits.csv")
    # sa_offset(_mv): hashed only (2 values x 2 seeds); prog_noise_scale: hashed + conventional (2 x 2 x 2)
    assert len(frame) == 4 + 4 + 8
    in_mv = frame[frame["knob"] == "sa_offset_mv"].sort_values(["knob_value", "program_seed"])
    assert list(in_mv["sense_amp.offset_std"]) == [0, 0, 0.2, 0.2]  # 68 mV of PCM's 340 mV full scale
    sa = frame[frame["knob"] == "sa_offset"]
    assert set(sa["placement"]) == {"codes_on_array"}
    assert (sa["sense_amp.offset_std"] == sa["knob_value"]).all()
    prog = frame[frame["knob"] == "prog_noise_scale"]
    assert (prog["device.noise_params.prog_noise_scale"] == prog["knob_value"]).all()
    assert (frame["t_label"] == "1s").all()
    # a large sense-amp offset destroys the hashed codes: accuracy must fall
    means = sa.groupby("knob_value")["accuracy"].mean()
    assert means[0.2] < means[0.0] - 0.1
    same_physics = sa.sort_values(["knob_value", "program_seed"])["accuracy"]
    assert list(in_mv["accuracy"]) == list(same_physics)
    assert (tmp_path / "noise_pcm_digits.png").exists()


def test_k_sweep_uses_one_checkpoint_per_k_and_the_baseline(tmp_path):
    args = ["--hash-lengths", "32,128", "--ideal-reference", "--time", "1h"]
    assert ksweep.main([*COMMON, *args, "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "k_pcm_digits.csv")
    hashed = frame[frame["placement"] == "codes_on_array"]
    assert sorted(hashed["hash_length"].unique()) == [32, 128]
    assert set(hashed["device.name"]) == {"pcm", "ideal"}
    per_k = hashed.groupby("hash_length")["checkpoint"].unique()
    assert per_k[32][0] != per_k[128][0] and "k32" in per_k[32][0]
    assert len(frame[frame["placement"] == "conventional"]) == 2  # k-free baseline, once per seed
    ideal = hashed[hashed["device.name"] == "ideal"].groupby("hash_length")["accuracy"].mean()
    assert ideal[128] > ideal[32]  # more hash bits, better cosine estimates
    meta = json.loads((tmp_path / "k_pcm_digits.json").read_text())
    assert set(meta["config"]["checkpoints"]) == {"32", "128"}


def test_adc_sweep_bits_and_ideal(tmp_path):
    assert adc.main([*COMMON, "--bits", "1,6,ideal", "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "adc_pcm_digits.csv")
    assert len(frame) == 2 * 3 * 2  # placements x resolutions x seeds
    bits = frame["adc.bits"]
    assert set(bits.dropna()) == {1, 6} and bits.isna().sum() == 4
    conventional = frame[frame["placement"] == "conventional"].groupby(bits.fillna(99))["accuracy"].mean()
    assert conventional[1] < conventional[6]  # a 1-bit read-out of real-valued MVMs is coarse
