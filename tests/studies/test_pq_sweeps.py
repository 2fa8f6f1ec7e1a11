"""Product quantization through the k and drift studies (digits): no special case, deterministic CSVs."""

import pandas as pd
import pytest
import torch

from aimc_lsh.data import load_dataset
from aimc_lsh.hardware import HardwareConfig, program
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import calibrate_pq, needs_data, patch_model, pq_layers
from aimc_lsh.studies import drift, ksweep
from aimc_lsh.studies.workload import (
    CALIBRATION_IMAGES,
    analog_model,
    calibration_batches,
    pretrained_model,
    resolve_source,
)
from aimc_lsh.train import save_checkpoint

COMMON = ["--dataset", "digits", "--kernel", "product_quantization", "--no-progress"]


def test_analog_model_calibrates_pq_on_the_first_training_images():
    context = resolve_source("digits", batch_size=200).context()
    batches = calibration_batches(context)
    train = load_dataset("digits", train=True, limit=CALIBRATION_IMAGES)
    assert torch.equal(torch.cat([images for images, _ in batches]), train.images)  # never the test split
    model = analog_model(context, HardwareConfig(kernel="product_quantization", hash_length=8, device="pcm"))
    assert needs_data(model) == []
    direct = calibrate_pq(
        patch_model(pretrained_model(context), HashConfig(kernel="product_quantization", hash_length=8)),
        batches,
    )
    for (path, layer), (_, expected) in zip(pq_layers(model), pq_layers(direct), strict=True):
        assert torch.equal(layer.kernel.centroids, expected.kernel.centroids), path


def test_analog_model_of_a_pq_checkpoint_keeps_its_weights_and_codebooks(tmp_path):
    context = resolve_source("digits", batch_size=200).context()
    tuned = calibrate_pq(
        patch_model(
            pretrained_model(context), HashConfig(kernel="product_quantization", hash_length=8, seed=5)
        ),
        calibration_batches(context)[:1],
    )
    with torch.no_grad():
        tuned.fc.weight.mul_(1.5)  # as if fine-tuned
    path = save_checkpoint(tmp_path / "pq.pt", tuned, backbone="digits_cnn")
    ideal = HardwareConfig(
        kernel="random_projection", hash_length=64, device="ideal"
    )  # the checkpoint's kernel wins
    analog = program(analog_model(context, ideal, str(path)))
    images = calibration_batches(context)[1][0]
    with torch.no_grad():
        torch.testing.assert_close(analog(images), tuned(images), rtol=1e-4, atol=1e-4)


def test_k_sweep_runs_pq_with_k_centroids(tmp_path, capsys):
    args = ["--hash-lengths", "4,16", "--seeds", "0", "--workers", "1", "--time", "1h"]
    assert ksweep.main([*COMMON, *args, "--out", str(tmp_path)]) == 0
    assert "no fine-tuned checkpoint for kernel 'product_quantization'" in capsys.readouterr().err
    frame = pd.read_csv(tmp_path / "k_pcm_digits.csv")
    pq = frame[frame["placement"] == "codes_on_array"].set_index("hash_length")
    assert set(pq["kernel"]) == {"product_quantization"} and (pq["pq_table_bits"] == 8).all()
    assert (pq["checkpoint"] == "none (not fine-tuned)").all()
    baseline = frame[frame["placement"] == "conventional"]["accuracy"].item()
    assert 0.5 < pq.loc[16, "accuracy"] < baseline  # calibrated on training images, an approximation
    assert pq.loc[4, "accuracy"] < pq.loc[16, "accuracy"]  # more centroids, finer codes


@pytest.mark.slow
def test_drift_sweep_runs_pq_and_two_workers_give_the_serial_csv(tmp_path):
    args = [*COMMON, "--hash-length", "16", "--checkpoint", "none", "--times", "1s,1y", "--seeds", "0,1",
            "--placements", "codes_on_array", "--compensation", "off"]  # fmt: skip
    assert drift.main([*args, "--workers", "1", "--out", str(tmp_path / "serial")]) == 0
    assert drift.main([*args, "--workers", "2", "--out", str(tmp_path / "parallel")]) == 0
    csv = "drift_pcm_digits.csv"
    assert (tmp_path / "serial" / csv).read_bytes() == (tmp_path / "parallel" / csv).read_bytes()
    frame = pd.read_csv(tmp_path / "serial" / csv)
    assert set(frame["kernel"]) == {"product_quantization"} and len(frame) == 2 * 2
    means = frame.groupby("t_label")["accuracy"].mean()
    assert means["1y"] < means["1s"]  # the table's conductances decay without compensation
