"""studies/projection_init.py: per-layer SimHash quality of random, orthogonal and data-fitted projections."""

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))

import finetune  # noqa: E402
import projection_init  # noqa: E402

from aimc_lsh.kernels import HashConfig  # noqa: E402
from aimc_lsh.models import get_backbone  # noqa: E402
from aimc_lsh.nn import hashed_layers, patch_model  # noqa: E402
from aimc_lsh.train import load_checkpoint  # noqa: E402

DIGITS = ["--model", "digits_cnn", "--k", "16", "--images", "128", "--test-images", "16", "--threads", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    out = tmp_path_factory.mktemp("projection_init")
    outputs = ["--out", str(out / "q.csv"), "--write-init", str(out / "i.pt")]
    table = projection_init.main([*DIGITS, "--skip", *outputs])
    return table, out


def test_table_reports_every_hashed_layer_and_the_fitted_projection_estimates_better(fitted):
    table, out = fitted
    assert table.equals(pd.read_csv(out / "q.csv"))
    assert table["layer"].tolist() == ["conv", "fc"]
    assert table["d"].tolist() == [9, 256] and (table["rank"] <= table["d"]).all()
    # the classifier's 256 inputs live in a few directions: the fitted projection's estimate is far closer
    fc = table.set_index("layer").loc["fc"]
    assert fc["fitted_rel_err"] < 0.5 * fc["gaussian_rel_err"]
    assert fc["fitted_corr"] > fc["gaussian_corr"]


def test_written_model_has_projections_of_the_fitted_rank_and_warm_starts_finetune(fitted, capsys):
    table, out = fitted
    state = load_checkpoint(out / "i.pt")["model_state"]
    config = HashConfig(kernel="learned_projection", hash_length=16, orthogonal=True, seed=0)
    student = patch_model(get_backbone("digits_cnn"), config)
    random_ranks = {p: int(torch.linalg.matrix_rank(m.kernel(0, 0).P)) for p, m in hashed_layers(student)}
    student.load_state_dict(state)
    ranks = {p: int(torch.linalg.matrix_rank(m.kernel(0, 0).P)) for p, m in hashed_layers(student)}
    assert ranks == dict(zip(table["layer"], table["rank"], strict=True))
    assert ranks["fc"] < random_ranks["fc"] == 16  # P = G B^T lives in the fitted subspace
    summary = finetune.main(
        ["--model", "digits_cnn", "--k", "16", "--orthogonal", "--skip", "--epochs", "1", "--no-augment",
         "--quiet", "--threads", "1", "--init-from", str(out / "i.pt")]
    )  # fmt: skip
    assert summary["init_from"] == str(out / "i.pt") and summary["steps"] > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "must be > 0"),
        (["--energy", "0"], "--energy must be a fraction in \\(0, 1\\]"),
        (["--skip", "conv", "fc"], "leaves no layer of digits_cnn to hash"),
    ],
)
def test_bad_options_stop_with_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as err:
        projection_init.main([*DIGITS, *extra])
    assert err.value.code == 2
    assert re.search(message, capsys.readouterr().err)
