"""Deterministic, resumable, shardable training batches.

Batch ``b`` of epoch ``e`` is a pure function of ``(seed, e, b)``: the epoch's permutation comes from a
generator seeded with ``(seed, e)`` and the augmentation of the global batch from one seeded with
``(seed, e, b)``. A run can therefore resume at any step, and DDP process ``r`` of ``w`` takes images
``r, r + w, ...`` of each global batch, so the union over processes is exactly the single-process batch.
Incomplete last batches are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from aimc_lsh.data import ImageTensorDataset, random_crop, random_hflip

_MIX = 1_000_003


class EpochBatches:
    """Global batches of a dataset, optionally augmented (crop + flip) and sharded over processes.

    Args:
        dataset: The training split.
        batch_size: Global batch size (divisible by ``world_size``).
        seed: Seed of order and augmentation.
        augment: Random crop (``crop_padding``) and horizontal flip.
        crop_padding: Zero padding of the random crop.
        rank: This process's rank.
        world_size: Number of processes.

    """

    def __init__(
        self,
        dataset: ImageTensorDataset,
        batch_size: int,
        *,
        seed: int = 0,
        augment: bool = True,
        crop_padding: int = 4,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(
                f"batch_size {batch_size} must be divisible by the number of processes {world_size}"
            )
        if len(dataset) < batch_size:
            raise ValueError(
                f"the training set has {len(dataset)} images, fewer than one batch of {batch_size}"
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.augment = augment
        self.crop_padding = crop_padding
        self.rank = rank
        self.world_size = world_size
        self.steps_per_epoch = len(dataset) // batch_size

    def permutation(self, epoch: int) -> Tensor:
        """Image order of ``epoch``."""
        g = torch.Generator().manual_seed((self.seed * _MIX + epoch) % 2**63)
        return torch.randperm(len(self.dataset), generator=g)

    def batch(self, epoch: int, index: int, permutation: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return this process's shard of global batch ``index`` of ``epoch``: ``(images, labels)``."""
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"batch index {index} outside [0, {self.steps_per_epoch})")
        perm = self.permutation(epoch) if permutation is None else permutation
        idx = perm[index * self.batch_size : (index + 1) * self.batch_size]
        images, labels = self.dataset.__getitems__(idx.tolist())
        if self.augment:
            g = torch.Generator().manual_seed(((self.seed * _MIX + epoch) * _MIX + index) % 2**63)
            images = random_hflip(random_crop(images, self.crop_padding, generator=g), generator=g)
        return images[self.rank :: self.world_size], labels[self.rank :: self.world_size]

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Tensor, Tensor]]:
        """Yield ``(index, images, labels)`` for batches ``start ..`` of ``epoch``."""
        perm = self.permutation(epoch)
        for index in range(start, self.steps_per_epoch):
            yield (index, *self.batch(epoch, index, perm))
