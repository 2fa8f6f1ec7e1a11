"""Calibration images: a few training images for procedures that only need inputs, never the test split.

The main user is BatchNorm re-estimation on programmed hardware (AdaBS: Joshi et al., "Accurate deep
neural network inference using computational phase-change memory", Nat. Commun. 11, 2473, 2020): after
programming and drift, the network's BatchNorm statistics are re-measured through the analog layers.
The images are augmented like the training batches (random crop with zero padding, horizontal flip)
because the stored statistics of a model trained that way are those of augmented images: measured on
the fine-tuned hashed ResNet-20 (learned projections, k = 256, 67.55% digital), statistics re-estimated
on 1,024 plain training images give 62.5%, on the same images augmented 68.3%.
"""

from __future__ import annotations

import os

from torch import Tensor

from aimc_lsh.data.augment import RandomCropFlip
from aimc_lsh.data.loaders import DATASETS, load_dataset

__all__ = ["CALIBRATION_IMAGES", "TRAINING_CROP_PADDING", "calibration_images", "training_crop_padding"]

CALIBRATION_IMAGES = 512
"""Training images (the first ones, in order, no augmentation) that prepare layers needing data before
training or evaluation: product-quantization codebooks and fitted projections."""

TRAINING_CROP_PADDING = {"digits": 1}
"""Zero padding of the training crop per dataset where it is not 4 (the 8x8 digits images: 1 pixel)."""


def training_crop_padding(dataset: str) -> int:
    """Zero padding of the random crop this project trains ``dataset`` with (4, or 1 for ``digits``).

    Raises:
        ValueError: If ``dataset`` is unknown.

    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    return TRAINING_CROP_PADDING.get(dataset, 4)


def calibration_images(
    dataset: str,
    *,
    count: int,
    root: str | os.PathLike[str] | None = None,
    augment: bool = True,
    seed: int = 0,
) -> Tensor:
    """The first ``count`` training images of ``dataset`` as float in [0, 1], augmented like training.

    Args:
        dataset: One of :data:`aimc_lsh.data.DATASETS`.
        count: Number of images, from 1 to the size of the training split.
        root: Data root for CIFAR (else ``$AIMC_LSH_DATA``).
        augment: Random crop (padding :func:`training_crop_padding`) and horizontal flip, as in training;
            False: the images as stored.
        seed: Seed of the augmentation (same seed, same images).

    Returns:
        Images (count, C, H, W).

    Raises:
        ValueError: For an unknown dataset or a ``count`` outside [1, training images].

    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"calibration image count must be a positive integer, got {count!r}")
    padding = training_crop_padding(dataset)
    train = load_dataset(dataset, root=root, train=True)
    if count > len(train):
        raise ValueError(
            f"{count} calibration images requested but the {dataset} training split has {len(train)}; "
            f"allowed: 1 to {len(train)}"
        )
    images = train.tensors()[0][:count]
    if not augment:
        return images.clone()
    return RandomCropFlip(padding, seed=int(seed))(images)
