"""studies/recovery_table.py on the real CIFAR-10 exact subset: rows, table, skip, re-evaluation."""

import json
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))

import recovery_table  # noqa: E402
from recovery_table import ROWS  # noqa: E402

from tests.shared_files import DATA, MODELS, needs_data_and_models  # noqa: E402


@pytest.mark.slow
@needs_data_and_models
def test_rows_table_skip_and_reevaluation(tmp_path):
    torch.set_num_threads(1)
    weights = os.path.join(MODELS, "akamaster_resnet20-12fca82f.th")
    common = [
        "--data-root",
        DATA,
        "--weights",
        weights,
        "--out",
        str(tmp_path),
        "--budget",
        "1",
        "--epochs",
        "0.013",
    ]  # fmt: skip  (0.013 epochs of 5,085 images in batches of 64: one step)
    recovery_table.main([*common, "--rows", "rp-k64", "conv-fp32"])
    hashed = json.loads((tmp_path / "rp-k64.json").read_text())
    fp32 = json.loads((tmp_path / "conv-fp32.json").read_text())
    assert hashed["steps"] == 1 and hashed["steps_per_epoch"] == 5085 // 64
    assert hashed["k"] == "64" and 0.0 <= hashed["final_accuracy"] <= 1.0
    assert "pcm_1day_codes_on_array" not in hashed  # only the k = 256 and conventional rows go on PCM
    assert fp32["final_accuracy"] == pytest.approx(0.9164, abs=1e-3) and fp32["steps"] == 0
    assert fp32["pcm_drift_reference"] == "random_sign"
    on_pcm = fp32["pcm_1day_conventional"]
    assert on_pcm["repeats"] == 2 and 0.5 < on_pcm["mean"] < fp32["final_accuracy"]  # measured 79-80%
    recalibrated = fp32["pcm_1day_recalibrated"]  # BatchNorm re-estimated through the drifted arrays
    assert fp32["pcm_recalibration"] == {"placement": "conventional", "images": 1024}
    assert recalibrated["repeats"] == 2 and recalibrated["mean"] > on_pcm["mean"] + 0.03  # measured 87-88%
    table = (tmp_path / "recovery_table.md").read_text().splitlines()
    assert table[0].startswith("| row | kernel | k |") and len(table) == 4
    assert table[2].startswith("| rp-k64 | random_projection | 64 |")
    assert table[3].startswith("| conv-fp32 | conventional | - |") and "91.64" in table[3]

    # finished rows are skipped, unless --reevaluate asks for their PCM evaluation again
    fp32["pcm_1day_conventional"] = {"mean": -1.0, "std": 0.0, "repeats": 0}
    (tmp_path / "conv-fp32.json").write_text(json.dumps(fp32))
    recovery_table.main([*common, "--rows", "conv-fp32"])
    assert json.loads((tmp_path / "conv-fp32.json").read_text())["pcm_1day_conventional"]["mean"] == -1.0
    recovery_table.main([*common, "--rows", "conv-fp32", "--reevaluate"])
    again = json.loads((tmp_path / "conv-fp32.json").read_text())
    figures = ("mean", "std", "repeats")
    assert [again["pcm_1day_conventional"][f] for f in figures] == [on_pcm[f] for f in figures]  # same seeds
    assert again["steps"] == fp32["steps"] and again["cpu_s"] == fp32["cpu_s"]  # training figures kept

    with pytest.raises(SystemExit):
        recovery_table.main([*common, "--rows", "rp-k512"])


@pytest.mark.parametrize("count", ["-1", "5086"])  # the exact subset has 5,085 training images
@needs_data_and_models
def test_bad_bn_image_count_stops_before_training(tmp_path, count, capsys):
    with pytest.raises(SystemExit):
        recovery_table.main(
            ["--data-root", DATA, "--out", str(tmp_path), "--rows", "conv-ft", "--bn-images", count]
        )
    assert "--bn-images" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_a_row_with_a_bn_refresh_needs_a_holdout_root_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit):
        recovery_table.main(
            ["--data-root", "data", "--out", str(tmp_path), "--rows", "lp-k256-lrp3e-4-skip-b8-t4-ema-bnr"]
        )
    assert "need --holdout-root" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_refresh_columns_show_the_accuracy_before_and_the_holdout_decision():
    row = {"row": "x", "kernel": "learned_projection", "k": "256", "steps": 10, "final_accuracy": 0.88,
           "accuracy_before_bn_refresh": 0.87, "bn_refresh": {"kept": True, "holdout_before": 0.801,
                                                              "holdout_after": 0.8125}}  # fmt: skip
    rejected = {**row, "bn_refresh": {**row["bn_refresh"], "kept": False}}
    _, csv = recovery_table.table([row, rejected, {"row": "y", "steps": 0}])
    cells = [line.split(",") for line in csv.splitlines()[1:]]
    before, decision = (
        recovery_table.COLUMNS.index(c) for c in ("before_bn_refresh_%", "bn_refresh_holdout_%")
    )
    assert [c[before] for c in cells] == ["87.00", "87.00", ""]
    assert [c[decision] for c in cells] == ["kept 80.10 -> 81.25", "rejected 80.10 -> 81.25", ""]


