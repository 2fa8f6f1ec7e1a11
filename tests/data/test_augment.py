import pytest
import torch
import torch.nn.functional as F

from aimc_lsh.data import RandomCropFlip, random_crop, random_hflip
from aimc_lsh.utils import make_generator


def _batch(n=64):
    return torch.rand(n, 3, 32, 32, generator=make_generator(1))


def test_crop_is_a_window_of_the_padded_image():
    images = _batch(16)
    out = random_crop(images, 4, generator=make_generator(0))
    padded = F.pad(images, (4, 4, 4, 4))
    offsets = set()
    for n in range(16):
        found = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[n], padded[n, :, dy : dy + 32, dx : dx + 32])
        ]
        assert found, f"image {n} is not a crop of its padded original"
        offsets.add(found[0])
    assert len(offsets) > 1  # not always the same window


def test_crop_offsets_cover_full_range():
    # A one-hot image reveals the offset through the position of its single bright pixel.
    images = torch.zeros(2000, 1, 32, 32)
    images[:, :, 16, 16] = 1.0
    out = random_crop(images, 4, generator=make_generator(3))
    rows = out.flatten(2).argmax(-1).squeeze(1) // 32
    assert set(rows.tolist()) == set(range(12, 21))  # offsets 0..8 shift the pixel by +4..-4


def test_flip_probability_and_extremes():
    images = _batch(1000)
    assert torch.equal(random_hflip(images, 0.0), images)
    assert torch.equal(random_hflip(images, 1.0), images.flip(-1))
    out = random_hflip(images, 0.5, generator=make_generator(0))
    flipped = (out == images.flip(-1)).flatten(1).all(1).float().mean()
    assert 0.45 < float(flipped) < 0.55  # 1000 draws: 3.2 sigma band


def test_same_seed_same_batches():
    images = _batch()
    a, b, c = RandomCropFlip(seed=5), RandomCropFlip(seed=5), RandomCropFlip(seed=6)
    first = a(images)
    assert torch.equal(first, b(images))
    assert not torch.equal(first, c(images))
    second = a(images)
    assert not torch.equal(first, second)  # the stream advances
    a.reset()
    assert torch.equal(a(images), first)
    labels = torch.arange(64)
    x, y = RandomCropFlip(seed=5)((images, labels))
    assert torch.equal(x, first) and y is labels


def test_padding_zero_is_identity_and_errors():
    images = _batch(4)
    assert torch.equal(random_crop(images, 0), images)
    with pytest.raises(ValueError, match="padding"):
        random_crop(images, -1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_crop(images[0], 4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_hflip(images, 1.5)
    with pytest.raises(ValueError, match="flip_p"):
        RandomCropFlip(flip_p=2)
