"""Bad inputs exit non-zero with one clear line, before any point is computed."""

import subprocess

import pytest

from aimc_lsh.studies import adc, drift, ksweep, noise
from tests.studies.conftest import REPO, script

CASES = [
    (["--device", "nosuchdevice"], "unknown device 'nosuchdevice'; available:"),
    (["--times="], "the time list is empty"),
    (["--times=-1h"], "time '-1h' is negative"),
    (["--times", "1s,1h,1s"], "repeats a value"),
    (["--times", "0"], "must all be > 0"),
    (["--times", "1 fortnight"], "cannot read time"),
    (["--seeds", "-3"], "seed -3 is below the minimum 0"),
    (["--placements", "diagonal"], "unknown placement diagonal; allowed:"),
    (["--checkpoint", "/no/such/file.pt"], "checkpoint /no/such/file.pt not found"),
    (["--device", "reram_wan2022"], "only has data at t_inference"),
    (["--workers", "0"], "argument --workers: must be a positive integer"),
    (["--hash-length", "0"], "--hash-length must be a positive integer"),
    (["--sa-offset-mv", "-1"], "--sa-offset-mv must be a number >= 0, got -1"),
    (["--sa-noise", "nan"], "--sa-noise must be a number >= 0"),
    (["--sa-full-scale-mv", "0"], "--sa-full-scale-mv must be a number > 0"),
    (["--sa-offset", "0.1", "--sa-offset-mv", "2"], "not allowed with argument"),
    (["--device", "ideal", "--sa-offset-mv", "2"], "device ideal gives no sense_amp.full_scale_mv"),
    (["--recalibrate-bn", "-1"], "--recalibrate-bn must be a number of training images >= 0, got -1"),
    (["--recalibrate-bn", "100000"], "training split has"),
    (["--recalibrate-bn", "64"], "the digits_cnn model has no BatchNorm layers to re-estimate"),
]


@pytest.mark.parametrize("extra, message", CASES)
def test_drift_rejects_bad_input_in_one_line(tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = drift.main(["--dataset", "digits", "--out", str(out), "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("drift_sweep.py: error: ") and message in lines[0], err
    assert not list(out.glob("*.journal.jsonl")) and not list(out.glob("*.csv"))  # nothing computed


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    code = drift.main(["--dataset", "digits", "--out", str(blocker / "sub"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "is not writable" in err


def test_missing_cifar_data_says_how_to_provide_it(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    code = drift.main(["--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "--data-root" in err and "AIMC_LSH_DATA" in err and "--dataset digits" in err
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path / "cache"))  # empty cache, downloads forbidden
    code = drift.main(["--out", str(tmp_path / "o"), "--no-download"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "no CIFAR-10 data" in err and "--no-download" in err and "AIMC_LSH_DATA" in err


@pytest.mark.parametrize("content", [b"", b"hello\n", b"\x80\x02}q\x00(X", bytes(range(256)) * 8])
def test_corrupt_checkpoint_is_named_in_one_line(tmp_path, capsys, content):
    path = tmp_path / "broken.pt"
    path.write_bytes(content)
    out = tmp_path / "out"
    code = drift.main(["--dataset", "digits", "--out", str(out), "--no-progress", "--checkpoint", str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert f"cannot load {path} as a weights-only torch checkpoint: the file is truncated, corrupt" in err
    assert not list(out.glob("*.journal.jsonl"))


def _cifar_with_weights(tmp_path, weights: bytes):
    from tests.data.conftest import write_cifar10

    folder, _, _ = write_cifar10(tmp_path / "data")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "resnet20-12fca82f.th").write_bytes(weights)
    return folder, ["--data-root", str(tmp_path / "data"), "--models-root", str(tmp_path / "models")]


def test_corrupt_cifar_batch_stops_the_study_before_any_point(tmp_path, capsys):
    folder, roots = _cifar_with_weights(tmp_path, b"weights")
    test_batch = folder / "test_batch"
    test_batch.write_bytes(test_batch.read_bytes()[:200])
    code = drift.main(["--out", str(tmp_path / "out"), "--no-progress", "--checkpoint", "none", *roots])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert f"{test_batch} is a truncated or corrupt pickle" in err
    assert not list((tmp_path / "out").glob("*.journal.jsonl"))  # nothing computed


def test_weights_of_another_checksum_stop_the_study_before_any_point(tmp_path, capsys):
    _, roots = _cifar_with_weights(tmp_path, b"not the akamaster weights")
    code = drift.main(["--out", str(tmp_path / "out"), "--no-progress", "--checkpoint", "none", *roots])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "sha256 mismatch for" in err and "resnet20-12fca82f.th: expected 12fca82f" in err
    assert not list((tmp_path / "out").glob("*.journal.jsonl"))


def test_study_without_a_data_root_downloads_cifar_into_the_cache(tmp_path, monkeypatch):
    from aimc_lsh.studies.workload import resolve_source
    from tests.data.conftest import serve_cifar10

    serve_cifar10(tmp_path, monkeypatch)  # the official archive's stand-in, at a file URL
    source = resolve_source("cifar10")
    assert source.data_root == str(tmp_path / "cache" / "data" / "cifar-10-batches-py")
    assert (tmp_path / "cache" / "data" / "cifar-10-batches-py" / "test_batch").is_file()
    assert resolve_source("cifar10", download=False).data_root == source.data_root  # cached now


@pytest.mark.parametrize(
    "study, extra, message",
    [
        (noise, ["--knobs", "loudness"], "unknown knob loudness"),
        (noise, ["--values", "sa_offset=0,x"], "is not a number"),
        (noise, ["--values", "volume=1"], "expected KNOB=V1,V2"),
        (noise, ["--device", "ideal", "--knobs", "prog_noise_scale"], "needs a device with an aihwkit noise"),
        (
            noise,
            ["--device", "ideal", "--knobs", "sa_offset_mv"],
            "device 'ideal' gives no sense_amp.full_scale_mv",
        ),
        (noise, ["--knobs", "sa_noise_mv", "--placements", "conventional"], "nothing to sweep"),
        (noise, ["--time", "1s,1h"], "--time takes one time"),
        (ksweep, ["--hash-lengths", "64,0"], "hash length 0 is below the minimum 1"),
        (ksweep, ["--checkpoint", "some.pt"], "checkpoint some.pt not found"),
        (adc, ["--bits", "0"], "outside 1..24"),
        (adc, ["--bits", "4,many"], "not an integer or 'ideal'"),
    ],
)
def test_sibling_studies_reject_bad_input(tmp_path, capsys, study, extra, message):
    code = study.main(["--dataset", "digits", "--out", str(tmp_path), "--no-progress", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and message in err, err


def test_real_process_exit_status(tmp_path):
    done = subprocess.run(
        [
            *script("drift_sweep.py"),
            "--dataset",
            "digits",
            "--device",
            "nosuchdevice",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "unknown device 'nosuchdevice'" in done.stderr


@pytest.mark.parametrize("module", [drift, noise, ksweep, adc])
def test_help_documents_every_option(module, capsys):
    assert module.main(["--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--device",
        "--seeds",
        "--out",
        "--workers",
        "--ray-address",
        "--checkpoint",
        "--data-root",
    ):
        assert option in text
    for action in module.build_parser()._actions:
        assert action.help and len(action.help) > 15, action.option_strings
