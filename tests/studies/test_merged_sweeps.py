"""Merged networks (LSH neuron merging) through the drift and k studies: no special case, one checkpoint."""

import pandas as pd
import pytest
import torch

from aimc_lsh.hardware import HardwareConfig, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import patch_model
from aimc_lsh.nn.merging import MergeConfig, merge_neurons
from aimc_lsh.nn.widths import layer_widths
from aimc_lsh.studies import drift, ksweep
from aimc_lsh.studies.workload import analog_model, calibration_batches, pretrained_model, resolve_source
from aimc_lsh.train import save_checkpoint

COMMON = ["--dataset", "digits", "--no-progress", "--seeds", "0", "--workers", "1"]


@pytest.fixture(scope="module")
def context():
    return resolve_source("digits", batch_size=200).context()


@pytest.fixture(scope="module")
def merged_checkpoint(context, tmp_path_factory):
    merged, report = merge_neurons(
        pretrained_model(context), MergeConfig(target_ratio=0.5), calibration_batches(context)
    )
    assert report.channels_after == 8
    path = tmp_path_factory.mktemp("merged") / "merge_0.5.pt"
    return merged, str(save_checkpoint(path, merged, backbone="digits_cnn"))


def test_analog_model_builds_the_merged_network_on_every_placement(context, merged_checkpoint):
    merged, path = merged_checkpoint
    images = calibration_batches(context)[0][0]
    ideal = HardwareConfig(placement="conventional", device="ideal", adc=None)
    conventional = program(analog_model(context, ideal, path))
    assert layer_widths(conventional) == layer_widths(merged)
    hashed = program(analog_model(context, HardwareConfig(hash_length=64, device="ideal"), path))
    assert layer_widths(hashed) == layer_widths(merged)
    digital_hash = patch_model(merged, HashConfig(hash_length=64))  # same layer seeds
    with torch.no_grad():
        torch.testing.assert_close(hashed(images), digital_hash(images), rtol=1e-4, atol=1e-4)
        agree = (conventional(images).argmax(1) == merged(images).argmax(1)).float().mean()
    assert agree > 0.95  # real weights on ideal tiles, read by the device's ADC


def test_drift_sweep_takes_a_merged_checkpoint_for_the_baseline_and_the_hashed_model(
    tmp_path, merged_checkpoint
):
    _, path = merged_checkpoint
    args = [*COMMON, "--checkpoint", path, "--times", "1s,1y", "--compensation", "off", "--hash-length", "64"]
    assert drift.main([*args, "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "drift_pcm_digits.csv")
    assert set(frame["placement"]) == {"codes_on_array", "conventional"} and len(frame) == 4
    assert (frame["checkpoint"] == "merge_0.5.pt").all() and frame["checkpoint_sha256"].notna().all()
    hashed = frame[frame["placement"] == "codes_on_array"]
    assert (hashed["hash_length"] == 64).all() and (hashed["kernel"] == "random_projection").all()
    baseline = frame[frame["placement"] == "conventional"].set_index("t_label")["accuracy"]
    assert baseline["1s"] > 0.8 and baseline["1y"] < baseline["1s"]  # merged weights drift on PCM


def test_k_sweep_hashes_the_merged_network_at_every_k(tmp_path, merged_checkpoint, context, capsys):
    _, path = merged_checkpoint
    args = [*COMMON, "--checkpoint", path, "--hash-lengths", "16,128", "--time", "1s"]
    assert ksweep.main([*args, "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "k_pcm_digits.csv")
    assert (frame["checkpoint"] == "merge_0.5.pt").all()
    hashed = frame[frame["placement"] != "conventional"].set_index("hash_length")["accuracy"]
    assert hashed.loc[16] < hashed.loc[128]

    hashed_checkpoint = save_checkpoint(
        tmp_path / "hashed.pt", patch_model(pretrained_model(context), HashConfig(hash_length=16)),
        backbone="digits_cnn",
    )  # fmt: skip
    capsys.readouterr()
    assert ksweep.main([*args, "--checkpoint", str(hashed_checkpoint), "--out", str(tmp_path / "h")]) == 2
    assert "needs one hashed checkpoint per k" in capsys.readouterr().err
