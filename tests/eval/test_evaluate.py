import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aimc_lsh.data import ImageTensorDataset
from aimc_lsh.eval import EvalResult, dataset_accuracy, evaluate


class _LabelEcho(nn.Module):
    """Predicts class = round(x[:, 0]); has dropout + BN so eval mode matters."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(1)
        self.drop = nn.Dropout(p=0.9)

    def forward(self, x):
        assert not self.training and not torch.is_grad_enabled()
        return nn.functional.one_hot(x[:, 0].round().long(), 4).float()


def _loader(n=10, batch_size=3):
    labels = torch.arange(n) % 4
    x = labels.float().unsqueeze(1).clone()
    x[:3, 0] = (x[:3, 0] + 1) % 4  # first three predictions wrong
    return DataLoader(TensorDataset(x, labels), batch_size=batch_size)


def test_counts_and_restores_mode():
    model = _LabelEcho()
    model.train()
    model.drop.eval()  # mixed modes must be restored exactly
    result = evaluate(model, _loader(), progress=False)
    assert result == EvalResult(accuracy=0.7, n_images=10, n_correct=7)
    assert result.percent == pytest.approx(70.0)
    assert "70.00%" in str(result)
    assert model.training and model.bn.training and not model.drop.training


def test_progress_bar_runs(capsys):
    result = evaluate(_LabelEcho(), _loader(batch_size=4), progress=True)
    assert result.n_images == 10


def test_errors():
    with pytest.raises(ValueError, match="no images"):
        evaluate(_LabelEcho(), [], progress=False)
    with pytest.raises(TypeError, match="images, labels"):
        evaluate(_LabelEcho(), [torch.zeros(2, 1)], progress=False)
    with pytest.raises(ValueError, match="labels must have shape"):
        evaluate(_LabelEcho(), [(torch.zeros(2, 1), torch.zeros(3, dtype=torch.long))], progress=False)
    bad = nn.Linear(1, 4)
    with pytest.raises(ValueError, match="logits of shape"):
        evaluate(nn.Sequential(bad, nn.Flatten(0)), _loader(), progress=False)
    with pytest.raises(ValueError, match="move it first"):
        evaluate(bad, _loader(), device="meta", progress=False)


class _FirstPixel(nn.Module):
    """Predicts class = round(3 * first pixel); eval mode asserted."""

    def forward(self, x):
        assert not self.training and not torch.is_grad_enabled()
        return nn.functional.one_hot((3 * x[:, 0, 0, 0]).round().long(), 4).float()


def test_dataset_accuracy_counts_every_image_in_several_batches_and_restores_the_mode():
    labels = torch.arange(600) % 4
    images = torch.zeros(600, 1, 2, 2)
    images[:, 0, 0, 0] = labels / 3
    images[:150, 0, 0, 0] = 0.0  # predicted class 0: wrong for the 112 of them labelled 1-3
    model = _FirstPixel().train()
    accuracy = dataset_accuracy(model, ImageTensorDataset(images, labels, num_classes=4))
    assert accuracy == (600 - 112) / 600 and model.training  # 600 images: three batches of up to 256
