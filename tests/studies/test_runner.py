import json
import os

import pandas as pd
import pytest

from aimc_lsh.studies.executors import PointError
from aimc_lsh.studies.grid import product_grid
from aimc_lsh.studies.plotting import plot_bands
from aimc_lsh.studies.runner import Sweep, check_output_dir, check_output_file, run_sweep
from tests.studies import toy_points


def _plot(frame, path):
    return plot_bands(frame, x="a", y="value", group_by="row", path=path)


def _sweep(fn=toy_points.noisy_rows, context=None, axes=None):
    points = product_grid(axes or {"a": [1, 2, 3], "b": ["x", "y"]})
    plot = _plot if fn is toy_points.noisy_rows else None
    return Sweep("toy", points, fn, context=context or {}, config={"answer": 42}, plot=plot)


def test_outputs_csv_json_png(tmp_path):
    result = run_sweep(_sweep(), tmp_path, progress=False)
    assert (result.computed, result.resumed) == (6, 0)
    frame = pd.read_csv(result.outputs.csv)
    assert list(frame.columns) == ["a", "b", "row", "value", "pid_parity"]
    assert len(frame) == 12 and frame["a"].tolist() == [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]
    meta = json.loads(result.outputs.json.read_text())
    assert meta["status"] == "complete" and meta["config"] == {"answer": 42}
    assert meta["n_points"] == 6 and meta["computed_points"] == 6
    assert meta["provenance"]["versions"]["torch"]
    assert "revision" in meta["provenance"]["git"]
    assert result.outputs.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_computes_only_missing_points(tmp_path):
    log = tmp_path / "calls.txt"
    small = _sweep(toy_points.counting_rows, {"log": str(log)}, {"a": [1, 2]})
    run_sweep(small, tmp_path / "out", progress=False)
    big = _sweep(toy_points.counting_rows, {"log": str(log)}, {"a": [1, 2, 3, 4]})
    result = run_sweep(big, tmp_path / "out", progress=False)
    assert (result.computed, result.resumed) == (2, 2)
    assert log.read_text().split() == ["1", "2", "3", "4"]
    assert result.frame["value"].tolist() == [10, 20, 30, 40]
    again = run_sweep(big, tmp_path / "out", progress=False)
    assert again.computed == 0 and log.read_text().split() == ["1", "2", "3", "4"]
    fresh = run_sweep(big, tmp_path / "out", progress=False, fresh=True)
    assert fresh.computed == 4


def test_csv_is_identical_after_a_failure_and_rerun(tmp_path):
    reference = run_sweep(_sweep(), tmp_path / "ref", progress=False).outputs.csv.read_bytes()
    with pytest.raises(PointError, match=r"^point a=2, b=x failed: RuntimeError: boom$"):
        run_sweep(_sweep(toy_points.failing_rows, {"fail_at": 2}), tmp_path / "f", progress=False)
    partial = pd.read_csv(tmp_path / "f" / "toy.csv")
    assert partial["a"].tolist() == [1, 1]  # the points before the failure are kept
    run_sweep(_sweep(), tmp_path / "again", progress=False)
    assert (tmp_path / "again" / "toy.csv").read_bytes() == reference


def test_processes_give_the_serial_csv(tmp_path):
    serial = run_sweep(_sweep(), tmp_path / "s", progress=False).outputs.csv.read_bytes()
    parallel = run_sweep(_sweep(), tmp_path / "p", workers=2, progress=False).outputs.csv.read_bytes()
    assert parallel == serial


def test_unwritable_or_file_output_folder(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="exists and is not a folder"):
        check_output_dir(target)
    with pytest.raises(ValueError, match="is not writable"):
        check_output_dir(target / "sub")  # cannot create a folder inside a file, even as root
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # permissions are enforced (not root)
            with pytest.raises(ValueError, match="not writable"):
                check_output_dir(locked / "sub")
    finally:
        locked.chmod(0o700)


def test_sweep_validation():
    with pytest.raises(ValueError, match="no points"):
        Sweep("x", [], toy_points.noisy_rows)
    with pytest.raises(ValueError, match="more than once"):
        Sweep("x", [{"a": 1}, {"a": 1}], toy_points.noisy_rows)
    with pytest.raises(ValueError, match="sweep name"):
        Sweep("a/b", [{"a": 1}], toy_points.noisy_rows)


def test_check_output_file_accepts_new_and_existing_files_and_creates_nothing(tmp_path):
    existing = tmp_path / "old.csv"
    existing.write_text("x")
    assert check_output_file(existing, "--out") == existing
    assert check_output_file(tmp_path / "a" / "b" / "new.csv", "--out") == tmp_path / "a" / "b" / "new.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]  # no folder was made


def test_check_output_file_names_the_option_and_the_problem(tmp_path):
    with pytest.raises(ValueError, match=f"--log-csv {tmp_path} is a folder; give a file name"):
        check_output_file(tmp_path, "--log-csv")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match=f"--out {blocker / 'x' / 'y.csv'}: {blocker} is a file"):
        check_output_file(blocker / "x" / "y.csv", "--out")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # permissions are enforced (not root)
            with pytest.raises(ValueError, match=f"folder {locked} is not writable"):
                check_output_file(locked / "new" / "y.csv", "--out")
    finally:
        locked.chmod(0o700)


def test_integer_columns_with_missing_values_are_written_as_integers(tmp_path):
    # a reference point without a hash length beside hashed ones: pandas would store the column as
    # float and write 64.0; the CSV keeps the integers and leaves the missing field empty
    points = [{"a": 1, "k": None}, {"a": 2, "k": 64}, {"a": 3, "k": 256}]
    sweep = Sweep("toy", points, toy_points.counting_rows, context={"log": str(tmp_path / "log")})
    result = run_sweep(sweep, tmp_path / "out", progress=False)
    lines = result.outputs.csv.read_text().splitlines()
    assert lines == ["a,k,value", "1,,10", "2,64,20", "3,256,30"]
    assert result.frame["k"].isna().tolist() == [True, False, False]  # the frame itself is unchanged
    assert pd.read_csv(result.outputs.csv)["k"].tolist()[1:] == [64, 256]
