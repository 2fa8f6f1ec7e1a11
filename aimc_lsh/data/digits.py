"""The embedded small dataset: scikit-learn's handwritten digits (8 x 8, 10 classes), no download.

scikit-learn ships the 1,797 images of the UCI optical-digits test set inside its wheel
(``sklearn.datasets.load_digits``), so smoke runs and tests work offline. Pixel values 0..16 are scaled
to [0, 1] and returned as (N, 1, 8, 8) float tensors. The train/test split is fixed and RNG-free:
every fourth image (index % 4 == 3) is a test image, giving 1,348 training and 449 test images.
"""

from __future__ import annotations

import numpy as np
import torch

from aimc_lsh.data.datasets import ImageTensorDataset

__all__ = ["DIGITS_TEST_EVERY", "load_digits_tensors", "digits_dataset"]

DIGITS_TEST_EVERY = 4
"""Every ``DIGITS_TEST_EVERY``-th image (index % 4 == 3) belongs to the test split."""


def load_digits_tensors(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return one split of the digits as ``(images (N, 1, 8, 8) float in [0, 1], labels (N,) int64)``.

    Args:
        train: Training split (1,348 images) if True, else the test split (449 images).

    """
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no network access

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    is_test = np.arange(len(labels)) % DIGITS_TEST_EVERY == DIGITS_TEST_EVERY - 1
    keep = ~is_test if train else is_test
    return torch.from_numpy(images[keep]).unsqueeze(1).contiguous(), torch.from_numpy(labels[keep])


def digits_dataset(train: bool = True, *, limit: int | None = None) -> ImageTensorDataset:
    """The digits split as an :class:`ImageTensorDataset` (10 classes, names ``"0"`` .. ``"9"``)."""
    images, labels = load_digits_tensors(train)
    split = "train" if train else "test"
    return ImageTensorDataset(
        images,
        labels,
        num_classes=10,
        classes=[str(i) for i in range(10)],
        name=f"digits {split}",
        limit=limit,
    )
