import torch

from aimc_lsh.data import digits_dataset, load_digits_tensors


def test_fixed_split_shapes_and_ranges():
    x_train, y_train = load_digits_tensors(train=True)
    x_test, y_test = load_digits_tensors(train=False)
    assert x_train.shape == (1348, 1, 8, 8) and x_test.shape == (449, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    assert set(y_test.tolist()) == set(range(10))
    # the split is fixed: repeated calls give identical tensors, and train/test do not overlap
    assert torch.equal(load_digits_tensors(train=False)[0], x_test)
    train_rows = {tuple(r) for r in x_train.flatten(1).tolist()}
    overlap = sum(tuple(r) in train_rows for r in x_test.flatten(1).tolist())
    assert overlap < 10  # the UCI set has a handful of exact duplicate images, nothing more


def test_dataset_wrapper():
    ds = digits_dataset(train=False, limit=5)
    assert len(ds) == 5 and ds.classes == [str(i) for i in range(10)]
    x, y = ds[0]
    assert x.shape == (1, 8, 8)
