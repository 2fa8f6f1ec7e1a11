"""``--recalibrate-bn``: BatchNorm statistics re-estimated on the programmed, drifted hardware (AdaBS)."""

import pandas as pd
import pytest
import torch

from aimc_lsh.data import calibration_images, load_dataset
from aimc_lsh.studies.common import Prepared, recalibration_note
from aimc_lsh.studies.drift import main
from aimc_lsh.studies.workload import bn_calibration_images
from tests.shared_files import DATA, needs_data_and_models

SWEEP = [
    "--placements", "conventional", "--times", "1d", "--seeds", "0", "--limit", "256",
    "--no-progress", "--workers", "1", "--threads", "1",
]  # fmt: skip


def test_title_note_names_the_image_count():
    prepared = Prepared(source=None, device=None, seeds=[0], choice="none", recalibrate_bn=512)
    assert recalibration_note(prepared) == "; BatchNorm re-estimated on the hardware (512 training images)"
    assert recalibration_note(Prepared(source=None, device=None, seeds=[0], choice="none")) == ""


@needs_data_and_models
def test_study_calibration_images_are_the_first_training_images_augmented():
    images = bn_calibration_images({"dataset": "cifar10", "data_root": DATA}, 64)
    assert torch.equal(images, calibration_images("cifar10", count=64, root=DATA, augment=True, seed=0))
    stored = load_dataset("cifar10", root=DATA, train=True, limit=64).tensors()[0]
    assert images.shape == stored.shape and not torch.equal(images, stored)  # cropped and flipped


@pytest.mark.slow
@needs_data_and_models
def test_recalibration_recovers_the_uncompensated_drift_of_the_baseline(tmp_path, capsys):
    out = tmp_path / "drift"
    assert main([*SWEEP, "--compensation", "off", "--out", str(out)]) == 0
    plain = pd.read_csv(out / "drift_pcm_cifar10.csv")
    capsys.readouterr()
    assert main([*SWEEP, "--compensation", "off", "--recalibrate-bn", "256", "--out", str(out)]) == 0
    # the same folder: the recalibrated point is a new point, not the plain one resumed
    assert "(1 computed, 0 resumed)" in capsys.readouterr().err
    recalibrated = pd.read_csv(out / "drift_pcm_cifar10.csv")
    assert plain["bn_recalibration_images"].tolist() == [0]
    assert recalibrated["bn_recalibration_images"].tolist() == [256]
    # without compensation the drifted conductances shrink and BatchNorm's stored statistics no longer
    # fit (measured 12.5% of 256 images); re-estimated on the drifted arrays they do again (86.7%)
    assert plain["accuracy"].item() < 0.3 and recalibrated["accuracy"].item() > 0.75
