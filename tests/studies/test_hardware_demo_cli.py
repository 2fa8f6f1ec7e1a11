"""studies/hardware_demo.py: bad options stop with one line and exit status 2 before anything is evaluated."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "studies"))

import hardware_demo  # noqa: E402

from tests.shared_files import needs_data_and_models  # noqa: E402


def _usage_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        hardware_demo.main(["--limit", "8", "--seeds", "1", *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--device", "flash"], "unknown device 'flash'; available: "),
        (["--device", "/no/such/device.yaml"], "device file /no/such/device.yaml does not exist"),
        (["--checkpoint", "/no/such/run.pt"], "no checkpoint at /no/such/run.pt"),
        (["--hash-length", "0"], "argument --hash-length: must be a positive integer, got '0'"),
        (["--seeds", "0"], "argument --seeds: must be a positive integer, got '0'"),
        (["--limit", "-1"], "argument --limit: must be a positive integer, got '-1'"),
        (["--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
        (["--batch-size", "x"], "argument --batch-size: must be a positive integer, got 'x'"),
    ],
)
def test_bad_options_are_named_in_one_line(extra, message, capsys):
    line = _usage_error(extra, capsys)
    assert line.startswith("hardware_demo.py: error: ") and message in line, line


def test_a_corrupt_checkpoint_is_named(tmp_path, capsys):
    path = tmp_path / "run.pt"
    path.write_bytes(b"\x80\x02}q\x00(X")
    line = _usage_error(["--checkpoint", str(path)], capsys)
    assert f"cannot load {path} as a weights-only torch checkpoint: the file is truncated, corrupt" in line


@needs_data_and_models
def test_unknown_kernel_and_corrupt_data_are_named(tmp_path, capsys):
    from tests.data.conftest import write_cifar10

    line = _usage_error(["--kernel", "simhash"], capsys)
    assert "unknown kernel 'simhash'; registered kernels: " in line, line
    folder, _, _ = write_cifar10(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x04")
    line = _usage_error(["--data-root", str(tmp_path)], capsys)
    assert f"{folder / 'test_batch'} is a truncated or corrupt pickle" in line, line


def test_bitbybit_scores_score_the_hashed_models_at_their_drop():
    import math

    import torch
    from torch import nn

    from aimc_lsh.eval import bitbybit_score
    from aimc_lsh.hardware import HardwareConfig, program
    from aimc_lsh.nn import patch_model
    from aimc_lsh.nn.conventional import convert_conventional

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(54, 3))
    hashed = program(patch_model(net, HardwareConfig(hash_length=16, device="pcm")), seed=0)
    models = {
        "hashed": hashed,
        "hashed, no drop given": hashed,
        "conventional": program(convert_conventional(net, HardwareConfig(placement="conventional")), seed=0),
    }
    scores = hardware_demo.bitbybit_scores(models, {"hashed": 0.05, "conventional": 0.0})
    assert scores["hashed"] == bitbybit_score(hashed, 0.05) > 0
    assert math.isnan(scores["hashed, no drop given"]) and math.isnan(scores["conventional"])
    assert (
        hardware_demo.bitbybit_scores({"hashed": hashed}, {"hashed": 0.2})["hashed"] == 0.0
    )  # past δ = 0.15
