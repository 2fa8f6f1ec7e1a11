import csv
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))

import finetune  # noqa: E402

from aimc_lsh.train import load_checkpoint  # noqa: E402
from tests.shared_files import needs_data_and_models  # noqa: E402


@pytest.mark.slow
def test_cli_trains_digits_and_resumes(tmp_path):
    torch.set_num_threads(1)
    common = [
        "--model",
        "digits_cnn",
        "--k",
        "out",
        "--kernel",
        "learned_projection",
        "--epochs",
        "1",
        "--no-augment",
        "--quiet",
        "--recipe",
        "calib_kd",
        "--calib-images",
        "64",
        "--calib-steps",
        "3",
        "--checkpoint",
        str(tmp_path / "c.pt"),
        "--log-csv",
        str(tmp_path / "log.csv"),
        "--summary-json",
        str(tmp_path / "s.json"),
    ]
    summary = finetune.main(common)
    assert summary["steps"] == 1348 // 64
    assert summary["fp32_accuracy"] > 0.9 and summary["final_accuracy"] is not None
    assert json.loads((tmp_path / "s.json").read_text())["steps"] == summary["steps"]
    ckpt = load_checkpoint(tmp_path / "c.pt")
    assert ckpt["layers"]["conv"]["config"]["hash_length"] == 16  # k = out-channels
    assert ckpt["layers"]["fc"]["config"]["hash_length"] == 10
    assert summary["bitbybit_score"] is not None
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert rows[0]["phase"] == "calibrated" and rows[-1]["phase"] == "train"
    again = finetune.main([*common, "--resume"])  # finished run: nothing more to do
    assert again["steps"] == summary["steps"]


def test_cli_options_build_the_train_config():
    args = finetune.build_parser().parse_args(["--recipe", "ce", "--time-budget", "2", "--bn-mode", "freeze"])
    config = finetune.train_config_from_args(args)
    assert config.time_budget_s == 120.0 and config.bn_mode == "freeze" and config.kd_alpha == 0.0


