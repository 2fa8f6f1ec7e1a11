"""studies/merge_neurons.py on digits: rows, counts and the CSV; one-line errors for bad options."""

import csv
import importlib.util
from pathlib import Path

import pytest

from aimc_lsh.data import load_dataset, make_loader
from aimc_lsh.eval import evaluate
from aimc_lsh.train import load_checkpoint, model_from_checkpoint
from tests.studies.conftest import STUDIES

SCRIPT = STUDIES / "merge_neurons.py"


def _load():
    spec = importlib.util.spec_from_file_location("merge_neurons", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_rows_and_csv(tmp_path, capsys):
    out = tmp_path / "merge.csv"
    argv = ["--dataset", "digits", "--ratios", "0.5", "--finetune-steps", "4", "--merge-aware-steps", "4"]
    save = ["--save-dir", str(tmp_path / "nets")]
    rows = _load().main([*argv, "--rehash-interval", "2", "--no-progress", "--out", str(out), *save])
    assert [r["method"] for r in rows] == ["merge", "merge+finetune", "merge_aware", "merge_aware+finetune"]
    for row in rows:
        assert (row["channels_before"], row["channels_after"], row["chains"]) == (16, 8, 1)
        # conv 16 -> 8 channels: 8 x (9 + 1) conv parameters and 8 x 16 x 10 linear weights fewer
        assert row["params_before"] - row["params_after"] == 8 * 10 + 8 * 16 * 10
        assert row["flop_reduction"] == 0.5 and row["n_test"] == 449
        assert 0.5 < row["accuracy_after"] <= 1.0
    assert rows[1]["finetune_steps"] == 4 and rows[2]["merge_aware_steps"] == 4
    assert "ratio 0.5 merge: channels 16 -> 8" in capsys.readouterr().out
    with out.open() as f:
        written = list(csv.DictReader(f))
    assert [r["method"] for r in written] == [r["method"] for r in rows]
    assert float(written[0]["accuracy_after"]) == rows[0]["accuracy_after"]
    # every row's network is saved with its narrower widths and rebuilds with the row's accuracy
    assert [Path(r["checkpoint"]).name for r in rows] == [
        "merge_0.5.pt", "merge+finetune_0.5.pt", "merge_aware_0.5.pt", "merge_aware+finetune_0.5.pt",
    ]  # fmt: skip
    tuned = model_from_checkpoint(rows[1]["checkpoint"])
    assert (
        tuned.conv.out_channels == 8 and load_checkpoint(rows[1]["checkpoint"])["widths"]["fc"]["in"] == 128
    )
    assert (
        evaluate(
            tuned, make_loader(load_dataset("digits", train=False), batch_size=256), progress=False
        ).accuracy
        == rows[1]["accuracy_after"]
    )


def test_help_documents_every_option_and_bad_options_fail_before_any_work():
    module = _load()
    help_text = module.build_parser().format_help()
    for action in module.build_parser()._actions:
        assert action.help, f"{action.option_strings} has no help text"
    assert "--merge-aware-steps" in help_text and "AIMC_LSH_DATA" in help_text
    with pytest.raises(ValueError, match=r"--ratios must be fractions in \(0, 1\], got \[0.0\]"):
        module.main(["--dataset", "digits", "--ratios", "0"])
    with pytest.raises(ValueError, match="--rehash-interval must be >= 1"):
        module.main(["--dataset", "digits", "--rehash-interval", "0"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--eval-limit", "0"], "--eval-limit must be >= 1, got 0"),
        (["--train-limit", "-4"], "--train-limit must be >= 1, got -4"),
        (["--kd-alpha", "5"], r"--kd-alpha must be a number in \[0, 1\], got 5.0"),
        (["--rehash-threshold", "1"], r"--rehash-threshold must be a fraction of bits in \[0, 1\), got 1.0"),
        (["--finetune-lr", "nan"], "--finetune-lr must be a finite number >= 0, got nan"),
        (["--cohesion", "-1"], "--cohesion must be a finite number >= 0, got -1.0"),
    ],
)
def test_training_options_and_limits_are_checked_before_any_work(extra, message, capsys):
    with pytest.raises(ValueError, match=message):
        _load().main(["--dataset", "digits", *extra])
    assert capsys.readouterr().out == ""  # nothing was evaluated or merged
