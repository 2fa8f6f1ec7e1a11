"""Calibration images: the first training images, augmented like training, never the test split."""

import pytest
import torch

from aimc_lsh.data import (
    calibration_images,
    load_dataset,
    random_crop,
    random_hflip,
    training_crop_padding,
)
from tests.data.conftest import write_cifar10


def test_training_crop_padding_per_dataset():
    assert training_crop_padding("cifar10") == 4 and training_crop_padding("cifar100") == 4
    assert training_crop_padding("digits") == 1  # 4 pixels of padding would erase an 8x8 digit
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; allowed:"):
        training_crop_padding("mnist")


def test_the_first_training_images_augmented_as_training_does():
    stored = load_dataset("digits", train=True).tensors()[0][:40]
    plain = calibration_images("digits", count=40, augment=False)
    assert torch.equal(plain, stored)
    augmented = calibration_images("digits", count=40)
    assert augmented.shape == (40, 1, 8, 8) and 0.0 <= augmented.min() and augmented.max() <= 1.0
    generator = torch.Generator().manual_seed(0)
    expected = random_hflip(random_crop(stored, 1, generator=generator), generator=generator)
    assert torch.equal(augmented, expected)
    assert not torch.equal(augmented, plain)
    assert torch.equal(calibration_images("digits", count=40), augmented)  # same seed, same images
    assert not torch.equal(calibration_images("digits", count=40, seed=1), augmented)


def test_cifar_calibration_images_come_from_the_training_batches(tmp_path):
    write_cifar10(tmp_path)  # 5 training batches of 5, 6, 7, 3, 4 images; 9 test images
    train = load_dataset("cifar10", root=tmp_path, train=True).tensors()[0]
    images = calibration_images("cifar10", count=25, root=tmp_path, augment=False)
    assert torch.equal(images, train)
    assert calibration_images("cifar10", count=7, root=tmp_path).shape == (7, 3, 32, 32)


@pytest.mark.parametrize(
    "count, message",
    [
        (0, "must be a positive integer, got 0"),
        (-5, "must be a positive integer, got -5"),
        (2.5, "must be a positive integer, got 2.5"),
        (True, "must be a positive integer, got True"),
        (26, "26 calibration images requested but the cifar10 training split has 25; allowed: 1 to 25"),
    ],
)
def test_bad_counts_are_rejected(tmp_path, count, message):
    write_cifar10(tmp_path)
    with pytest.raises(ValueError, match=message):
        calibration_images("cifar10", count=count, root=tmp_path)
