"""TrainConfig validation: every bad number, NaN included, is rejected with the field's name."""

import pytest

from aimc_lsh.train import TrainConfig


@pytest.mark.parametrize(
    "field", ["epochs", "lr_weights", "lr_projection", "weight_decay", "kd_alpha", "calib_lr"]
)
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_non_negative_numbers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be a non-negative number, got {value}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("field", ["kd_temperature", "time_budget_s"])
@pytest.mark.parametrize("value", [0.0, float("nan")])
def test_positive_numbers(field, value):
    with pytest.raises(ValueError, match=f"{field} must be > 0"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize(
    "changes", [{"blend_fraction": float("nan")}, {"min_lr_ratio": 1.5}, {"label_smoothing": 1.0}]
)
def test_ranges(changes):
    with pytest.raises(ValueError, match="must be in"):
        TrainConfig(**changes)


def test_final_bn_images_is_a_count_left_out_of_result_settings_while_off():
    with pytest.raises(ValueError, match="final_bn_images must be a non-negative int, got -5"):
        TrainConfig(final_bn_images=-5)
    assert "final_bn_images" not in TrainConfig().result_settings()  # earlier results keep their tags
    assert TrainConfig(final_bn_images=512).result_settings()["final_bn_images"] == 512


def test_product_dtype_is_a_known_name_left_out_of_result_settings_while_float32():
    with pytest.raises(ValueError, match="unknown product dtype 'half'; allowed: float32, bfloat16"):
        TrainConfig(product_dtype="half")
    assert "product_dtype" not in TrainConfig().result_settings()  # earlier results keep their tags
    assert TrainConfig(product_dtype="bfloat16").result_settings()["product_dtype"] == "bfloat16"
