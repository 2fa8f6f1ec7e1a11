import math

import pytest

from aimc_lsh.eval.score import TileCost, bitbybit_score_from_tiles


def test_single_tile_hand_computed():
    # HDOPs = 2*64*16 = 2048, FLOPs = 2*16*16 = 512, r = 1/4, r^0.5 = 1/2, E = 1/(3/2) = 2/3.
    # A = 1 - 0.05/0.15 = 2/3, score = 2*(2/3)*(2/3)/(4/3) = 2/3.
    out = bitbybit_score_from_tiles([(64, 16, 16)], 0.05)
    assert out.hdops == 2048 and out.flops == 512 and out.n_tiles == 1
    assert out.ratio == pytest.approx(0.25)
    assert out.efficiency_term == pytest.approx(2 / 3)
    assert out.accuracy_term == pytest.approx(2 / 3)
    assert out.score == pytest.approx(2 / 3)


def test_sums_over_tiles_before_ratio():
    # Two conv tiles: 3x3 kernels on 16 and 32 input channels -> in_tile 144 and 288.
    # HDOPs = 2*128*144 + 2*128*288 = 36864 + 73728 = 110592
    # FLOPs = 2*144*16 + 2*288*32 = 4608 + 18432 = 23040, r = 23040/110592 = 5/24
    # sqrt(5/24) = 0.4564355, E = 0.9128709/1.4564355 = 0.6267843, A = 1 (no drop),
    # score = 2E/(1+E) = 1.2535687/1.6267843 = 0.7705807
    out = bitbybit_score_from_tiles([(128, 144, 16), TileCost("layer", 128, 288, 32)], 0.0)
    assert out.hdops == 110592 and out.flops == 23040
    assert out.ratio == pytest.approx(5 / 24)
    assert out.efficiency_term == pytest.approx(0.6267843, abs=1e-7)
    assert out.score == pytest.approx(0.7705807, abs=1e-7)
    # A per-tile average of scores would differ: the ratio is taken over sums.
    separate = [bitbybit_score_from_tiles([t], 0.0).score for t in [(128, 144, 16), (128, 288, 32)]]
    assert not math.isclose(out.score, sum(separate) / 2, rel_tol=1e-3)


def test_balanced_hashing_scores_one_and_large_drop_scores_zero():
    assert bitbybit_score_from_tiles([(16, 9, 16)], 0.0).score == pytest.approx(1.0)
    assert bitbybit_score_from_tiles([(16, 9, 16)], 0.15).score == 0.0
    assert bitbybit_score_from_tiles([(16, 9, 16)], 0.5).score == 0.0


def test_accuracy_gain_is_not_clipped():
    # A = 1 + 0.15/0.15 = 2, E = 1 -> score = 2*2*1/3 = 4/3, exactly as the hackathon formula gives.
    out = bitbybit_score_from_tiles([(16, 9, 16)], -0.15)
    assert out.accuracy_term == pytest.approx(2.0)
    assert out.score == pytest.approx(4 / 3)


def test_custom_delta_gamma():
    # r = 1/4, gamma = 1 -> E = 2*0.25/1.25 = 0.4; delta = 0.1, drop 0.05 -> A = 0.5
    # score = 2*0.5*0.4/0.9 = 0.4444...
    out = bitbybit_score_from_tiles([(64, 16, 16)], 0.05, delta=0.1, gamma=1.0)
    assert out.score == pytest.approx(0.4 / 0.9)


def test_rejects_hdops_below_flops():
    with pytest.raises(ValueError, match=r"HDOPs \(4096\) < total FLOPs \(8192\)"):
        bitbybit_score_from_tiles([(8, 256, 16)], 0.0)


@pytest.mark.parametrize("drop", [5.0, -2.0, float("nan"), float("inf")])
def test_rejects_acc_drop_out_of_range(drop):
    with pytest.raises(ValueError, match="fraction"):
        bitbybit_score_from_tiles([(64, 16, 16)], drop)


def test_rejects_bad_inputs():
    with pytest.raises(TypeError, match="acc_drop"):
        bitbybit_score_from_tiles([(64, 16, 16)], "0.1")
    with pytest.raises(ValueError, match="no hashed layers"):
        bitbybit_score_from_tiles([], 0.0)
    with pytest.raises(ValueError, match="in_tile must be a positive integer"):
        bitbybit_score_from_tiles([(64, 0, 16)], 0.0)
    with pytest.raises(ValueError, match=r"\(k, in_tile, out_tile\)"):
        bitbybit_score_from_tiles([(64, 16)], 0.0)
    with pytest.raises(ValueError, match="delta"):
        bitbybit_score_from_tiles([(64, 16, 16)], 0.0, delta=0.0)
    with pytest.raises(ValueError, match="gamma"):
        bitbybit_score_from_tiles([(64, 16, 16)], 0.0, gamma=-1.0)
