"""A final BatchNorm refresh: re-estimate the statistics after training, kept only if held-out images agree.

A recovery run ends with BatchNorm running statistics accumulated with momentum over small augmented
batches while the weights still moved (or their weight average). Re-estimating them once on the final
weights, over many augmented training images with cumulative averages, can suit those weights better; it can
also fit them worse. :func:`refresh_batchnorm` re-estimates them and, given held-out images that training
never saw, keeps the new statistics only if the model classifies those images at least as well with them,
restoring the trained ones otherwise. The test split plays no part in the decision.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from aimc_lsh.data import ImageTensorDataset, RandomCropFlip
from aimc_lsh.eval import dataset_accuracy
from aimc_lsh.train.calibration import batchnorm_layers, recalibrate_bn


@dataclass(frozen=True)
class BatchNormRefresh:
    """Outcome of :func:`refresh_batchnorm`."""

    images: int
    """Training images the statistics were re-estimated on."""
    holdout_images: int
    """Held-out images that decided whether to keep them (0: none given, kept unconditionally)."""
    holdout_before: float | None
    """Accuracy (fraction) on the held-out images with the trained statistics, or None without them."""
    holdout_after: float | None
    """Accuracy on the held-out images with the re-estimated statistics, or None without them."""
    kept: bool
    """True if the model keeps the re-estimated statistics; False: the trained ones were restored."""
    seconds: float
    """Wall-clock seconds of the refresh, held-out evaluations included."""

    def to_dict(self) -> dict:
        """Plain dict of the fields."""
        return {
            "images": self.images,
            "holdout_images": self.holdout_images,
            "holdout_before": self.holdout_before,
            "holdout_after": self.holdout_after,
            "kept": self.kept,
            "seconds": round(self.seconds, 1),
        }


def refresh_batchnorm(
    model: nn.Module,
    train_set: ImageTensorDataset,
    *,
    count: int,
    crop_padding: int = 4,
    augment: bool = True,
    seed: int = 0,
    holdout: ImageTensorDataset | None = None,
    device: torch.device | str = "cpu",
) -> BatchNormRefresh:
    """Re-estimate ``model``'s BatchNorm statistics on training images; keep them if ``holdout`` agrees.

    Args:
        model: The trained model (its statistics are replaced in place, or left as they were).
        train_set: Training images in [0, 1]; the first ``count`` are used.
        count: Number of training images, from 1 to ``len(train_set)``.
        crop_padding: Padding of the random crop when ``augment`` is True.
        augment: Random crop and horizontal flip, as in training (the statistics the trained network
            expects are those of augmented inputs).
        seed: Seed of the augmentation (same seed, same images, same statistics).
        holdout: Labelled images training never saw; None keeps the new statistics unconditionally.
        device: Device the model runs on.

    Returns:
        A :class:`BatchNormRefresh` (the decision and both held-out accuracies).

    Raises:
        ValueError: If ``count`` is outside [1, len(train_set)], or ``holdout`` is empty.

    """
    start = time.perf_counter()
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(train_set):
        raise ValueError(
            f"BatchNorm refresh image count must be an int in [1, {len(train_set)}] (the training images), "
            f"got {count!r}"
        )
    if holdout is not None and len(holdout) == 0:
        raise ValueError("the held-out set of the BatchNorm refresh is empty; give labelled images or None")
    device = torch.device(device)
    images = train_set.tensors()[0][:count].float()
    if augment:
        images = RandomCropFlip(crop_padding, seed=seed)(images)
    trained = _statistics(model)
    before = dataset_accuracy(model, holdout, device) if holdout is not None else None
    recalibrate_bn(model, images.to(device))
    after = dataset_accuracy(model, holdout, device) if holdout is not None else None
    kept = before is None or after >= before
    if not kept:
        _restore(model, trained)
    return BatchNormRefresh(
        images=count,
        holdout_images=0 if holdout is None else len(holdout),
        holdout_before=before,
        holdout_after=after,
        kept=kept,
        seconds=time.perf_counter() - start,
    )


def _statistics(model: nn.Module) -> list[dict[str, torch.Tensor | None]]:
    """Copies of every BatchNorm layer's running statistics, in module order."""
    return [
        {name: None if (t := getattr(bn, name)) is None else t.detach().clone() for name in _BUFFERS}
        for bn in batchnorm_layers(model)
    ]


def _restore(model: nn.Module, saved: list[dict[str, torch.Tensor | None]]) -> None:
    for bn, buffers in zip(batchnorm_layers(model), saved, strict=True):
        for name, value in buffers.items():
            if value is not None:
                getattr(bn, name).copy_(value)


_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
