"""Smoke test of studies/evaluate_backbone.py (the CLI around evaluate / bitbybit_score)."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "studies" / "evaluate_backbone.py"


def _load():
    spec = importlib.util.spec_from_file_location("evaluate_backbone", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_on_digits_with_hashing(tmp_path, capsys):
    out = tmp_path / "res.json"
    results = _load().main(
        ["--backbone", "digits_cnn", "--hash-length", "2", "64", "--no-progress", "--json", str(out)]
    )
    printed = capsys.readouterr().out
    assert "digits_cnn FP32: accuracy" in printed and "on 449 images" in printed
    assert results["n_images"] == 449 and results["fp32_accuracy"] > 0.95
    k2, k64 = results["hashed"]
    assert k2["score"] is None  # k = 2 < 10 outputs: HDOPs < FLOPs, not scored
    assert k64["score"] is not None and 0.0 <= k64["score"] <= 1.0
    assert json.loads(out.read_text()) == results


def test_cli_reports_missing_data(tmp_path, monkeypatch):
    monkeypatch.delenv("AIMC_LSH_DATA", raising=False)
    monkeypatch.setenv("AIMC_LSH_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError):
        _load().main(["--no-download", "--weights", str(tmp_path)])


def test_cli_fetches_cifar_into_the_cache_but_never_into_a_named_folder(tmp_path, monkeypatch):
    from tests.data.conftest import serve_cifar10

    serve_cifar10(tmp_path, monkeypatch)  # the official archive's stand-in, at a file URL; empty cache
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found"):
        _load().main(["--data-root", str(tmp_path / "named"), "--no-progress"])
    assert not (tmp_path / "named").exists()
    results = _load().main(["--no-progress"])  # no root: fetched into the cache, verified, evaluated
    assert results["n_images"] == 9
    assert (tmp_path / "cache" / "data" / "cifar-10-batches-py" / "test_batch").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--threads", "0"], "argument --threads: must be a positive integer, got '0'"),
        (["--hash-length", "64", "-5"], "argument --hash-length: must be a positive integer, got '-5'"),
        (["--limit", "0"], "argument --limit: must be a positive integer, got '0'"),
        (["--batch-size", "abc"], "argument --batch-size: must be a positive integer, got 'abc'"),
    ],
)
def test_cli_rejects_non_positive_counts_as_usage_errors(extra, message, capsys):
    with pytest.raises(SystemExit) as stop:
        _load().main(["--backbone", "digits_cnn", "--no-progress", *extra])
    assert stop.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--kernel", "simhash"], "unknown kernel 'simhash'; registered kernels: "),
        (["--skip", "conv9"], "skip names no Linear/Conv2d layer: conv9; patchable layers: "),
    ],
)
def test_cli_checks_kernel_and_skip_before_evaluating(extra, message, capsys):
    with pytest.raises(ValueError, match=message):
        _load().main(["--backbone", "digits_cnn", "--no-progress", "--hash-length", "16", *extra])
    assert "accuracy" not in capsys.readouterr().out  # nothing was evaluated
