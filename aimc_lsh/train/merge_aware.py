"""Merge-aware fine-tuning: train the full-width model towards its LSH buckets, rehashing as it moves.

The loop trains all weights with cross-entropy (optionally distilled from an FP32 teacher) plus
``cohesion x`` :func:`~aimc_lsh.nn.rehash.cohesion_penalty`, which pulls each bucket's neurons towards a
common direction; a :class:`~aimc_lsh.nn.rehash.RehashTracker` checks the fingerprints every
``rehash_interval`` steps and rebuilds the buckets of layers whose bits changed by more than
``rehash_threshold`` (Mongoose). At the end the trained model is merged with the tracker's buckets
(:func:`~aimc_lsh.nn.merging.apply_merge_plan`); the merged model can then be fine-tuned further with
:func:`aimc_lsh.train.fine_tune` like any other model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from aimc_lsh.data import ImageTensorDataset
from aimc_lsh.nn.merging import MergeConfig, MergeReport, apply_merge_plan
from aimc_lsh.nn.rehash import RehashTracker, cohesion_penalty
from aimc_lsh.train.batches import EpochBatches
from aimc_lsh.train.losses import recovery_loss
from aimc_lsh.train.trainer import set_train_mode
from aimc_lsh.utils import check_seed

__all__ = ["MergeAwareConfig", "MergeAwareResult", "merge_aware_fine_tune"]


@dataclass(frozen=True)
class MergeAwareConfig:
    """Settings of :func:`merge_aware_fine_tune`."""

    steps: int = 200
    """Optimiser steps (0: plan and merge without training)."""
    batch_size: int = 64
    """Images per step."""
    lr: float = 1e-3
    """Adam learning rate (constant)."""
    cohesion: float = 1.0
    """Weight of the bucket-cohesion penalty (0: plain fine-tuning; the tracker still rehashes)."""
    kd_alpha: float = 0.0
    """Weight of distillation from the teacher's logits (needs ``teacher``)."""
    kd_temperature: float = 4.0
    """Softmax temperature of the distillation term."""
    rehash_threshold: float = 0.1
    """Rehash a layer when more than this fraction of its fingerprint bits changed."""
    rehash_interval: int = 20
    """Check fingerprints every this many steps."""
    augment: bool = True
    """Random crop and horizontal flip of training batches (CIFAR recipe)."""
    bn_mode: str = "freeze"
    """``freeze``: BatchNorm uses and keeps its running statistics (the ones merging folds in);
    ``train``: batch statistics, running statistics updated."""
    calib_images: int = 256
    """Training images whose mean activations weigh the representatives (0: uniform weights)."""
    seed: int = 0
    """Seed of batch order and augmentation."""

    def __post_init__(self) -> None:
        """Validate the fields."""
        for name in ("steps", "calib_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("batch_size", "rehash_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name in ("lr", "cohesion", "kd_temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        if not 0 <= self.kd_alpha <= 1:
            raise ValueError(f"kd_alpha must be in [0, 1], got {self.kd_alpha!r}")
        if self.bn_mode not in ("freeze", "train"):
            raise ValueError(f"bn_mode must be 'freeze' or 'train', got {self.bn_mode!r}")
        check_seed(self.seed)


@dataclass
class MergeAwareResult:
    """Outcome of :func:`merge_aware_fine_tune`."""

    model: nn.Module
    """The trained full-width model (eval mode)."""
    merged: nn.Module
    """``model`` merged with the tracker's final buckets (eval mode)."""
    report: MergeReport
    """Channels before and after per chain."""
    tracker: RehashTracker
    """The tracker (``rehashes``, ``checks``, ``history``, ``plan``)."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per step: ``step``, ``loss`` (task loss), ``cohesion`` (penalty), ``rehashed``."""


def merge_aware_fine_tune(
    model: nn.Module,
    train_set: ImageTensorDataset,
    merge_config: MergeConfig,
    config: MergeAwareConfig | None = None,
    *,
    teacher: nn.Module | None = None,
) -> MergeAwareResult:
    """Fine-tune ``model`` towards its LSH buckets with rehashing, then merge it (see module docstring).

    Args:
        model: The full-width model (trained in place, on the CPU).
        train_set: Training images in [0, 1] with labels.
        merge_config: How much to merge (planned on ``model`` before training).
        config: Loop settings (default ``MergeAwareConfig()``).
        teacher: FP32 model for distillation (needed when ``kd_alpha > 0``).

    Returns:
        A :class:`MergeAwareResult`.

    Raises:
        ValueError: If distillation is requested without a teacher or the batch is larger than the data.

    """
    config = config or MergeAwareConfig()
    if config.kd_alpha > 0 and teacher is None:
        raise ValueError("kd_alpha > 0 needs the FP32 model as teacher=")
    if config.steps and config.batch_size > len(train_set):
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train_set)} training images")
    calib = train_set.tensors()[0][: config.calib_images] if config.calib_images else None
    tracker = RehashTracker(
        model,
        merge_config,
        threshold=config.rehash_threshold,
        interval=config.rehash_interval,
        batches=calib.split(64) if calib is not None else None,
    )
    if teacher is not None:
        teacher.eval()
    history: list[dict[str, Any]] = []
    if config.steps:
        batches = EpochBatches(train_set, config.batch_size, seed=config.seed, augment=config.augment)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
        set_train_mode(model, config.bn_mode)
        step = 0
        try:
            while step < config.steps:
                for _index, images, labels in batches.iterate(step // batches.steps_per_epoch):
                    teacher_logits = None
                    if teacher is not None and config.kd_alpha > 0:
                        with torch.no_grad():
                            teacher_logits = teacher(images)
                    task = recovery_loss(
                        model(images),
                        labels,
                        teacher_logits,
                        kd_alpha=config.kd_alpha,
                        kd_temperature=config.kd_temperature,
                    )
                    penalty = cohesion_penalty(model, tracker.plan)
                    loss = task + config.cohesion * penalty
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    step += 1
                    rehashed = tracker.step(model)
                    history.append(
                        {
                            "step": step,
                            "loss": float(task.detach()),
                            "cohesion": float(penalty.detach()),
                            "rehashed": rehashed,
                        }
                    )
                    if step >= config.steps:
                        break
        finally:
            model.eval()
    merged, report = apply_merge_plan(model, tracker.plan)
    merged.eval()
    return MergeAwareResult(model, merged, report, tracker, history)
