import pytest

from aimc_lsh.studies.executors import PointError, ProcessBackend, SerialBackend, make_backend, run_point
from aimc_lsh.studies.grid import point_key, product_grid
from tests.studies import toy_points

POINTS = product_grid({"a": [1, 2, 3, 4]})


def _collect(backend, points):
    with backend:
        return {key: rows for key, rows, _ in backend.run(points)}


def test_run_point_seeds_from_the_key_not_from_history():
    first = run_point(toy_points.noisy_rows, POINTS[1], {}, 1)
    run_point(toy_points.noisy_rows, POINTS[0], {}, 1)  # other draws in between
    again = run_point(toy_points.noisy_rows, POINTS[1], {}, 1)
    assert first[0] == again[0] == point_key(POINTS[1])
    assert first[1] == again[1]
    other = run_point(toy_points.noisy_rows, {"a": 2, "b": 0}, {}, 1)
    assert other[1] != first[1]


def test_processes_match_serial_in_any_order():
    serial = _collect(SerialBackend(toy_points.noisy_rows), POINTS)
    parallel = _collect(ProcessBackend(toy_points.noisy_rows, workers=2), list(reversed(POINTS)))
    assert parallel == serial
    pids = _collect(ProcessBackend(toy_points.worker_pid, {"sleep": 0}, workers=2), POINTS)
    assert len({rows[0]["pid"] for rows in pids.values()}) >= 1  # ran in worker processes


def test_failures_name_the_point():
    with pytest.raises(PointError, match=r"point \{'a': 3\} failed: RuntimeError: boom"):
        _collect(SerialBackend(toy_points.failing_rows, {"fail_at": 3}), POINTS)
    with pytest.raises(PointError, match="repeats a parameter"):
        _collect(SerialBackend(toy_points.bad_rows), POINTS[:1])
    with pytest.raises(PointError, match="boom") as failure:
        _collect(ProcessBackend(toy_points.failing_rows, {"fail_at": 2}, workers=2), POINTS)
    assert failure.value.key == point_key({"a": 2})  # survives the trip from the worker
    assert failure.value.reason == "RuntimeError: boom"


def test_make_backend_choice_and_validation():
    assert make_backend(toy_points.noisy_rows).name == "serial"
    assert make_backend(toy_points.noisy_rows, workers=2).name == "processes"
    assert make_backend(toy_points.noisy_rows, workers=2, n_points=1).name == "serial"
    assert make_backend(toy_points.noisy_rows, ray_address="local").name == "ray"
    for bad in ({"workers": 0}, {"threads": 0}, {"workers": True}):
        with pytest.raises(ValueError, match="positive integer"):
            make_backend(toy_points.noisy_rows, **bad)
