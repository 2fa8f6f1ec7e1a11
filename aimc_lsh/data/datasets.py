"""In-memory image datasets returning float tensors in [0, 1] and int64 labels.

:class:`ImageTensorDataset` keeps the whole split as one tensor (uint8 for CIFAR, to save memory) and
converts to float on access. Besides the usual ``dataset[i]`` it implements ``__getitems__`` so a torch
:class:`~torch.utils.data.DataLoader` fetches a whole batch with one indexing operation (see
:func:`aimc_lsh.data.make_loader`), which is much faster on a 2-core CPU than collating single images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from aimc_lsh.data.cifar import CIFAR_SPECS, load_cifar_arrays

__all__ = ["ImageTensorDataset", "CIFAR10", "CIFAR100", "cifar_dataset"]


class ImageTensorDataset(Dataset):
    """Images (N, C, H, W) and labels (N,) held in memory."""

    def __init__(
        self,
        images: torch.Tensor | np.ndarray,
        labels: torch.Tensor | np.ndarray | Sequence[int],
        *,
        num_classes: int,
        classes: list[str] | None = None,
        name: str = "images",
        limit: int | None = None,
    ) -> None:
        """Wrap image and label tensors.

        Args:
            images: uint8 values 0..255 or floating-point values in [0, 1], shape (N, C, H, W).
            labels: Integer class indices in ``[0, num_classes)``, shape (N,).
            num_classes: Number of classes.
            classes: Optional class names (``len == num_classes``).
            name: Name used in messages and ``repr``.
            limit: Keep only the first ``limit`` images (``None`` keeps all).

        Raises:
            ValueError: On wrong shapes, dtypes, value or label ranges, or a bad ``limit``.

        """
        images = torch.as_tensor(images)
        labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
        if images.ndim != 4:
            raise ValueError(f"{name}: images must have shape (N, C, H, W), got {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{name}: labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}"
            )
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"{name}: labels must be integers, got {labels.dtype}")
        if images.dtype != torch.uint8 and not images.dtype.is_floating_point:
            raise ValueError(f"{name}: images must be uint8 (0..255) or float in [0, 1], got {images.dtype}")
        if images.dtype.is_floating_point and images.numel() and (images.min() < 0 or images.max() > 1):
            raise ValueError(f"{name}: float images must lie in [0, 1]")
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name}: labels must lie in [0, {num_classes - 1}]")
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
            images, labels = images[:limit], labels[:limit]
        self.images = images.contiguous()
        self.labels = labels.to(torch.int64).contiguous()
        self.num_classes = int(num_classes)
        self.classes = classes
        self.name = name

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            return images.to(torch.float32).div_(255.0)
        return images.to(torch.float32)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._to_float(self.images[index]), self.labels[index]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Return a whole batch ``(images (B, C, H, W) float, labels (B,) int64)`` in one indexing step."""
        index = torch.as_tensor(list(indices), dtype=torch.long)
        return self._to_float(self.images[index]), self.labels[index]

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return all images as float in [0, 1] and all labels."""
        return self._to_float(self.images), self.labels

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, n={len(self)}, shape={tuple(self.images.shape[1:])}, "
            f"num_classes={self.num_classes})"
        )


def cifar_dataset(
    dataset: str = "cifar10",
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = False,
    download: bool = False,
    label_mode: str = "fine",
    limit: int | None = None,
) -> ImageTensorDataset:
    """Load a CIFAR split as an :class:`ImageTensorDataset` (images (N, 3, 32, 32) uint8 inside).

    Args:
        dataset: ``"cifar10"`` or ``"cifar100"``.
        root: Data root (argument, else ``$AIMC_LSH_DATA``); see :func:`aimc_lsh.data.find_cifar_dir`.
        train: Training split if True, else the test split.
        download: Download and extract the official archive when missing.
        label_mode: ``"fine"`` or (CIFAR-100 only) ``"coarse"``.
        limit: Keep only the first ``limit`` images.

    Returns:
        The dataset; items are ``(float image in [0, 1], int64 label)``.

    """
    images, labels, names = load_cifar_arrays(
        root, dataset, train=train, label_mode=label_mode, download=download
    )
    spec = CIFAR_SPECS[dataset]
    _, num_classes = spec.label_keys[label_mode]
    split = "train" if train else "test"
    return ImageTensorDataset(
        torch.from_numpy(images),
        torch.from_numpy(labels),
        num_classes=num_classes,
        classes=names,
        name=f"{spec.name} {split}",
        limit=limit,
    )


def CIFAR10(  # noqa: N802 - reads like the familiar dataset class
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = False,
    download: bool = False,
    limit: int | None = None,
) -> ImageTensorDataset:
    """CIFAR-10 split; shorthand for ``cifar_dataset("cifar10", ...)``."""
    return cifar_dataset("cifar10", root, train=train, download=download, limit=limit)


def CIFAR100(  # noqa: N802 - reads like the familiar dataset class
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = False,
    download: bool = False,
    label_mode: str = "fine",
    limit: int | None = None,
) -> ImageTensorDataset:
    """CIFAR-100 split (fine labels by default); shorthand for ``cifar_dataset("cifar100", ...)``."""
    return cifar_dataset("cifar100", root, train=train, download=download, label_mode=label_mode, limit=limit)
