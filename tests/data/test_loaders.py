import pytest
import torch

from aimc_lsh.data import RandomCropFlip, digits_dataset, load_dataset, make_loader


def _collect(loader):
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_test_loader_is_ordered_and_unaugmented(cifar10_root):
    root, _, test = cifar10_root
    loader = make_loader("cifar10", root=root, train=False, batch_size=4)
    x, y = _collect(loader)
    assert x.shape == (9, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(test[0]))
    assert y.tolist() == test[1]["labels"] and y.dtype == torch.int64
    assert [len(b[1]) for b in loader] == [4, 4, 1]


def test_train_loader_shuffles_and_augments_deterministically(cifar10_root):
    root, _, _ = cifar10_root
    a = _collect(make_loader("cifar10", root=root, train=True, batch_size=8, seed=1))
    b = _collect(make_loader("cifar10", root=root, train=True, batch_size=8, seed=1))
    c = _collect(make_loader("cifar10", root=root, train=True, batch_size=8, seed=2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    plain = _collect(
        make_loader("cifar10", root=root, train=True, batch_size=8, augment=False, shuffle=False)
    )
    assert sorted(a[1].tolist()) == sorted(plain[1].tolist())
    assert not torch.equal(a[1], plain[1])  # shuffled
    # crops zero-pad: an augmented epoch has exact zeros the raw random images almost never have
    assert (a[0] == 0).float().mean() > 5 * (plain[0] == 0).float().mean()


def test_second_epoch_differs_but_is_reproducible(cifar10_root):
    root, _, _ = cifar10_root
    loader = make_loader("cifar10", root=root, train=True, batch_size=25, seed=0)
    first, second = _collect(loader), _collect(loader)
    assert not torch.equal(first[0], second[0])
    again = make_loader("cifar10", root=root, train=True, batch_size=25, seed=0)
    _collect(again)
    assert torch.equal(_collect(again)[0], second[0])


def test_limit_takes_first_images(cifar10_root, cifar100_root):
    root, train, _ = cifar10_root
    x, y = _collect(make_loader("cifar10", root=root, train=True, limit=7, augment=False, shuffle=False))
    assert len(y) == 7 and y.tolist() == (train[0][1]["labels"] + train[1][1]["labels"])[:7]
    root100, _, test100 = cifar100_root
    loader = make_loader("cifar100", root=root100, batch_size=3, limit=5)
    assert len(loader.dataset) == 5 and loader.dataset.num_classes == 100


def test_digits_loader_and_custom_transform():
    loader = make_loader("digits", train=True, batch_size=100, seed=0)
    x, y = next(iter(loader))
    assert x.shape == (100, 1, 8, 8)
    calls = []

    def transform(batch):
        calls.append(len(batch[1]))
        return batch

    ds = digits_dataset(train=False)
    assert len(_collect(make_loader(ds, batch_size=200, augment=transform))[1]) == 449
    assert calls == [200, 200, 49]
    assert len(make_loader(ds, limit=10).dataset) == 10


def test_loader_errors(cifar10_root):
    root, _, _ = cifar10_root
    with pytest.raises(ValueError, match="unknown dataset"):
        make_loader("mnist")
    with pytest.raises(ValueError, match="batch_size"):
        make_loader("digits", batch_size=0)
    with pytest.raises(ValueError, match="augment=True"):
        make_loader("digits", train=True, augment=True)
    with pytest.raises(ValueError, match="limit"):
        load_dataset("cifar10", root=root, limit=0)
    with pytest.raises(TypeError, match="ImageTensorDataset"):
        make_loader([1, 2, 3])
    assert isinstance(
        make_loader("cifar10", root=root, train=True, augment=True).collate_fn.transform, RandomCropFlip
    )


def test_resolve_data_root_per_dataset(cifar10_root):
    from aimc_lsh.data import resolve_data_root

    root, _, _ = cifar10_root
    assert resolve_data_root("digits", "/ignored") is None  # embedded: no files
    assert resolve_data_root("cifar10", root) == root / "cifar-10-batches-py"
    with pytest.raises(ValueError, match="unknown dataset 'mnist'; allowed: cifar10, cifar100, digits"):
        resolve_data_root("mnist")