def test_cli_conventional_hwa_options(tmp_path):
    torch.set_num_threads(1)
    common = ["--model", "digits_cnn", "--conventional", "--recipe", "ce", "--epochs", "1", "--no-augment",
              "--quiet", "--device-profile", "pcm", "--hwa-time", "3600"]  # fmt: skip
    device = finetune.main([*common, "--weight-noise", "device", "--checkpoint", str(tmp_path / "d.pt")])
    assert device["noise"]["weight_device"] == "pcm" and device["noise"]["weight_t_inference"] == 3600.0
    assert device["noise"]["weight_clip_sigma"] == finetune.DEFAULT_WEIGHT_CLIP_SIGMA == 3.0  # the HWA recipe
    assert load_checkpoint(tmp_path / "d.pt")["noise"]["weight_device"] == "pcm"
    additive = finetune.main([*common, "--weight-noise", "additive", "--hwa-scale", "2"])
    assert additive["noise"]["weight_device"] is None
    assert additive["noise"]["weight_std"] == pytest.approx(2 * device["noise"]["weight_std"])
    in_loop = finetune.main([*common, "--checkpoint", str(tmp_path / "h.pt")])  # the default
    assert in_loop["noise"]["hardware_profile"] == "pcm" and in_loop["noise"]["weight_device"] is None
    assert in_loop["noise"]["weight_std"] == 0.0  # the arrays draw the errors: no sampled noise on top
    assert in_loop["noise"]["weight_t_inference"] == 3600.0
    assert in_loop["noise"]["hardware_drift_reference"] == "random_sign"
    one_hot = finetune.main(
        [*common, "--hwa-drift-reference", "one_hot", "--checkpoint", str(tmp_path / "o.pt")]
    )
    assert one_hot["noise"]["hardware_drift_reference"] == "one_hot"
    plain = finetune.main([*common[:-4], "--checkpoint", str(tmp_path / "p.pt")])
    assert plain["noise"] is None
    clipped = finetune.main([*common[:-4], "--device-profile", "ideal", "--weight-clip", "1",
                             "--checkpoint", str(tmp_path / "c.pt")])  # fmt: skip
    assert clipped["noise"]["weight_clip_sigma"] == 1.0 and clipped["noise"]["weight_device"] is None
    state = load_checkpoint(tmp_path / "c.pt")["model_state"]
    for name in ("conv.weight", "fc.weight"):  # clipped at 1 std after every step: no tails left
        assert float(state[name].abs().max() / state[name].std()) < 1.6, name
    with pytest.raises(SystemExit):
        finetune.main([*common[:-4], "--weight-clip", "3"])
    # the noise reaches the training steps: same seed and data, different weights
    trained = {n: load_checkpoint(tmp_path / f"{n}.pt")["model_state"]["conv.weight"] for n in "dhop"}
    assert not torch.allclose(trained["d"], trained["p"]) and not torch.allclose(trained["h"], trained["p"])
    assert not torch.allclose(trained["o"], trained["h"])  # the arrays read drift with the other read-out
    # a hashed model's HWA runs its hashed layers on the arrays (default) or samples their noise
    hashed_args = ["--model", "digits_cnn", "--k", "16", "--recipe", "ce", "--epochs", "1", "--no-augment",
                   "--quiet", "--device-profile", "pcm"]  # fmt: skip
    hashed = finetune.main([*hashed_args, "--hwa-placement", "projection_on_array"])
    assert hashed["noise"]["hardware_profile"] == "pcm" and hashed["noise"]["code_std"] == 0.0
    assert hashed["noise"]["hardware_placement"] == "projection_on_array"
    assert hashed["noise"]["weight_device"] is None and hashed["noise"]["weight_clip_sigma"] == 0.0
    sampled = finetune.main([*hashed_args, "--weight-noise", "additive"])
    assert sampled["noise"]["code_std"] > 0 and sampled["noise"]["hardware_profile"] is None
    with pytest.raises(SystemExit):
        finetune.main([*hashed_args, "--weight-noise", "device"])


def test_cli_warm_start_from_a_checkpoint(tmp_path):
    torch.set_num_threads(1)
    common = ["--model", "digits_cnn", "--k", "32", "--no-augment", "--quiet", "--recipe", "ce"]
    first = finetune.main([*common, "--epochs", "1", "--checkpoint", str(tmp_path / "a.pt")])
    again = finetune.main([*common, "--epochs", "0", "--init-from", str(tmp_path / "a.pt")])
    assert again["initial_accuracy"] == pytest.approx(first["final_accuracy"])
    assert again["prior_steps"] == first["steps"] and again["prior_cpu_s"] is not None