def test_epochs_column_uses_each_rows_epoch_length():
    """A row trained on another set (e.g. the 50,000-image JPEG set) counts its own epochs."""
    row = {"row": "lp-k256", "kernel": "learned_projection", "k": "256", "steps": 1562, "elapsed_s": 60.0}
    _, csv = recovery_table.table([{**row, "steps_per_epoch": 50_000 // 64}, row])
    epochs = [line.split(",")[recovery_table.COLUMNS.index("epochs")] for line in csv.splitlines()[1:]]
    assert epochs == ["2.0", "19.8"]  # 1562 / 781; a record without the field: the exact subset, 1562 / 79


def test_every_row_is_a_valid_finetune_command(tmp_path):
    """Each row's command line parses with studies/finetune.py's own parser, with the row's settings."""
    import argparse

    import finetune

    args = argparse.Namespace(
        data_root="data", train_root=None, weights="w.th", threads=1, recipe="blend_kd", epochs=100.0,
        seed=0, budget=34.2857, holdout_root="jpeg",
    )  # fmt: skip
    parsed = {n: finetune.build_parser().parse_args(recovery_table.row_argv(n, args, tmp_path)) for n in ROWS}
    skip = parsed["lp-k256-lrp3e-4-skip"]
    assert skip.skip == ["conv1", "linear"] and skip.lr_projection == 3e-4
    assert skip.kernel == "learned_projection" and skip.k == "256"
    assert skip.time_budget == pytest.approx(60.0, abs=1e-3)  # the k = 256 rows get 1.75x the budget
    assert parsed["lp-k256"].skip == [] and parsed["lp-k256"].lr_projection is None
    small = parsed["lp-k256-lrp3e-4-skip-b16"]
    assert small.batch_size == 16 and small.skip == skip.skip and small.lr_projection == skip.lr_projection
    assert skip.batch_size is None and small.time_budget == pytest.approx(60.0, abs=1e-3)
    b8 = parsed["lp-k256-lrp3e-4-skip-b8"]
    assert b8.batch_size == 8 and b8.skip == skip.skip and b8.lr_projection == skip.lr_projection
    assert b8.time_budget == pytest.approx(60.0, abs=1e-3)
    tiled = parsed["lp-k256-lrp3e-4-skip-b8-t16"]
    assert tiled.input_tile_size == 16 and tiled.batch_size == 8 and tiled.skip == skip.skip
    averaged = parsed["lp-k256-lrp3e-4-skip-b8-t16-ema"]
    assert averaged.input_tile_size == 16 and averaged.ema_decay == 0.999 and averaged.k == "256"
    assert averaged.batch_size == 8 and averaged.lr_projection == skip.lr_projection
    small_k = parsed["lp-k64-lrp3e-4-skip-b8-t4-ema"]
    assert small_k.k == "64" and small_k.input_tile_size == 4 and small_k.ema_decay == 0.999
    assert small_k.skip == skip.skip and small_k.time_budget == pytest.approx(60.0, abs=1e-3)
    smaller_tiles = (
        ("lp-k256-lrp3e-4-skip-b8-t8-ema", "256", 8),
        ("lp-k64-lrp3e-4-skip-b8-t2-ema", "64", 2),
        ("lp-k256-lrp3e-4-skip-b8-t4-ema", "256", 4),
        ("lp-k64-lrp3e-4-skip-b8-t1-ema", "64", 1),
    )
    for name, k, tile in smaller_tiles:
        small_tiles = parsed[name]
        assert small_tiles.k == k and small_tiles.input_tile_size == tile and small_tiles.ema_decay == 0.999
        assert small_tiles.batch_size == 8 and small_tiles.time_budget == pytest.approx(60.0, abs=1e-3)
    assert b8.input_tile_size is None and b8.ema_decay is None  # the shared settings list is not mutated
    refreshed = parsed["lp-k256-lrp3e-4-skip-b8-t4-ema-bnr"]
    assert refreshed.final_bn_images == 5085 and refreshed.holdout_root == "jpeg"
    assert refreshed.input_tile_size == 4 and refreshed.ema_decay == 0.999 and refreshed.batch_size == 8
    assert parsed["lp-k256-lrp3e-4-skip-b8-t4-ema"].final_bn_images is None  # the rows' lists are their own
    for tile in (4, 2):
        name = f"lp-k256-lrp3e-4-skip-b8-t{tile}-ema-bf16"
        bf16 = parsed[name]
        assert bf16.product_dtype == "bfloat16" and bf16.input_tile_size == tile and bf16.ema_decay == 0.999
        assert bf16.batch_size == 8 and bf16.k == "256" and bf16.time_budget == pytest.approx(60.0, abs=1e-3)
    assert all(p.product_dtype is None for n, p in parsed.items() if not n.endswith("-bf16"))
    assert all(p.holdout_root is None for n, p in parsed.items() if not n.endswith("-bnr"))
    fit = parsed["rp-k256-fit"]
    assert fit.fit_projections == 0.9 and fit.fit_only_where_better and fit.orthogonal
    assert fit.kernel == "random_projection"
    assert fit.skip == [] and fit.time_budget == pytest.approx(60.0, abs=1e-3)
    assert not parsed["rp-k256"].orthogonal and parsed["rp-k256"].fit_projections is None
    assert parsed["rp-k64"].time_budget == pytest.approx(34.2857)
    assert parsed["conv-hwa"].conventional and parsed["conv-hwa"].device_profile == "pcm"
    assert parsed["conv-fp32"].epochs == 0 and parsed["conv-fp32"].recipe == "ce"
    assert parsed["rp-k256-long"].init_from == str(tmp_path / "rp-k256.pt")
    assert all(p.checkpoint == str(tmp_path / f"{n}.pt") and p.resume for n, p in parsed.items())
