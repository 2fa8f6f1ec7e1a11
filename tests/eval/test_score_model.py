import pytest
from torch import nn

from aimc_lsh.eval import bitbybit_breakdown, bitbybit_score, hashed_tile_costs
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import resnet20_a
from aimc_lsh.nn import patch_model


def _small():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4)
    )


def test_tiled_model_hand_computed():
    config = HashConfig(hash_length=16, input_tile_size=2, output_tile_size=4)
    hashed = patch_model(_small(), config)
    costs = hashed_tile_costs(hashed)
    # conv: input tiles of 2 and 1 channels (x 3x3 -> 18 and 9 inputs), output tiles of 4 -> 4 pairs;
    # linear: 4 input tiles of 2 features, one output tile of 4 -> 4 pairs.
    assert [(c.layer, c.in_tile, c.out_tile) for c in costs] == [
        ("0", 18, 4),
        ("0", 18, 4),
        ("0", 9, 4),
        ("0", 9, 4),
        ("3", 2, 4),
        ("3", 2, 4),
        ("3", 2, 4),
        ("3", 2, 4),
    ]
    # HDOPs = 2*16*(18+18+9+9) + 2*16*(4*2) = 1728 + 256 = 1984
    # FLOPs = 2*4*(18+18+9+9) + 2*4*(4*2)   =  432 +  64 =  496 -> r = 1/4, E = 2/3
    out = bitbybit_breakdown(hashed, 0.05)
    assert (out.hdops, out.flops, out.n_tiles) == (1984, 496, 8)
    assert out.score == pytest.approx(2 / 3)
    assert bitbybit_score(hashed, 0.05) == pytest.approx(2 / 3)


def test_skipped_layers_are_not_counted():
    model = resnet20_a()
    hashed = patch_model(model, HashConfig(hash_length=64), skip=["conv1", "linear"])
    costs = hashed_tile_costs(hashed)
    assert {c.layer for c in costs} == {
        n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n != "conv1"
    }
    # one tile per layer: in_tile = C_in * 9, out_tile = C_out
    first = costs[0]
    assert (first.layer, first.in_tile, first.out_tile) == ("layer1.0.conv1", 144, 16)


def test_errors_for_unhashed_and_too_short_hashes():
    with pytest.raises(ValueError, match="no hashed layers"):
        bitbybit_score(_small(), 0.0)
    hashed = patch_model(_small(), HashConfig(hash_length=2))  # k = 2 < out = 8 -> HDOPs < FLOPs
    with pytest.raises(ValueError, match="HDOPs"):
        bitbybit_score(hashed, 0.0)