def test_cli_calibrates_and_fine_tunes_a_pq_model(tmp_path):
    torch.set_num_threads(1)
    summary = finetune.main(
        ["--model", "digits_cnn", "--kernel", "product_quantization", "--k", "16", "--recipe", "kd",
         "--epochs", "2", "--no-augment", "--quiet", "--checkpoint", str(tmp_path / "pq.pt")]
    )  # fmt: skip
    # codebooks came from k-means (an uncalibrated PQ layer refuses to run), then training helped
    assert summary["initial_accuracy"] > 0.5
    assert summary["final_accuracy"] > summary["initial_accuracy"]
    layers = load_checkpoint(tmp_path / "pq.pt")["layers"]
    assert layers and all(e["config"]["kernel"] == "product_quantization" for e in layers.values())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sa-offset", "0.1"], "give --device-profile"),
        (["--sa-noise", "0.1", "--device-profile", "pcm", "--conventional"], "no --conventional"),
        (["--sa-offset", "0.1", "--device-profile", "pcm"], "own comparators"),  # the loop's arrays have them
        (["--sa-offset", "-0.1", "--device-profile", "pcm", "--weight-noise", "additive"], "must be >= 0"),
        (["--sa-noise", "nan", "--device-profile", "ideal"], "must be >= 0"),
        (["--weight-clip", "3"], "--device-profile"),
    ],
)
def test_cli_rejects_hwa_options_it_would_ignore(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--model", "digits_cnn", "--k", "16", "--epochs", "1", "--quiet", *extra])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_samples_sense_amp_noise_where_asked(tmp_path):
    torch.set_num_threads(1)
    args = ["--model", "digits_cnn", "--k", "16", "--recipe", "ce", "--epochs", "1", "--no-augment",
            "--quiet"]  # fmt: skip
    additive = finetune.main([*args, "--device-profile", "pcm", "--weight-noise", "additive",
                              "--sa-offset", "0.2", "--sa-noise", "0.1", "--hwa-scale", "2"])  # fmt: skip
    assert additive["noise"]["sa_offset_std"] == pytest.approx(0.4)
    assert additive["noise"]["sa_noise_std"] == pytest.approx(0.2)
    ideal = finetune.main([*args, "--device-profile", "ideal", "--sa-offset", "0.2"])
    assert ideal["noise"]["sa_offset_std"] == pytest.approx(0.2)
    assert ideal["noise"]["hardware_profile"] is None  # ideal: sampled noise, no arrays


def test_cli_feature_distillation_options(capsys):
    args = finetune.build_parser().parse_args(
        ["--feature-kd", "2", "--feature-kd-layers", "layer1", "layer3"]
    )
    config = finetune.train_config_from_args(args)
    assert config.feature_kd == 2.0 and config.feature_kd_layers == ("layer1", "layer3")
    assert finetune.train_config_from_args(finetune.build_parser().parse_args([])).feature_kd == 0.0
    common = ["--model", "digits_cnn", "--k", "16", "--epochs", "1", "--quiet"]
    for extra, message in (
        (["--feature-kd", "-1"], "feature_kd must be a non-negative number"),  # before any data is loaded
        (["--feature-kd", "1", "--feature-kd-layers", "conv", "layer1"], "--feature-kd-layers: no module"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            finetune.main([*common, *extra])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_cli_says_how_to_provide_missing_cifar_data(tmp_path, monkeypatch, capsys):
    from tests.data.conftest import write_cifar10

    write_cifar10(tmp_path / "test_only")
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path / "cache"))  # nothing cached
    common = ["--k", "16", "--epochs", "1", "--quiet"]
    for extra, message in (
        (["--no-download"], "downloading is off (--no-download)"),
        (["--data-root", str(tmp_path / "nowhere")], "CIFAR-10 not found"),  # a named root: no download
        (
            ["--data-root", str(tmp_path / "test_only"), "--train-root", str(tmp_path / "nowhere")],
            "not found",
        ),
    ):
        with pytest.raises(SystemExit) as exit_info:
            finetune.main([*common, *extra])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "AIMC_LSH_DATA" in err
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "cache" / "data").exists()


