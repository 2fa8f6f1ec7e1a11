import pytest
import torch
from torch import nn

from aimc_lsh.data import ImageTensorDataset
from aimc_lsh.train.bn_refresh import refresh_batchnorm


class MeanSign(nn.Module):
    """Class 1 when an image's mean lies above the BatchNorm's running mean, else class 0."""

    def __init__(self, mean: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(1, affine=False)
        self.bn.running_mean.fill_(mean)
        self.bn.running_var.fill_(0.04)
        self.bn.num_batches_tracked.fill_(7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.bn(x.mean(dim=(1, 2, 3))[:, None])
        return torch.cat([-z, z], dim=1)


def _constant_images(values: list[float], labels: list[int]) -> ImageTensorDataset:
    images = torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 4, 4).contiguous()
    return ImageTensorDataset(images, labels, num_classes=2)


# held-out images: dark ones are class 0, bright ones class 1; a running mean of 0.5 separates them
HOLDOUT = _constant_images([0.3] * 20 + [0.7] * 20, [0] * 20 + [1] * 20)


def test_statistics_that_fit_worse_on_the_holdout_are_rejected_and_the_trained_ones_restored():
    model = MeanSign(mean=0.5).eval()
    dark = _constant_images(
        [0.1, 0.2] * 16, [0] * 32
    )  # re-estimated mean 0.15: every held-out image "bright"
    outcome = refresh_batchnorm(model, dark, count=32, augment=False, holdout=HOLDOUT)
    assert not outcome.kept
    assert outcome.holdout_before == 1.0 and outcome.holdout_after == 0.5
    assert model.bn.running_mean.item() == 0.5 and model.bn.running_var.item() == pytest.approx(0.04)
    assert model.bn.num_batches_tracked.item() == 7 and not model.training  # its mode is left as it was


def test_statistics_that_fit_better_on_the_holdout_are_kept():
    model = MeanSign(mean=0.9).train()
    balanced = _constant_images([0.3, 0.7] * 16, [0, 1] * 16)
    outcome = refresh_batchnorm(model, balanced, count=32, augment=False, holdout=HOLDOUT)
    assert outcome.kept and outcome.holdout_before == 0.5 and outcome.holdout_after == 1.0
    assert model.bn.running_mean.item() == pytest.approx(0.5) and model.training
    assert outcome.images == 32 and outcome.holdout_images == 40


def test_without_a_holdout_the_new_statistics_are_kept():
    model = MeanSign(mean=0.5)
    outcome = refresh_batchnorm(model, _constant_images([0.1] * 8, [0] * 8), count=4, augment=False)
    assert outcome.kept and outcome.holdout_before is None and outcome.holdout_images == 0
    assert model.bn.running_mean.item() == pytest.approx(0.1)


def test_same_seed_same_statistics_and_the_seed_sets_the_augmentation():
    generator = torch.Generator().manual_seed(0)
    images = ImageTensorDataset(torch.rand(64, 1, 8, 8, generator=generator), [0] * 64, num_classes=2)

    def refreshed_mean(seed: int) -> float:
        model = MeanSign(mean=0.5)
        refresh_batchnorm(model, images, count=64, crop_padding=2, seed=seed)
        return model.bn.running_mean.item()

    assert refreshed_mean(3) == refreshed_mean(3)
    assert refreshed_mean(3) != refreshed_mean(4)  # crops pad with zeros: the mean depends on the offsets


@pytest.mark.parametrize("count", [0, 33, True, 2.0])
def test_a_count_outside_the_training_images_is_refused(count):
    images = _constant_images([0.5] * 32, [0] * 32)
    with pytest.raises(ValueError, match=r"count must be an int in \[1, 32\]"):
        refresh_batchnorm(MeanSign(mean=0.5), images, count=count)


def test_an_empty_holdout_is_refused():
    images = _constant_images([0.5] * 4, [0] * 4)
    empty = ImageTensorDataset(torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.int64), num_classes=2)
    with pytest.raises(ValueError, match="held-out set .* is empty"):
        refresh_batchnorm(MeanSign(mean=0.5), images, count=4, holdout=empty)
