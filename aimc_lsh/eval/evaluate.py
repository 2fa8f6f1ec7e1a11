"""Top-1 accuracy of a classifier over a data loader, with a progress bar.

:func:`evaluate` puts the model in eval mode, runs it without gradients over every batch of the loader,
counts correct top-1 predictions and restores each submodule's previous training flag afterwards.
:func:`dataset_accuracy` does the same over a whole image dataset, in order and without augmentation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from aimc_lsh.data import ImageTensorDataset, make_loader
from aimc_lsh.utils import tune_allocator

__all__ = ["EvalResult", "dataset_accuracy", "evaluate"]

EVAL_BATCH_SIZE = 256
"""Images per batch of :func:`dataset_accuracy` (the result does not depend on it beyond float rounding)."""


@dataclass(frozen=True)
class EvalResult:
    """Outcome of :func:`evaluate`."""

    accuracy: float
    """Top-1 accuracy as a fraction in [0, 1] (``n_correct / n_images``)."""
    n_images: int
    """Number of images evaluated."""
    n_correct: int
    """Number of images whose arg-max logit equals the label."""

    @property
    def percent(self) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * self.accuracy

    def __str__(self) -> str:
        return f"top-1 {self.percent:.2f}% ({self.n_correct}/{self.n_images} images)"


def _model_devices(model: nn.Module) -> set[torch.device]:
    return {t.device for t in (*model.parameters(), *model.buffers())}


def _split_batch(batch: object, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, list | tuple) or len(batch) < 2:
        raise TypeError(
            f"batch {index}: expected (images, labels) from the loader, got {type(batch).__name__}"
        )
    images, labels = batch[0], batch[1]
    if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise TypeError(f"batch {index}: images and labels must be tensors")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"batch {index}: labels must have shape (N,) with N = {images.shape[0]} images, "
            f"got {tuple(labels.shape)}"
        )
    return images, labels


def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    device: str | torch.device = "cpu",
    progress: bool = True,
    desc: str = "eval",
) -> EvalResult:
    """Measure top-1 accuracy of ``model`` over ``loader``.

    Args:
        model: Classifier returning logits of shape (N, n_classes); it must already be on ``device``.
        loader: Iterable of ``(images, labels)`` batches (e.g. from :func:`aimc_lsh.data.make_loader`).
        device: Device the batches are moved to.
        progress: Show a tqdm progress bar (counted in images).
        desc: Label of the progress bar.

    Returns:
        An :class:`EvalResult` with the accuracy (fraction), the image count and the correct count.

    Raises:
        ValueError: If the loader is empty, a batch is malformed, the logits have the wrong shape, or
            the model lives on another device.
        TypeError: If a batch is not an ``(images, labels)`` pair of tensors.

    """
    tune_allocator()
    device = torch.device(device)
    devices = _model_devices(model)
    if devices and any(d.type != device.type for d in devices):
        raise ValueError(
            f"model is on {sorted(str(d) for d in devices)} but evaluate(device={str(device)!r}); "
            f"move it first with model.to({str(device)!r})"
        )
    modes = {module: module.training for module in model.modules()}
    total = getattr(getattr(loader, "dataset", None), "__len__", None)
    n_images = n_correct = 0
    model.eval()
    try:
        with (
            torch.no_grad(),
            tqdm(
                total=total() if total else None, desc=desc, unit="img", disable=not progress, leave=False
            ) as bar,
        ):
            for index, batch in enumerate(loader):
                images, labels = _split_batch(batch, index)
                images, labels = images.to(device), labels.to(device)
                logits = model(images)
                if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
                    raise ValueError(
                        f"batch {index}: model output must be logits of shape (N, n_classes) with "
                        f"N = {images.shape[0]}, got {tuple(logits.shape)}"
                    )
                n_correct += int((logits.argmax(dim=1) == labels).sum())
                n_images += int(labels.shape[0])
                bar.update(int(labels.shape[0]))
    finally:
        for module, mode in modes.items():
            module.training = mode
    if n_images == 0:
        raise ValueError("evaluate: the loader yielded no images")
    return EvalResult(accuracy=n_correct / n_images, n_images=n_images, n_correct=n_correct)


def dataset_accuracy(model: nn.Module, data: ImageTensorDataset, device: str | torch.device = "cpu") -> float:
    """Top-1 accuracy (a fraction) of ``model`` on every image of ``data``, unaugmented, no progress bar.

    Args:
        model: Classifier on ``device``; its modules' training flags are restored afterwards.
        data: Images in [0, 1] with labels.
        device: Device the images are moved to.

    Returns:
        ``evaluate(...).accuracy`` over ``data`` in its order, batches of :data:`EVAL_BATCH_SIZE`.
    """
    loader = make_loader(data, batch_size=EVAL_BATCH_SIZE, augment=False, shuffle=False)
    return evaluate(model, loader, device=device, progress=False).accuracy
