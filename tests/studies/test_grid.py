import pytest

from aimc_lsh.studies.grid import canonical_json, check_params, point_key, point_seed, product_grid


def test_point_key_ignores_order_but_not_types_or_values():
    a = {"x": 1, "y": "pcm", "z": None}
    assert point_key(a) == point_key({"z": None, "y": "pcm", "x": 1})
    assert point_key(a) != point_key({**a, "x": 1.0})
    assert point_key(a) != point_key({**a, "x": 2})
    assert point_key(a) != point_key({**a, "w": True})
    assert len(point_key(a)) == 16
    assert canonical_json(a) == '{"x":1,"y":"pcm","z":null}'


def test_point_seed_is_stable_and_distinct():
    keys = [point_key({"i": i}) for i in range(50)]
    seeds = [point_seed(k) for k in keys]
    assert len(set(seeds)) == 50
    assert all(0 <= s < 2**63 for s in seeds)
    assert seeds == [point_seed(k) for k in keys]


@pytest.mark.parametrize(
    "params, error",
    [
        ({"x": [1, 2]}, TypeError),
        ({"x": float("nan")}, ValueError),
        ({"": 1}, TypeError),
        ({1: 1}, TypeError),
        ([("x", 1)], TypeError),
    ],
)
def test_check_params_rejects_non_scalars(params, error):
    with pytest.raises(error):
        check_params(params)


def test_product_grid_order_base_and_filter():
    grid = product_grid({"a": [1, 2], "b": ["x", "y"]}, base={"c": 0, "a": 99})
    assert grid == [
        {"c": 0, "a": 1, "b": "x"},
        {"c": 0, "a": 1, "b": "y"},
        {"c": 0, "a": 2, "b": "x"},
        {"c": 0, "a": 2, "b": "y"},
    ]
    kept = product_grid({"a": [1, 2, 3]}, where=[lambda p: p["a"] != 2])
    assert [p["a"] for p in kept] == [1, 3]


@pytest.mark.parametrize("axes", [{"a": []}, {"a": [1, 1]}])
def test_product_grid_rejects_empty_or_duplicate_axes(axes):
    with pytest.raises(ValueError, match="axis 'a'"):
        product_grid(axes)
