"""DataLoader construction for every dataset the package knows (CIFAR-10/100, digits).

:func:`make_loader` returns a plain :class:`torch.utils.data.DataLoader` whose batches are
``(images float (B, C, H, W) in [0, 1], labels int64 (B,))``. Batches are fetched in one indexing step
(``ImageTensorDataset.__getitems__``) and augmented as whole batches, and every random choice (shuffle
order, crops, flips) comes from generators seeded by ``seed``: the same seed gives the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import DataLoader

from aimc_lsh.data.augment import RandomCropFlip
from aimc_lsh.data.cifar import resolve_cifar_dir
from aimc_lsh.data.datasets import ImageTensorDataset, cifar_dataset
from aimc_lsh.data.digits import digits_dataset
from aimc_lsh.utils import check_seed, make_generator

__all__ = ["DATASETS", "BatchCollate", "load_dataset", "make_loader", "resolve_data_root"]

DATASETS = ("cifar10", "cifar100", "digits")
"""Dataset names :func:`make_loader` and :func:`load_dataset` accept."""

_AUG_SEED_OFFSET = 0x5EED  # the augmentation stream differs from the shuffle stream of the same seed


class BatchCollate:
    """Collate for batches fetched whole by ``__getitems__``, with an optional batch transform."""

    def __init__(self, transform: Callable | None = None) -> None:
        """Create the collate function.

        Args:
            transform: Applied to each ``(images, labels)`` batch (e.g. :class:`RandomCropFlip`).

        """
        self.transform = transform

    def __call__(self, batch):
        """Return the batch (already stacked by the dataset), transformed if a transform is set."""
        if isinstance(batch, list):  # a dataset without __getitems__: list of (image, label) pairs
            from torch.utils.data import default_collate

            batch = default_collate(batch)
        return self.transform(batch) if self.transform is not None else batch


def resolve_data_root(
    dataset: str, root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path | None:
    """Where a command line reads ``dataset``: the CIFAR folder by the studies' rule, None for digits.

    CIFAR follows :func:`aimc_lsh.data.resolve_cifar_dir` (a named root as it is, else the cache,
    downloaded on first use unless ``download`` is False); the embedded digits need no files.

    Raises:
        ValueError: If ``dataset`` is unknown.
        FileNotFoundError: As :func:`aimc_lsh.data.resolve_cifar_dir`.

    """
    if dataset == "digits":
        return None
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    return resolve_cifar_dir(root, dataset, download=download)


def load_dataset(
    dataset: str,
    *,
    root: str | os.PathLike[str] | None = None,
    train: bool = False,
    limit: int | None = None,
    download: bool = False,
) -> ImageTensorDataset:
    """Load a named dataset split.

    Args:
        dataset: One of :data:`DATASETS`.
        root: Data root for CIFAR (argument, else ``$AIMC_LSH_DATA``); ignored for digits.
        train: Training split if True, else the test split.
        limit: Keep only the first ``limit`` images.
        download: Download CIFAR when missing.

    Returns:
        The dataset.

    Raises:
        ValueError: If ``dataset`` is unknown.

    """
    if dataset == "digits":
        return digits_dataset(train, limit=limit)
    if dataset in ("cifar10", "cifar100"):
        return cifar_dataset(dataset, root, train=train, download=download, limit=limit)
    raise ValueError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")


def make_loader(
    dataset: str | ImageTensorDataset = "cifar10",
    *,
    root: str | os.PathLike[str] | None = None,
    train: bool = False,
    batch_size: int = 128,
    augment: bool | Callable | None = None,
    shuffle: bool | None = None,
    limit: int | None = None,
    seed: int = 0,
    download: bool = False,
    drop_last: bool = False,
) -> DataLoader:
    """Build a deterministic DataLoader over a dataset split.

    Args:
        dataset: A name from :data:`DATASETS` or an :class:`ImageTensorDataset`.
        root: Data root for CIFAR (argument, else ``$AIMC_LSH_DATA``).
        train: Training split if True (only used when ``dataset`` is a name).
        batch_size: Images per batch.
        augment: ``None`` (default) means crop + flip for CIFAR training loaders and nothing otherwise;
            ``True`` forces crop (padding 4) + flip; ``False`` disables; a callable is applied to every
            ``(images, labels)`` batch.
        shuffle: Shuffle each epoch; defaults to ``train``.
        limit: Use only the first ``limit`` images (before shuffling).
        seed: Seeds the shuffle order and the augmentation (same seed, same batches).
        download: Download CIFAR when missing.
        drop_last: Drop the last incomplete batch.

    Returns:
        A :class:`~torch.utils.data.DataLoader` yielding ``(images, labels)``; single-process
        (``num_workers=0``) so that seeded randomness is reproducible.

    Raises:
        ValueError: On an unknown dataset, a bad ``batch_size``, or ``augment=True`` for a dataset whose
            images are not CIFAR-sized.

    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    seed = check_seed(seed)
    name = dataset if isinstance(dataset, str) else None
    if isinstance(dataset, str):
        dataset = load_dataset(dataset, root=root, train=train, limit=limit, download=download)
    elif isinstance(dataset, ImageTensorDataset):
        if limit is not None:
            dataset = ImageTensorDataset(
                dataset.images,
                dataset.labels,
                num_classes=dataset.num_classes,
                classes=dataset.classes,
                name=dataset.name,
                limit=limit,
            )
    else:
        raise TypeError(
            f"dataset must be a name {DATASETS} or an ImageTensorDataset, got {type(dataset).__name__}"
        )
    if augment is None:
        augment = bool(train and name in ("cifar10", "cifar100"))
    if augment is True:
        if tuple(dataset.images.shape[-2:]) != (32, 32):
            raise ValueError(
                "augment=True applies the CIFAR crop(padding=4)+flip recipe to 32x32 images; "
                f"{dataset.name} has "
                f"{tuple(dataset.images.shape[-2:])} images: pass augment=False or your own callable"
            )
        transform: Callable | None = RandomCropFlip(
            padding=4, flip_p=0.5, seed=(seed + _AUG_SEED_OFFSET) % 2**63
        )
    elif augment is False:
        transform = None
    elif callable(augment):
        transform = augment
    else:
        raise ValueError(f"augment must be None, a bool or a callable, got {augment!r}")
    do_shuffle = train if shuffle is None else bool(shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=do_shuffle,
        generator=make_generator(seed) if do_shuffle else None,
        collate_fn=BatchCollate(transform),
        num_workers=0,
        drop_last=drop_last,
    )
