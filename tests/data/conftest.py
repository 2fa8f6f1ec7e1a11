"""Fixtures writing small CIFAR-format pickles (the real layout, a few images per batch)."""

import hashlib
import pickle
import tarfile

import numpy as np
import pytest


def write_batch(path, n, label_keys, num_classes, seed, *, bytes_keys=True, protocol=2):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    batch = {"data": data, "batch_label": "test batch"}
    labels = {}
    for key, classes in zip(label_keys, num_classes, strict=True):
        labels[key] = rng.integers(0, classes, size=n).tolist()
        batch[key] = labels[key]
    if bytes_keys:  # the official files were written by Python 2: byte-string keys
        batch = {k.encode(): v for k, v in batch.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(batch, handle, protocol=protocol)
    return data.reshape(n, 3, 32, 32), labels


def write_cifar10(root, n_per_batch=(5, 6, 7, 3, 4), n_test=9):
    folder = root / "cifar-10-batches-py"
    train = [
        write_batch(folder / f"data_batch_{i + 1}", n, ["labels"], [10], seed=i)
        for i, n in enumerate(n_per_batch)
    ]
    test = write_batch(folder / "test_batch", n_test, ["labels"], [10], seed=99, bytes_keys=False, protocol=4)
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, handle, protocol=2)
    return folder, train, test


def write_cifar100(root, n_train=13, n_test=8):
    folder = root / "cifar-100-python"
    keys, classes = ["fine_labels", "coarse_labels"], [100, 20]
    train = write_batch(folder / "train", n_train, keys, classes, seed=1)
    test = write_batch(folder / "test", n_test, keys, classes, seed=2)
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    with open(folder / "meta", "wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return folder, train, test


@pytest.fixture
def cifar10_root(tmp_path, monkeypatch):
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    folder, train, test = write_cifar10(tmp_path)
    return tmp_path, train, test


@pytest.fixture
def cifar100_root(tmp_path, monkeypatch):
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    folder, train, test = write_cifar100(tmp_path)
    return tmp_path, train, test


def serve_cifar10(tmp_path, monkeypatch):
    """Register a small CIFAR-10 archive at a file URL, with its own digests, as the official download.

    Also points the cache at ``tmp_path / "cache"`` and unsets ``AIMC_LSH_DATA``. Returns the test
    batch's (images, labels).
    """
    from aimc_lsh.data import CIFAR_ARCHIVES
    from aimc_lsh.data.cifar import CifarArchive

    folder, _, test = write_cifar10(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    blob = archive.read_bytes()
    served = CifarArchive(
        url=archive.as_uri(),
        filename=CIFAR_ARCHIVES["cifar10"].filename,
        md5=hashlib.md5(blob).hexdigest(),
        sha256=hashlib.sha256(blob).hexdigest(),
        size=len(blob),
    )
    monkeypatch.setitem(CIFAR_ARCHIVES, "cifar10", served)
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path / "cache"))
    return test


@pytest.fixture
def served_cifar10(tmp_path, monkeypatch):
    return serve_cifar10(tmp_path, monkeypatch)
