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

from aimc_lsh.data import load_dataset  # noqa: E402
from aimc_lsh.kernels import HashConfig  # noqa: E402
from aimc_lsh.models import get_backbone  # noqa: E402
from aimc_lsh.nn import fit_projections, hashed_layers, patch_model  # noqa: E402
from aimc_lsh.train import load_checkpoint  # noqa: E402
from tests.shared_files import needs_data_and_models  # noqa: E402

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
    assert 0 <= fc["fitted_residual"] < fc["gaussian_residual"] <= 1
    # centred inputs (the same Gaussian rows): the pixels' and pooled features' means are no longer hashed
    assert (table["centred_rel_err"] < 0.8 * table["gaussian_rel_err"]).all()  # 0.77 / 1.02, 1.20 / 2.76
    # the checked fit's decision, as the library takes it on the same 128 training images
    student = patch_model(get_backbone("digits_cnn"), HashConfig(kernel="learned_projection", hash_length=16,
                                                                 orthogonal=True))  # fmt: skip
    images = load_dataset("digits", train=True, limit=128).tensors()[0]
    checked = fit_projections(student, images, energy=0.9, only_where_better=True)
    assert table["fitted_where_better"].tolist() == [checked[p][0].shape[1] > 0 for p in ("conv", "fc")]


def test_written_model_has_projections_of_the_fitted_rank_and_warm_starts_finetune(fitted, capsys):
    table, out = fitted
    state = load_checkpoint(out / "i.pt")["model_state"]
    config = HashConfig(kernel="learned_projection", hash_length=16, orthogonal=True, seed=0)
    student = patch_model(get_backbone("digits_cnn"), config)

    def ranks() -> dict[str, int]:
        return {
            p: int(torch.linalg.matrix_rank(m.kernel(0, 0).P, rtol=1e-4)) for p, m in hashed_layers(student)
        }

    random_ranks = ranks()
    student.load_state_dict(state)
    assert ranks() == {
        layer: min(rank, 16) for layer, rank in zip(table["layer"], table["rank"], strict=True)
    }
    assert ranks()["fc"] < random_ranks["fc"] == 16  # P = G B^T lives in the fitted subspace
    summary = finetune.main(
        ["--model", "digits_cnn", "--k", "16", "--orthogonal", "--skip", "--epochs", "1", "--no-augment",
         "--quiet", "--threads", "1", "--init-from", str(out / "i.pt")]
    )  # fmt: skip
    assert summary["init_from"] == str(out / "i.pt") and summary["steps"] > 0


def test_finetune_fit_projections_fits_as_the_study_does(tmp_path):
    # the study's --write-init (default 512 training images) and finetune.py --fit-projections start from
    # the same projections, so the two runs train identically
    init = tmp_path / "init.pt"
    projection_init.main(
        ["--model", "digits_cnn", "--k", "16", "--skip", "--threads", "1", "--write-init", str(init)]
    )
    common = ["--model", "digits_cnn", "--k", "16", "--orthogonal", "--skip", "--epochs", "1", "--no-augment",
              "--quiet", "--threads", "1"]  # fmt: skip
    runs = {}
    for name, extra in {"fit": ["--fit-projections", "0.9"], "init": ["--init-from", str(init)]}.items():
        summary = finetune.main([*common, *extra, "--checkpoint", str(tmp_path / f"{name}.pt")])
        runs[name] = (summary, load_checkpoint(tmp_path / f"{name}.pt")["model_state"])
    assert runs["fit"][0]["fit_projections"] == 0.9
    assert runs["fit"][0]["final_accuracy"] == runs["init"][0]["final_accuracy"]
    for key, value in runs["fit"][1].items():
        assert torch.equal(value, runs["init"][1][key]), key


def test_finetune_fit_only_where_better_keeps_the_projections_the_fit_would_worsen(tmp_path):
    # digits_cnn at k = 16 with a 50%-energy subspace: the fit loses in both layers, so the checked fit
    # starts from the projections of a run without one, the unchecked fit does not
    common = ["--model", "digits_cnn", "--k", "16", "--orthogonal", "--skip", "--epochs", "0",
              "--recipe", "ce", "--no-augment", "--quiet", "--threads", "1"]  # fmt: skip
    runs = {"none": [], "checked": ["--fit-projections", "0.5", "--fit-only-where-better"],
            "unchecked": ["--fit-projections", "0.5"]}  # fmt: skip
    states = {}
    for name, extra in runs.items():
        summary = finetune.main([*common, *extra, "--checkpoint", str(tmp_path / f"{name}.pt")])
        assert summary["fit_only_where_better"] is (name == "checked")
        states[name] = load_checkpoint(tmp_path / f"{name}.pt")["model_state"]
    projections = [key for key in states["none"] if key.endswith(".P")]
    assert len(projections) == 2
    assert all(torch.equal(states["checked"][key], states["none"][key]) for key in projections)
    assert not any(torch.equal(states["unchecked"][key], states["none"][key]) for key in projections)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--fit-only-where-better"], "--fit-only-where-better needs --fit-projections ENERGY"),
        (["--fit-projections", "0"], "--fit-projections must be a fraction in \\(0, 1\\]"),
        (
            ["--fit-projections", "0.9", "--conventional"],
            "needs --kernel random_projection or learned_projection",
        ),
        (
            ["--fit-projections", "0.9", "--kernel", "product_quantization"],
            "needs --kernel random_projection",
        ),
        (["--fit-projections", "0.9", "--init-from", "x.pt"], "exclude each other"),
    ],
)
def test_finetune_rejects_fit_projections_where_it_cannot_apply(extra, message, capsys):
    with pytest.raises(SystemExit) as err:
        finetune.main(["--model", "digits_cnn", "--epochs", "1", *extra])
    assert err.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "must be > 0"),
        (["--energy", "0"], "--energy must be a fraction in \\(0, 1\\]"),
        (["--skip", "conv", "fc"], "leaves no layer of digits_cnn to hash"),
        (["--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
        (["--model", "resnet99"], "unknown backbone 'resnet99'; registered: "),
    ],
)
def test_bad_options_stop_with_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as err:
        projection_init.main([*DIGITS, *extra])
    assert err.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@needs_data_and_models
def test_corrupt_cifar_data_stops_with_one_line(tmp_path, capsys):
    from tests.data.conftest import write_cifar10

    folder, _, _ = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x04")
    with pytest.raises(SystemExit) as err:
        projection_init.main(["--images", "8", "--test-images", "4", "--data-root", str(tmp_path)])
    assert err.value.code == 2
    assert f"{folder / 'test_batch'} is a truncated or corrupt pickle" in capsys.readouterr().err
