"""The drift study end to end on the digits benchmark: outputs, resume after a real kill, backends."""

import json
import signal
import subprocess
import time

import pandas as pd
import pytest

from aimc_lsh.studies.drift import main
from tests.studies.conftest import DRIFT_ARGS, DRIFT_CSV, DRIFT_POINTS, REPO, script


def test_outputs_are_tidy_and_complete(drift_reference):
    _, out = drift_reference
    frame = pd.read_csv(out / DRIFT_CSV)
    assert len(frame) == DRIFT_POINTS * 3  # one row per placement x compensation x seed x time
    for column in ("placement", "drift_compensation", "program_seed", "t_seconds", "t_label", "accuracy",
                   "n_images", "device.name", "device.noise_params.prog_noise_scale", "adc.bits",
                   "sense_amp.offset_std", "hash_length", "checkpoint", "dataset"):  # fmt: skip
        assert column in frame.columns, column
    assert set(frame["t_label"]) == {"1s", "1d", "1y"}
    assert set(frame["placement"]) == {"codes_on_array", "conventional"}
    assert (frame["n_images"] == 449).all() and frame["accuracy"].between(0, 1).all()
    hashed = frame[frame["placement"] == "codes_on_array"]
    assert hashed["hash_length"].eq(256).all() and hashed["checkpoint"].str.startswith("digits_cnn").all()
    assert frame[frame["placement"] == "conventional"]["hash_length"].isna().all()
    # the fine-tuned hashed model is far above chance and below the digital baseline
    assert 0.5 < hashed["accuracy"].mean() < frame[frame["placement"] == "conventional"]["accuracy"].mean()
    # seeds differ: programming noise is really drawn per seed
    first = frame[(frame["placement"] == "conventional") & (frame["t_label"] == "1y")]
    assert first["accuracy"].nunique() > 1
    meta = json.loads((out / "drift_pcm_digits.json").read_text())
    assert meta["status"] == "complete" and meta["config"]["times_seconds"] == [1.0, 86400.0, 31536000.0]
    assert meta["config"]["device"]["name"] == "pcm" and meta["provenance"]["versions"]["aihwkit"]
    assert meta["provenance"]["git"]["revision"] is not None
    assert (out / "drift_pcm_digits.png").read_bytes()[:4] == b"\x89PNG"


def test_same_seed_same_numbers_on_rerun(tmp_path, drift_reference):
    reference, _ = drift_reference
    assert main([*DRIFT_ARGS, "--workers", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / DRIFT_CSV).read_bytes() == reference


def _journal_lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.parametrize("signum, workers", [(signal.SIGINT, "2"), (signal.SIGTERM, "1")])
def test_killed_sweep_resumes_to_the_same_csv(tmp_path, drift_reference, signum, workers):
    reference, _ = drift_reference
    journal = tmp_path / "drift_pcm_digits.journal.jsonl"
    command = [*script("drift_sweep.py"), *DRIFT_ARGS, "--workers", workers, "--out", str(tmp_path)]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while _journal_lines(journal) < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    done = _journal_lines(journal)
    assert process.returncode == 128 + signum, stderr
    assert 1 <= done < DRIFT_POINTS, f"the sweep was not interrupted halfway ({done} points)"
    assert "rerun the same command" in stderr.strip().splitlines()[-1]
    partial = pd.read_csv(tmp_path / DRIFT_CSV)
    assert len(partial) == 3 * done  # the CSV holds exactly the finished points
    assert json.loads((tmp_path / "drift_pcm_digits.json").read_text())["status"] == "interrupted"
    # resume: only the missing points are computed and the CSV equals the uninterrupted run's
    assert main([*DRIFT_ARGS, "--workers", "1", "--out", str(tmp_path)]) == 0
    meta = json.loads((tmp_path / "drift_pcm_digits.json").read_text())
    assert (meta["resumed_points"], meta["computed_points"]) == (done, DRIFT_POINTS - done)
    assert (tmp_path / DRIFT_CSV).read_bytes() == reference
    assert _journal_lines(journal) == DRIFT_POINTS  # no duplicates


@pytest.mark.slow
def test_two_worker_processes_give_the_serial_csv(tmp_path, drift_reference):
    reference, _ = drift_reference
    assert main([*DRIFT_ARGS, "--workers", "2", "--out", str(tmp_path)]) == 0
    assert (tmp_path / DRIFT_CSV).read_bytes() == reference


@pytest.mark.slow
def test_local_ray_instance_gives_the_serial_csv(tmp_path, drift_reference):
    pytest.importorskip("ray")
    reference, _ = drift_reference
    assert main([*DRIFT_ARGS, "--workers", "2", "--ray-address", "local", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "drift_pcm_digits.json").read_text())["backend"]["kind"] == "ray"
    assert (tmp_path / DRIFT_CSV).read_bytes() == reference
