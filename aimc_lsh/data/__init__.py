"""Datasets: CIFAR-10/100 python pickles (read, validate, download), augmentation, loaders, digits.

Public API:
    make_loader(dataset, *, root, train, batch_size, augment, shuffle, limit, seed, download) -> DataLoader
    load_dataset(name, ...), cifar_dataset(...), CIFAR10(...), CIFAR100(...), digits_dataset(train)
    ImageTensorDataset (float images in [0, 1], int64 labels)
    find_cifar_dir(root, dataset, download), resolve_cifar_dir(root, dataset, download) (the studies'
    rule: a given root as is, else the cache, downloaded when missing), resolve_data_root(dataset, root,
    download) (the same for any dataset name: None for digits), load_cifar_arrays(...),
    read_cifar_batch(...), download_cifar(...)
    download_file(url, dest, sha256, ...), safe_extract_tar(archive, dest), verify_checksum, Checksum,
    ChecksumError, CifarFormatError
    random_crop, random_hflip, RandomCropFlip
    calibration_images(dataset, count=...), training_crop_padding(dataset): training images for
    input-only calibration (e.g. BatchNorm re-estimation on programmed hardware)
    load_digits_tensors(train)
The data root is an argument (``--data-root``) or ``$AIMC_LSH_DATA``; downloads go to
``$AIMC_LSH_CACHE/data`` or ``~/.cache/aimc_lsh/data`` when no root is given.
"""

from aimc_lsh.data.augment import RandomCropFlip, random_crop, random_hflip
from aimc_lsh.data.calibration import (
    CALIBRATION_IMAGES,
    TRAINING_CROP_PADDING,
    calibration_images,
    training_crop_padding,
)
from aimc_lsh.data.cifar import (
    CACHE_ENV,
    CIFAR_ARCHIVES,
    CIFAR_SPECS,
    DATA_ENV,
    CifarFormatError,
    default_cache_dir,
    download_cifar,
    find_cifar_dir,
    load_cifar_arrays,
    read_cifar_batch,
    read_cifar_pickle,
    resolve_cifar_dir,
)
from aimc_lsh.data.datasets import CIFAR10, CIFAR100, ImageTensorDataset, cifar_dataset
from aimc_lsh.data.digits import digits_dataset, load_digits_tensors
from aimc_lsh.data.download import Checksum, ChecksumError, download_file, safe_extract_tar, verify_checksum
from aimc_lsh.data.loaders import DATASETS, BatchCollate, load_dataset, make_loader, resolve_data_root

__all__ = [
    "CACHE_ENV",
    "CIFAR10",
    "CIFAR100",
    "CIFAR_ARCHIVES",
    "CIFAR_SPECS",
    "DATASETS",
    "DATA_ENV",
    "BatchCollate",
    "Checksum",
    "ChecksumError",
    "CifarFormatError",
    "ImageTensorDataset",
    "RandomCropFlip",
    "TRAINING_CROP_PADDING",
    "CALIBRATION_IMAGES",
    "calibration_images",
    "cifar_dataset",
    "default_cache_dir",
    "digits_dataset",
    "download_cifar",
    "download_file",
    "find_cifar_dir",
    "resolve_cifar_dir",
    "resolve_data_root",
    "load_cifar_arrays",
    "load_dataset",
    "load_digits_tensors",
    "make_loader",
    "random_crop",
    "random_hflip",
    "read_cifar_batch",
    "read_cifar_pickle",
    "safe_extract_tar",
    "training_crop_padding",
    "verify_checksum",
]