def test_cli_time_budget_alone_sets_the_length():
    parse = finetune.build_parser().parse_args
    budget_only = finetune.train_config_from_args(parse(["--time-budget", "30"]))
    assert budget_only.time_budget_s == 1800.0 and budget_only.epochs == finetune.BUDGET_ONLY_EPOCHS >= 1000
    both = finetune.train_config_from_args(parse(["--time-budget", "30", "--epochs", "2"]))
    assert both.time_budget_s == 1800.0 and both.epochs == 2.0
    assert finetune.train_config_from_args(parse([])).epochs == 10.0  # TrainConfig's default
    assert finetune.train_config_from_args(parse(["--time-budget", "5", "--recipe", "calib"])).epochs == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "argument --k: must be a positive integer or 'out', got '0'"),
        (["--k", "abc"], "argument --k: must be a positive integer or 'out', got 'abc'"),
        (["--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
        (["--train-limit", "-1"], "argument --train-limit: must be a positive integer, got '-1'"),
        (["--kernel", "simhash"], "unknown kernel 'simhash'; registered kernels: "),
        (["--ste", "sigmoid"], "unknown ste 'sigmoid'; allowed: identity, clipped"),
        (["--model", "resnet99"], "unknown backbone 'resnet99'; registered: "),
        (["--device", "tpu"], "unknown --device 'tpu'; allowed: cpu, cuda or cuda:N"),
        (
            ["--device-profile", "flash"],
            "unknown --device-profile 'flash'; allowed: ideal, pcm, hermes, reram",
        ),
        (["--device-profile", "pcm", "--hwa-time", "0"], "--hwa-time 0 (--device-profile pcm): t_inference"),
        (["--device-profile", "reram", "--hwa-time", "1000"], "has no data at t_inference = 1000 s"),
        (["--device-profile", "pcm", "--hwa-scale", "-1"], "--hwa-scale must be a finite number >= 0"),
        (["--skip", "conv9"], "skip names no Linear/Conv2d layer: conv9"),
        (["--holdout-root", "x"], "--holdout-root only decides the final BatchNorm refresh"),
        (["--holdout-root", "x", "--final-bn-images", "64"], "--holdout-root needs a CIFAR dataset"),
        (["--final-bn-images", "-1"], "final_bn_images must be a non-negative int, got -1"),
    ],
)
def test_cli_names_a_bad_model_device_or_count_in_one_line(extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--model", "digits_cnn", "--k", "16", "--epochs", "1", "--quiet", *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x80\x02}q\x00(X"])
def test_cli_names_a_corrupt_init_checkpoint(tmp_path, capsys, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(
            ["--model", "digits_cnn", "--k", "16", "--epochs", "1", "--quiet", "--init-from", str(path)]
        )
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert f"--init-from {path}: cannot load {path}" in err and "truncated, corrupt" in err, err


@needs_data_and_models
def test_cli_names_a_truncated_cifar_batch(tmp_path, capsys):
    from tests.data.conftest import write_cifar10

    folder, _, _ = write_cifar10(tmp_path)
    test = folder / "test_batch"
    test.write_bytes(test.read_bytes()[:100])
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--k", "16", "--epochs", "1", "--quiet", "--data-root", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{test} is a truncated or corrupt pickle" in err, err


def _train_with_layer_option(common, flag, key, checkpoint, suffix):
    """Train with ``flag``, check the summary and each layer's config; return entries ending in ``suffix``."""
    summary = finetune.main([*common, flag, "--checkpoint", str(checkpoint)])
    assert summary[key] is True and summary["steps"] > 0
    ckpt = load_checkpoint(checkpoint)
    assert all(entry["config"][key] for entry in ckpt["layers"].values())
    return summary, ckpt, {k: v for k, v in ckpt["model_state"].items() if k.endswith(suffix)}


def _warm_start(common, flag, checkpoint):
    """A zero-step run from ``checkpoint`` (its accuracy before training is the rebuilt model's)."""
    return finetune.main([*common, flag, "--epochs", "0", "--recipe", "ce", "--init-from", str(checkpoint)])


def test_cli_center_inputs_calibrates_references_that_the_checkpoint_keeps(tmp_path):
    common = ["--model", "digits_cnn", "--k", "16", "--kernel", "learned_projection", "--epochs", "1",
              "--no-augment", "--quiet", "--threads", "1"]  # fmt: skip
    path = tmp_path / "c.pt"
    summary, ckpt, centers = _train_with_layer_option(
        common, "--center-inputs", "center_inputs", path, "input_center"
    )
    assert set(centers) == {f"{layer}.input_center" for layer in ckpt["layers"]}
    assert all(bool((v > 0).any()) for v in centers.values())  # pixel / post-ReLU means
    # a warm start loads the checkpoint's references instead of measuring new ones
    assert _warm_start(common, "--center-inputs", path)["initial_accuracy"] == summary["final_accuracy"]
    # and a run without --center-inputs cannot load them
    with pytest.raises(SystemExit):
        finetune.main([*common, "--init-from", str(path)])


def test_cli_comparator_thresholds_are_trained_and_kept_by_the_checkpoint(tmp_path):
    common = ["--model", "digits_cnn", "--k", "16", "--kernel", "random_projection", "--epochs", "1",
              "--no-augment", "--quiet", "--threads", "1", "--lr-projection", "1e-2"]  # fmt: skip
    path = tmp_path / "t.pt"
    flag = "--comparator-thresholds"
    summary, ckpt, thresholds = _train_with_layer_option(
        common, flag, "comparator_thresholds", path, "threshold"
    )
    assert set(thresholds) == {f"{layer}.kernels.0.threshold" for layer in ckpt["layers"]}
    assert all(bool((v != 0).all()) for v in thresholds.values())  # trained away from plain SimHash
    # the model rebuilt from the checkpoint, thresholds included, gives the accuracy the run ended with
    assert _warm_start(common, flag, path)["initial_accuracy"] == summary["final_accuracy"]


def test_cli_input_tiles_give_each_tile_its_projection_and_the_checkpoint_keeps_them(tmp_path):
    common = ["--model", "digits_cnn", "--k", "16", "--kernel", "learned_projection", "--epochs", "1",
              "--no-augment", "--quiet", "--threads", "1"]  # fmt: skip
    path = tmp_path / "tiles.pt"
    summary = finetune.main([*common, "--input-tile-size", "64", "--checkpoint", str(path)])
    assert summary["input_tile_size"] == 64 and summary["steps"] > 0
    ckpt = load_checkpoint(path)
    tiles = {name: entry["config"]["input_tile_size"] for name, entry in ckpt["layers"].items()}
    assert tiles == {"conv": 64, "fc": 64}
    projections = sorted(k for k in ckpt["model_state"] if k.endswith(".P"))
    # the convolution has one input channel (one tile); the classifier's 256 features make four tiles
    assert projections == ["conv.kernels.0.P", *(f"fc.kernels.{i}.P" for i in range(4))]
    assert ckpt["model_state"]["fc.kernels.3.P"].shape == (16, 64)
    # rebuilt from the checkpoint with the same option, the model scores what the run ended with
    warm = _warm_start([*common, "--input-tile-size", "64"], "--quiet", path)
    assert warm["initial_accuracy"] == summary["final_accuracy"]
    # and a model without the tiles cannot load them
    with pytest.raises(SystemExit):
        finetune.main([*common, "--init-from", str(path)])


def test_cli_bfloat16_products_train_the_tiled_layers_and_evaluate_in_float32(tmp_path, capsys):
    common = ["--model", "digits_cnn", "--k", "16", "--kernel", "learned_projection", "--epochs", "1",
              "--no-augment", "--quiet", "--threads", "1", "--input-tile-size", "64"]  # fmt: skip
    runs = {}
    for dtype in ("float32", "bfloat16"):
        path = tmp_path / f"{dtype}.pt"
        summary = finetune.main([*common, "--product-dtype", dtype, "--checkpoint", str(path)])
        ckpt = load_checkpoint(path)
        assert summary["product_dtype"] == ckpt["train_config"]["product_dtype"] == dtype
        runs[dtype] = summary, ckpt
    (summary, ckpt), (_, reference) = runs["bfloat16"], runs["float32"]
    assert summary["steps"] == runs["float32"][0]["steps"] > 0
    # the classifier's four tiles trained through bfloat16 products: the same seed, other weights
    assert not torch.equal(ckpt["model_state"]["fc.kernels.0.P"], reference["model_state"]["fc.kernels.0.P"])
    # and the final evaluation is a float32 one: a warm start from the checkpoint scores the same
    warm = _warm_start(common, "--quiet", tmp_path / "bfloat16.pt")
    assert warm["initial_accuracy"] == summary["final_accuracy"]
    with pytest.raises(SystemExit) as exit_info:
        finetune.main([*common, "--product-dtype", "float16"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "invalid choice: 'float16'" in err, err


def test_cli_ema_decay_ends_with_the_weight_average(tmp_path, capsys):
    common = ["--model", "digits_cnn", "--k", "16", "--kernel", "learned_projection", "--epochs", "2",
              "--no-augment", "--quiet", "--threads", "1", "--blend-fraction", "0.5"]  # fmt: skip
    path = tmp_path / "ema.pt"
    summary = finetune.main([*common, "--ema-decay", "0.9", "--checkpoint", str(path)])
    ckpt = load_checkpoint(path)
    assert summary["ema_decay"] == 0.9 and ckpt["train_config"]["ema_decay"] == 0.9
    # the second epoch is fully hashed: its steps are averaged, and both accuracies are logged
    assert ckpt["weight_average"]["updates"] == summary["steps"] // 2
    last = ckpt["history"][-1]
    assert (last["val_accuracy_ema"], last["val_accuracy"]) == (
        summary["final_accuracy"],
        summary["final_live_accuracy"],
    )
    # the checkpoint holds the average: a warm start from it scores the run's final accuracy
    assert _warm_start(common, "--quiet", path)["initial_accuracy"] == summary["final_accuracy"]
    with pytest.raises(SystemExit) as exit_info:
        finetune.main([*common, "--ema-decay", "1"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "ema_decay must be in [0, 1), got 1.0" in err, err


_CENTER, _THRESHOLDS, _TILES = "--center-inputs", "--comparator-thresholds", "--input-tile-size"
_SIMHASH_KERNELS = "random_projection or learned_projection"


@pytest.mark.parametrize(
    ("flag", "extra", "message"),
    [
        (_CENTER, ["--conventional"], f"--center-inputs needs --kernel {_SIMHASH_KERNELS}"),
        (_CENTER, ["--kernel", "product_quantization"],
         "center_inputs needs a SimHash kernel (random_projection"),
        (_CENTER, ["--fit-projections", "0.9"], "--center-inputs and --fit-projections exclude each other"),
        (_THRESHOLDS, ["--conventional"], f"--comparator-thresholds needs --kernel {_SIMHASH_KERNELS}"),
        (_THRESHOLDS, ["--kernel", "product_quantization"], "comparator_thresholds needs a SimHash kernel"),
        (_TILES, ["4", "--conventional"], f"--input-tile-size needs --kernel {_SIMHASH_KERNELS}"),
        (_TILES, ["4", "--kernel", "product_quantization"], "kernel 'product_quantization' does not tile"),
        (_TILES, ["0"], "--input-tile-size: must be a positive integer, got '0'"),
    ],
)  # fmt: skip
def test_cli_rejects_simhash_options_where_they_cannot_apply(flag, extra, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--model", "digits_cnn", "--epochs", "1", "--quiet", flag, *extra])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err


def test_cli_holdout_is_the_last_training_images_of_another_root(tmp_path, monkeypatch, capsys):
    from aimc_lsh.data import load_dataset, resolve_data_root
    from tests.data.conftest import write_cifar10

    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    write_cifar10(tmp_path / "trained")
    write_cifar10(tmp_path / "other", n_per_batch=(4, 4, 4, 4, 5))
    trained = resolve_data_root("cifar10", tmp_path / "trained")  # as main resolves the training root
    parser = finetune.build_parser()
    args = parser.parse_args(["--final-bn-images", "8", "--holdout-root", str(tmp_path / "other"),
                              "--holdout-images", "6"])  # fmt: skip
    holdout = finetune.held_out_images(parser, args, "cifar10", trained, False)
    full = load_dataset("cifar10", root=tmp_path / "other", train=True)
    assert torch.equal(holdout.images, full.images[-6:]) and torch.equal(holdout.labels, full.labels[-6:])
    for extra, message in (
        (["--holdout-images", "22"], "--holdout-images 22:"),  # the other root holds 21 training images
        (["--holdout-root", str(tmp_path / "trained")], "is the training root"),
    ):
        args = parser.parse_args(
            ["--final-bn-images", "8", "--holdout-root", str(tmp_path / "other"), *extra]
        )
        with pytest.raises(SystemExit) as exit_info:
            finetune.held_out_images(parser, args, "cifar10", trained, False)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
