import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from aimc_lsh.data import (
    CIFAR10,
    CIFAR100,
    CifarFormatError,
    find_cifar_dir,
    load_cifar_arrays,
    read_cifar_batch,
)

from .conftest import write_batch


def test_reads_cifar10_written_by_test(cifar10_root):
    root, train, test = cifar10_root
    images, labels, names = load_cifar_arrays(root, "cifar10", train=True)
    assert images.shape == (25, 3, 32, 32) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, np.concatenate([t[0] for t in train]))
    np.testing.assert_array_equal(labels, np.concatenate([t[1]["labels"] for t in train]))
    assert names == [f"class{i}" for i in range(10)]
    ds = CIFAR10(root, train=False)
    assert len(ds) == 9
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (3, 32, 32)
    assert torch.allclose(x * 255, torch.from_numpy(test[0][3]).float())
    assert y.dtype == torch.int64 and int(y) == test[1]["labels"][3]


def test_reads_cifar100_fine_and_coarse(cifar100_root):
    root, train, test = cifar100_root
    fine = CIFAR100(root, train=True)
    coarse = CIFAR100(root, train=True, label_mode="coarse")
    assert len(fine) == 13 and fine.num_classes == 100 and coarse.num_classes == 20
    assert fine.labels.tolist() == train[1]["fine_labels"]
    assert coarse.labels.tolist() == train[1]["coarse_labels"]
    assert fine.classes[:2] == ["f0", "f1"] and coarse.classes[-1] == "c19"
    test_ds = CIFAR100(root, train=False)
    images, labels = test_ds.tensors()
    assert images.shape == (8, 3, 32, 32) and float(images.max()) <= 1.0
    with pytest.raises(ValueError, match="label_mode"):
        CIFAR100(root, label_mode="medium")


def test_root_may_be_the_folder_itself_or_come_from_env(cifar10_root, monkeypatch):
    root, _, _ = cifar10_root
    folder = root / "cifar-10-batches-py"
    assert find_cifar_dir(folder, "cifar10") == folder
    assert find_cifar_dir(root, "cifar10") == folder
    monkeypatch.setenv("AIMC_LSH_DATA", str(root))
    assert find_cifar_dir(None, "cifar10") == folder
    assert len(CIFAR10(train=True, limit=4)) == 4


def test_missing_folder_says_how_to_provide_it(tmp_path, monkeypatch):
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"--data-root.*AIMC_LSH_DATA.*download=True"):
        find_cifar_dir(None, "cifar10")
    with pytest.raises(FileNotFoundError, match=r"cifar-10-batches-py.*--data-root.*AIMC_LSH_DATA"):
        CIFAR10(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown CIFAR dataset"):
        find_cifar_dir(tmp_path, "cifar11")


def test_missing_batch_file(cifar10_root):
    root, _, _ = cifar10_root
    os.remove(root / "cifar-10-batches-py" / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        CIFAR10(root, train=True)


def test_truncated_pickle_is_rejected(cifar10_root):
    root, _, _ = cifar10_root
    path = root / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CifarFormatError, match="truncated or corrupt"):
        CIFAR10(root)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_foreign_pickles_are_rejected_without_running_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil"
    evil.write_bytes(pickle.dumps({b"data": _Exploit()}, protocol=2))
    with pytest.raises(CifarFormatError, match=r"not a CIFAR pickle.*refused"):
        read_cifar_batch(evil, "labels", 10)
    assert not (tmp_path / "pwned").exists()
    as_list = tmp_path / "list"
    as_list.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CifarFormatError, match="expected a dict"):
        read_cifar_batch(as_list, "labels", 10)
    text = tmp_path / "text"
    text.write_text("this is not a pickle at all")
    with pytest.raises(CifarFormatError, match="truncated or corrupt"):
        read_cifar_batch(text, "labels", 10)


def _dump(path: Path, batch):
    path.write_bytes(pickle.dumps(batch, protocol=2))
    return path


def test_wrong_shapes_and_labels_are_rejected(tmp_path):
    data = np.zeros((4, 3072), np.uint8)
    cases = [
        ({b"labels": [0, 1, 2, 3]}, "missing key 'data'"),
        ({b"data": data}, "missing key 'labels'"),
        ({b"data": np.zeros((4, 1000), np.uint8), b"labels": [0] * 4}, r"shape \(N, 3072\)"),
        ({b"data": data.astype(np.float32), b"labels": [0] * 4}, "uint8"),
        ({b"data": data, b"labels": [0, 1, 2]}, "must be 4 integers"),
        ({b"data": data, b"labels": [0, 1, 2, 10]}, r"labels must lie in \[0, 9\]"),
        ({b"data": data, b"labels": [0, -1, 2, 3]}, r"labels must lie in \[0, 9\]"),
        ({b"data": data, b"labels": [0.5, 1, 2, 3]}, "must be 4 integers"),
        ({b"data": np.zeros((0, 3072), np.uint8), b"labels": []}, "no images"),
    ]
    for index, (batch, message) in enumerate(cases):
        with pytest.raises(CifarFormatError, match=message):
            read_cifar_batch(_dump(tmp_path / f"b{index}", batch), "labels", 10)


def test_any_batch_size_and_str_keys(tmp_path):
    images, labels = write_batch(tmp_path / "b", 1, ["labels"], [10], seed=0, bytes_keys=False, protocol=5)
    x, y = read_cifar_batch(tmp_path / "b", "labels", 10)
    np.testing.assert_array_equal(x, images)
    assert y.tolist() == labels["labels"] and y.dtype == np.int64


SHARED = os.environ.get("AIMC_LSH_DATA")


@pytest.mark.skipif(
    not SHARED, reason="AIMC_LSH_DATA is not set (CI points it at shared/data/cifar10-exact-subset)"
)
def test_shared_exact_subset_has_1017_images_per_batch():
    test = CIFAR10(train=False)
    assert len(test) == 1017 and test.classes[0] == "airplane"
    assert test.labels[:5].tolist() == [3, 8, 8, 0, 6]  # the first CIFAR-10 test labels
    assert len(CIFAR10(train=True)) == 5 * 1017
