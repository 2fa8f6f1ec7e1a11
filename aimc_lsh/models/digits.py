"""A tiny CNN for the embedded digits dataset, and a deterministic few-second training routine.

Smoke runs and tests need a small trained model that contains both ``nn.Conv2d`` and ``nn.Linear``
(so hashing both layer kinds can be exercised) without any download: :func:`train_digits_model` trains
:class:`DigitsNet` on scikit-learn's 8 x 8 digits (see :mod:`aimc_lsh.data.digits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from aimc_lsh.utils import check_seed, make_generator

__all__ = ["DigitsNet", "DigitsTrainResult", "train_digits_model"]


def _check_images(x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` has shape (N, 1, 8, 8)."""
    if x.ndim != 4 or tuple(x.shape[1:]) != (1, 8, 8):
        raise ValueError(f"DigitsNet expects images of shape (N, 1, 8, 8), got {tuple(x.shape)}")


# torch.fx records the check as one opaque call instead of tracing its shape test (which it cannot), so
# DigitsNet stays symbolically traceable (model surgery such as aimc_lsh.nn.merging relies on that).
torch.fx.wrap("_check_images")


class DigitsNet(nn.Module):
    """conv 1->``channels`` 3x3 (padding 1) -> ReLU -> 2x2 max-pool -> linear (``channels`` * 16 -> 10)."""

    def __init__(self, channels: int = 16, num_classes: int = 10) -> None:
        """Create the network.

        Args:
            channels: Output channels of the convolution.
            num_classes: Classifier outputs.

        """
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.fc = nn.Linear(channels * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, num_classes) from images (N, 1, 8, 8) in [0, 1]."""
        _check_images(x)
        x = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(torch.flatten(x, 1))


@dataclass(frozen=True)
class DigitsTrainResult:
    """A trained digits model and its measured accuracies."""

    model: DigitsNet
    """The trained model, in eval mode."""
    train_accuracy: float
    """Top-1 accuracy on the 1,348 training images (fraction)."""
    test_accuracy: float
    """Top-1 accuracy on the 449 test images (fraction)."""
    epochs: int
    """Epochs trained."""
    seed: int
    """Seed used for initialisation and shuffling."""


def _accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def train_digits_model(
    *,
    epochs: int = 30,
    seed: int = 0,
    lr: float = 0.01,
    batch_size: int = 64,
    channels: int = 16,
    num_threads: int | None = 1,
) -> DigitsTrainResult:
    """Train :class:`DigitsNet` on the digits training split (deterministic for a given seed).

    Adam with a cosine learning-rate decay over ``epochs``; about 2 s on one CPU thread with defaults.

    Args:
        epochs: Passes over the 1,348 training images.
        seed: Seeds the initial weights and the shuffle order.
        lr: Initial Adam learning rate.
        batch_size: Images per step.
        channels: Convolution channels of the model.
        num_threads: torch CPU threads while training (restored afterwards); the model is so small
            that one thread is fastest, and on a busy machine extra threads slow it down a lot.
            ``None`` keeps the current setting.

    Returns:
        The trained model (eval mode) with train and test accuracy.

    """
    seed = check_seed(seed)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    previous_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        return _train(epochs, seed, lr, batch_size, channels)
    finally:
        torch.set_num_threads(previous_threads)


def _train(epochs: int, seed: int, lr: float, batch_size: int, channels: int) -> DigitsTrainResult:
    from aimc_lsh.data.digits import load_digits_tensors

    x_train, y_train = load_digits_tensors(train=True)
    x_test, y_test = load_digits_tensors(train=False)
    generator = make_generator(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitsNet(channels=channels)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = -(-len(y_train) // batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=generator)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return DigitsTrainResult(
        model=model,
        train_accuracy=_accuracy(model, x_train, y_train),
        test_accuracy=_accuracy(model, x_test, y_test),
        epochs=epochs,
        seed=seed,
    )
