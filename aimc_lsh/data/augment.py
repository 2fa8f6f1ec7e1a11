"""Train-time augmentation on image batches in plain torch (no torchvision).

Both operations work on a whole batch ``(N, C, H, W)`` at once and draw their randomness from an
explicit :class:`torch.Generator`, so the same seed gives the same augmented batches.

* :func:`random_crop`: zero-pad by ``padding`` pixels on each side, then crop a random ``H x W`` window
  per image (the standard CIFAR recipe uses ``padding=4``).
* :func:`random_hflip`: mirror each image left-right with probability ``p``.
* :class:`RandomCropFlip`: both, with its own seeded generator; usable as a loader's batch transform.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from aimc_lsh.utils import check_seed, make_generator

__all__ = ["random_crop", "random_hflip", "RandomCropFlip"]


def _check_batch(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"expected an image batch of shape (N, C, H, W), got {shape}")


def random_crop(
    images: torch.Tensor, padding: int = 4, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero-pad each image by ``padding`` pixels and crop a random window of the original size.

    Args:
        images: Batch (N, C, H, W).
        padding: Pixels of zero padding on every side (>= 0); offsets are uniform in [0, 2 * padding].
        generator: Source of randomness (global RNG if None).

    Returns:
        A new batch of the same shape and dtype.

    Raises:
        ValueError: If ``images`` is not 4-D or ``padding`` is negative.

    """
    _check_batch(images)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
    if padding == 0 or images.shape[0] == 0:
        return images.clone()
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    off_y = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    off_x = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
    rows = (off_y[:, None] + torch.arange(h, device=images.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (off_x[:, None] + torch.arange(w, device=images.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    chans = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def random_hflip(
    images: torch.Tensor, p: float = 0.5, *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``.

    Args:
        images: Batch (N, C, H, W).
        p: Flip probability in [0, 1].
        generator: Source of randomness (global RNG if None).

    Returns:
        A new batch of the same shape and dtype.

    Raises:
        ValueError: If ``images`` is not 4-D or ``p`` is outside [0, 1].

    """
    _check_batch(images)
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"flip probability p must be in [0, 1], got {p}")
    flip = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(-1), images)


class RandomCropFlip:
    """Random crop with zero padding followed by a random horizontal flip, seeded.

    Calling the object on a batch ``(N, C, H, W)`` returns the augmented batch; called on an
    ``(images, labels)`` pair it augments the images and passes the labels through, so it can sit at
    the end of a loader's collate function.
    """

    def __init__(self, padding: int = 4, flip_p: float = 0.5, *, seed: int = 0) -> None:
        """Create the transform.

        Args:
            padding: Zero padding per side before cropping (CIFAR recipe: 4).
            flip_p: Probability of a horizontal flip.
            seed: Seed of the transform's own generator.

        """
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        if not 0.0 <= float(flip_p) <= 1.0:
            raise ValueError(f"flip_p must be in [0, 1], got {flip_p}")
        self.padding = padding
        self.flip_p = float(flip_p)
        self.seed = check_seed(seed)
        self.generator = make_generator(self.seed)

    def reset(self, seed: int | None = None) -> None:
        """Restart the random stream (from ``seed``, or from the construction seed)."""
        self.seed = check_seed(self.seed if seed is None else seed)
        self.generator = make_generator(self.seed)

    def __call__(self, batch):
        """Augment a batch tensor, or the images of an ``(images, labels)`` pair."""
        if isinstance(batch, tuple | list):
            images, *rest = batch
            return (self(images), *rest)
        out = random_crop(batch, self.padding, generator=self.generator)
        return random_hflip(out, self.flip_p, generator=self.generator)

    def __repr__(self) -> str:
        return f"RandomCropFlip(padding={self.padding}, flip_p={self.flip_p}, seed={self.seed})"
