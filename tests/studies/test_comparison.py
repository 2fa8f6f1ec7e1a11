"""The kernel comparison on the embedded digits benchmark (real training, real tiles, a few seconds a row)."""

import json
import subprocess

import pytest

from aimc_lsh.studies.comparison import ROWS, comparison_table
from aimc_lsh.studies.comparison_cli import main
from tests.studies.conftest import script

ARGS = ["--dataset", "digits", "--epochs", "1", "--seeds", "0,1", "--calib-images", "256"]


def _timeless(record):
    return {k: v for k, v in record.items() if k != "training"} | {"steps": record["training"]["steps"]}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("comparison")
    assert main([*ARGS, "--rows", "fp32,pq,merge50", "--out", str(out)]) == 0
    return out


def test_rows_measure_accuracy_size_and_energy(compared):
    records = {n: json.loads((compared / f"{n}.json").read_text()) for n in ("fp32", "pq", "merge50")}
    fp32, pq, merged = records["fp32"], records["pq"], records["merge50"]
    assert fp32["digital_accuracy"] > 0.95 and fp32["t0"] is None and fp32["training"]["steps"] == 0
    # merging removes parameters and dense FLOPs; PQ keeps the architecture and adds codebooks
    assert merged["params"] < fp32["params"] and merged["dense_flops"] < fp32["dense_flops"]
    assert pq["dense_flops"] == fp32["dense_flops"] and pq["params"] > fp32["params"]
    for record in (pq, merged):
        assert record["training"]["steps"] > 0
        assert len(record["t0"]["values"]) == 2 and len(record["drifted"]["values"]) == 2
        assert 0.1 < record["t0"]["mean"] <= 1.0 and record["energy_nJ"] > 0
    # a PQ model on PCM tiles is not its digital self: programming noise changes some predictions
    assert pq["t0"]["values"] != [pq["digital_accuracy"]] * 2
    table = (compared / "comparison_pcm_digits.md").read_text()
    assert table == comparison_table(list(records.values()))
    assert "| merge50 |" in table and "± " in table


def test_rows_are_reused_and_runs_are_reproducible(compared, tmp_path):
    edited = json.loads((compared / "fp32.json").read_text())
    edited["description"] = "edited by the test"
    (compared / "fp32.json").write_text(json.dumps(edited))
    assert main([*ARGS, "--rows", "fp32", "--out", str(compared)]) == 0
    assert "edited by the test" in (compared / "comparison_pcm_digits.md").read_text()  # not recomputed
    assert main([*ARGS, "--rows", "pq", "--out", str(tmp_path)]) == 0
    again = json.loads((tmp_path / "pq.json").read_text())
    assert _timeless(again) == _timeless(json.loads((compared / "pq.json").read_text()))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--rows", "fp32,lut"], "unknown or empty --rows"),
        (["--time=-1d"], "--time"),
        (["--time=1d,2d"], "--time"),
        (["--device", "unobtainium"], "unobtainium"),
        (["--budget", "-2"], "--budget"),
    ],
)
def test_bad_input_exits_2_with_one_line_before_compute(extra, message, tmp_path):
    run = subprocess.run(
        [*script("kernel_comparison.py"), *ARGS, *extra, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "nan"], "--budget must be a finite number >= 0 and --epochs one > 0, got nan"),
        (["--budget", "inf"], "--budget must be a finite number >= 0"),
        (["--epochs", "nan"], "--epochs one > 0, got 4.0 and nan"),
        (["--train-limit", "0"], "--train-limit must be a positive integer, got 0"),
        (["--test-limit", "-3"], "--test-limit must be a positive integer, got -3"),
    ],
)
def test_non_finite_budgets_and_empty_limits_are_named(extra, message, tmp_path, capsys):
    code = main(["--dataset", "digits", *extra, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err, err
    assert not list(tmp_path.glob("*.json"))


def test_every_row_has_a_description():
    assert set(ROWS) == {"fp32", "conventional", "lsh", "pq", "merge75", "merge50"}
    assert all(spec.description for spec in ROWS.values())


def test_drift_reference_reaches_the_hardware_columns(compared, tmp_path):
    assert json.loads((compared / "pq.json").read_text())["drift_reference"] == "random_sign"
    out = tmp_path / "one_hot"
    assert main([*ARGS, "--rows", "conventional", "--drift-reference", "one_hot", "--out", str(out)]) == 0
    assert json.loads((out / "conventional.json").read_text())["drift_reference"] == "one_hot"
    from aimc_lsh.hardware import analog_layers
    from aimc_lsh.models import DigitsNet
    from aimc_lsh.studies.comparison import ComparisonSetup, on_device

    setup = ComparisonSetup(teacher=None, train_set=None, test_set=None, drift_reference="one_hot")
    hardware = on_device("conventional", DigitsNet(), setup)
    assert {layer.config.drift_reference for _, layer in analog_layers(hardware)} == {"one_hot"}


def test_recovery_crops_like_the_datasets_training():
    """The 8x8 digits train with a 1-pixel crop padding (4 would erase them), as finetune.py does."""
    from aimc_lsh.studies.comparison import ComparisonSetup
    from aimc_lsh.studies.comparison_cli import _setup, build_parser

    setup, _rows = _setup(build_parser().parse_args(["--dataset", "digits", "--rows", "fp32"]))
    assert setup.crop_padding == 1 and ComparisonSetup(None, None, None).crop_padding == 4
