"""Every study that writes a results file refuses an unwritable path in one line, before any work."""

import importlib.util
import sys

import pytest

from tests.studies.conftest import STUDIES

sys.path.insert(0, str(STUDIES))  # recovery_table imports finetune as a sibling script


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", STUDIES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# (study, fixed arguments, option naming a results file); digits / tiny settings, never reached anyway
CASES = [
    ("finetune", ["--model", "digits_cnn", "--k", "16", "--epochs", "1"], "--checkpoint"),
    ("finetune", ["--model", "digits_cnn", "--k", "16", "--epochs", "1"], "--log-csv"),
    ("finetune", ["--model", "digits_cnn", "--k", "16", "--epochs", "1"], "--summary-json"),
    ("projection_init", ["--model", "digits_cnn", "--k", "16"], "--out"),
    ("projection_init", ["--model", "digits_cnn", "--k", "16"], "--write-init"),
    ("hardware_demo", ["--limit", "8"], "--out"),
    ("evaluate_backbone", ["--limit", "8"], "--json"),
]


def _refused(study: str, argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        _load(study).main(argv)
    captured = capsys.readouterr()
    assert stop.value.code == 2 and "Traceback" not in captured.err, captured.err
    assert captured.out == ""  # nothing was trained, evaluated or printed
    return captured.err.strip().splitlines()[-1]


@pytest.mark.parametrize(("study", "argv", "option"), CASES)
def test_a_folder_given_for_a_results_file_is_refused_before_any_work(study, argv, option, tmp_path, capsys):
    line = _refused(study, [*argv, option, str(tmp_path)], capsys)
    assert f"{option} {tmp_path} is a folder; give a file name" in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("study", "argv", "option"), CASES)
def test_a_results_file_below_a_file_is_refused_before_any_work(study, argv, option, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    line = _refused(study, [*argv, option, str(blocker / "sub" / "out.csv")], capsys)
    assert f"{blocker} is a file, so no folder can be made there" in line, line


def test_merge_neurons_checks_out_before_any_work(tmp_path, capsys):
    with pytest.raises(ValueError, match=f"--out {tmp_path} is a folder; give a file name"):
        _load("merge_neurons").main(["--dataset", "digits", "--out", str(tmp_path)])
    assert capsys.readouterr().out == ""


def test_recovery_table_refuses_a_file_as_its_output_folder(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("x")
    with pytest.raises(SystemExit) as stop:
        _load("recovery_table").main(
            ["--data-root", str(tmp_path), "--out", str(blocker), "--rows", "conv-fp32", "--bn-images", "0"]
        )
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "exists and is not a folder" in err and "Traceback" not in err, err
