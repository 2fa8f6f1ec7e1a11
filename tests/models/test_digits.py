from torch import nn

from aimc_lsh.models import DigitsNet, get_backbone, train_digits_model


def test_digits_model_trains_to_good_accuracy_deterministically():
    first = train_digits_model(seed=0)
    assert first.test_accuracy >= 0.95 and first.train_accuracy >= 0.97  # measured 98.7% / 99.8%
    assert not first.model.training
    kinds = {type(m) for m in first.model.modules()}
    assert nn.Conv2d in kinds and nn.Linear in kinds
    second = get_backbone("digits_cnn")  # the registry trains the same model with seed 0
    for key, value in first.model.state_dict().items():
        assert (second.state_dict()[key] == value).all()


def test_shape_check():
    import pytest
    import torch

    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        DigitsNet()(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="epochs"):
        train_digits_model(epochs=0)
