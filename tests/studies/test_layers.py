"""The layer-sensitivity study: one layer exact (or only one hashed) at a time, evaluated digitally."""

import pandas as pd
import pytest
import torch

from aimc_lsh.data import calibration_images
from aimc_lsh.eval import evaluate
from aimc_lsh.kernels import HashConfig
from aimc_lsh.nn import hashed_layers, patch_model, to_digital
from aimc_lsh.studies.layers import main
from aimc_lsh.studies.workload import eval_batches, pretrained_model
from aimc_lsh.train import model_from_checkpoint, recalibrate_bn
from tests.shared_files import DATA, MODELS, needs_data_and_models

DIGITS = [
    "--dataset", "digits", "--hash-length", "32", "--recalibrate-bn", "0", "--no-progress", "--workers", "1",
]  # fmt: skip
DIGITS_CONTEXT = {"dataset": "digits", "data_root": None, "limit": None, "batch_size": 128}


def _run(tmp_path, argv, name):
    assert main([*argv, "--out", str(tmp_path)]) == 0
    return pd.read_csv(tmp_path / f"{name}.csv")


def _digits_accuracy(checkpoint, exact):
    """Accuracy of the checkpoint's digits model with the layers ``exact`` made digital, computed here."""
    model = model_from_checkpoint(
        checkpoint, pretrained_model({"backbone": "digits_cnn", "models_root": None})
    )
    return evaluate(to_digital(model, only=exact), eval_batches(DIGITS_CONTEXT), progress=False).accuracy


def _accuracy(frame, layer):
    return frame.loc[frame["layer"] == layer, "accuracy"].item()


def test_digits_one_layer_exact_matches_evaluating_that_model_directly(tmp_path, capsys):
    frame = _run(tmp_path, DIGITS, "layers_digital_one_digits")
    assert frame["layer"].tolist() == ["none", "conv", "fc"]
    assert frame["hashed_layers"].tolist() == [2, 1, 1]
    assert frame["hash_length"].isna().tolist() == [True, False, False]  # the reference row has no layer
    assert frame["hash_length"].tolist()[1:] == [32, 32] and frame["patch_length"].tolist()[1:] == [9, 256]
    checkpoint = frame["checkpoint"].iloc[0]
    for layer, exact in (("none", []), ("conv", ["conv"]), ("fc", ["fc"])):
        assert _accuracy(frame, layer) == _digits_accuracy(checkpoint, exact)
    # the hashed classifier costs this small model most of its accuracy (measured: 44% -> 81% exact)
    assert _accuracy(frame, "fc") > _accuracy(frame, "none") + 0.2
    capsys.readouterr()
    assert main([*DIGITS, "--out", str(tmp_path)]) == 0
    assert "(0 computed, 3 resumed)" in capsys.readouterr().err


def test_digits_one_layer_hashed_reference_is_the_digital_model(tmp_path):
    frame = _run(tmp_path, [*DIGITS, "--mode", "hashed_one", "--layers", "fc"], "layers_hashed_one_digits")
    assert frame["layer"].tolist() == ["none", "fc"] and frame["hashed_layers"].tolist() == [0, 1]
    checkpoint = frame["checkpoint"].iloc[0]
    assert _accuracy(frame, "none") == _digits_accuracy(checkpoint, ["conv", "fc"])
    assert _accuracy(frame, "fc") == _digits_accuracy(checkpoint, ["conv"])
    assert (tmp_path / "layers_hashed_one_digits.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layers", "conv", "nope"], "--layers names no hashed layer of this model: nope; hashed layers: conv, fc"),  # noqa: E501
        (["--seeds", "0,1"], "with --recalibrate-bn 0 every seed gives the same numbers"),
        (["--recalibrate-bn", "-1"], "--recalibrate-bn must be a number of training images >= 0, got -1"),
        (["--recalibrate-bn", "64"], "has no BatchNorm layers to re-estimate; pass --recalibrate-bn 0"),
        (["--hash-length", "0"], "--hash-length must be a positive integer, got 0"),
        (["--kernel", "nope"], "unknown --kernel 'nope'; allowed:"),
        (["--checkpoint", "missing.pt"], "checkpoint missing.pt not found"),
    ],
)  # fmt: skip
def test_bad_options_are_named(tmp_path, capsys, extra, message):
    assert main([*DIGITS, *extra, "--out", str(tmp_path)]) == 2  # the later of two values wins
    assert message in capsys.readouterr().err


@needs_data_and_models
def test_cifar_one_layer_exact_with_batchnorm_reestimated_matches_a_direct_computation(tmp_path):
    argv = [
        "--checkpoint", "none", "--kernel", "learned_projection", "--hash-length", "16", "--limit", "32",
        "--layers", "layer3.2.conv2", "--recalibrate-bn", "64", "--seeds", "0,1", "--no-progress",
        "--workers", "1", "--data-root", DATA, "--models-root", MODELS,
    ]  # fmt: skip
    frame = _run(tmp_path, argv, "layers_digital_one_cifar10")
    assert frame["layer"].tolist() == ["none", "none", "layer3.2.conv2", "layer3.2.conv2"]
    assert frame["bn_seed"].tolist() == [0, 1, 0, 1] and frame["patch_length"].tolist()[2:] == [576, 576]
    assert frame["hashed_layers"].tolist() == [20, 20, 19, 19]
    context = {"dataset": "cifar10", "data_root": DATA, "limit": 32, "batch_size": 128}
    backbone = {"backbone": "cifar10_resnet20", "models_root": MODELS}
    for seed in (0, 1):
        model = patch_model(
            pretrained_model(backbone), HashConfig(kernel="learned_projection", hash_length=16)
        )
        model = to_digital(model, only=["layer3.2.conv2"]).eval()
        assert len(list(hashed_layers(model))) == 19  # conv1, 18 block convolutions, linear: one exact
        recalibrate_bn(model, calibration_images("cifar10", count=64, root=DATA, seed=seed))
        with torch.no_grad():
            expected = evaluate(model, eval_batches(context), progress=False).accuracy
        row = frame[(frame["layer"] == "layer3.2.conv2") & (frame["bn_seed"] == seed)]
        assert row["accuracy"].item() == expected
