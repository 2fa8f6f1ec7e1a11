import logging
import subprocess
import sys
import time

import pytest
import torch

from aimc_lsh.data import CALIBRATION_IMAGES, load_dataset
from aimc_lsh.kernels import HashConfig
from aimc_lsh.models import get_backbone
from aimc_lsh.nn import fit_projections, hashed_layers, patch_model
from aimc_lsh.train import (
    TrainConfig,
    default_checkpoint,
    default_checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    training_finished,
    training_progress,
)
from aimc_lsh.train.default import DEFAULT_FIT_ENERGY


def test_default_checkpoint_trains_once_then_reuses_the_cache(tmp_path):
    config = TrainConfig.for_recipe("kd", epochs=1.0, batch_size=128, augment=False, progress=False)
    kwargs = dict(backbone="digits_cnn", hash_length=32, config=config, cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="no cached checkpoint"):
        default_checkpoint(train=False, **kwargs)
    path = default_checkpoint(**kwargs)
    assert path == default_checkpoint_path(**kwargs) and path.parent == tmp_path / "checkpoints"
    ckpt = load_checkpoint(path)
    assert (
        ckpt["final"]
        and ckpt["backbone"] == "digits_cnn"
        and ckpt["layers"]["fc"]["config"]["hash_length"] == 32
    )
    stamp = path.stat().st_mtime_ns
    assert default_checkpoint(**kwargs) == path and path.stat().st_mtime_ns == stamp
    other = default_checkpoint_path(**{**kwargs, "config": config.replace(lr_weights=5e-4)})
    assert other != path


def test_default_checkpoint_draws_orthogonal_projections_inside_the_input_subspace(tmp_path):
    config = TrainConfig.for_recipe("kd", epochs=0.0, batch_size=128, augment=False, progress=False)
    kwargs = dict(backbone="digits_cnn", hash_length=16, config=config, cache_dir=tmp_path)
    model = model_from_checkpoint(default_checkpoint(**kwargs))
    # the same fit by hand: first 512 training images, unaugmented, orthogonal rows, the layers' seeds
    expected = patch_model(get_backbone("digits_cnn"), HashConfig(hash_length=16, orthogonal=True))
    images = load_dataset("digits", train=True).tensors()[0][:CALIBRATION_IMAGES]
    bases = fit_projections(expected, images, energy=DEFAULT_FIT_ENERGY, only_where_better=True)
    layers = dict(hashed_layers(model))
    assert set(layers) == set(bases) and all(layer.config.orthogonal for layer in layers.values())
    ranks = {path: basis.shape[1] for path, (basis,) in bases.items()}
    assert any(0 < r < layers[p].weight_tile(0, 0).shape[1] for p, r in ranks.items()), ranks  # a proper fit
    for path, layer in hashed_layers(expected):
        torch.testing.assert_close(layers[path].kernel(0, 0).P, layer.kernel(0, 0).P)
    gaussian = default_checkpoint_path(**kwargs, fit_energy=None)
    assert gaussian != default_checkpoint_path(**kwargs) != default_checkpoint_path(**kwargs, fit_energy=0.5)


def test_default_checkpoint_fit_energy_is_checked_and_ignored_without_a_projection(tmp_path):
    for bad in (0.0, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match=r"fit_energy must be a fraction in \(0, 1\]"):
            default_checkpoint_path(cache_dir=tmp_path, fit_energy=bad)
    pq = dict(kernel="product_quantization", hash_length=8, cache_dir=tmp_path)
    assert default_checkpoint_path(**pq) == default_checkpoint_path(**pq, fit_energy=None)


def _digits_default(tmp_path):
    config = TrainConfig.for_recipe("kd", epochs=1.0, batch_size=128, augment=False, progress=False)
    return dict(backbone="digits_cnn", hash_length=16, config=config, cache_dir=tmp_path)


def test_an_unfinished_default_checkpoint_is_finished_not_used(tmp_path):
    kwargs = _digits_default(tmp_path)
    path = default_checkpoint(**kwargs)
    planned = load_checkpoint(path)["planned_steps"]
    assert training_progress(path) == (True, planned, planned)
    assert training_progress(tmp_path / "none.pt") is None
    interrupted = {**load_checkpoint(path), "final": False, "step": 2}  # as a run stopped after 2 steps
    torch.save(interrupted, path)
    assert not training_finished(path) and not training_finished(tmp_path / "none.pt")
    with pytest.raises(FileNotFoundError, match=rf"{path.name} is unfinished \(step 2 of {planned}"):
        default_checkpoint(train=False, **kwargs)
    assert default_checkpoint(**kwargs) == path  # resumed from step 2 and completed
    assert training_progress(path) == (True, planned, planned) and training_finished(path)


def test_a_second_caller_waits_for_the_training_in_progress_and_uses_its_result(tmp_path, caplog):
    finished = default_checkpoint(**_digits_default(tmp_path / "a"))
    kwargs = _digits_default(tmp_path / "b")
    path = default_checkpoint_path(**kwargs)
    path.parent.mkdir(parents=True)
    ready = tmp_path / "ready"
    # another process "training" it: holds the lock, then leaves the finished file and exits
    script = (
        "import fcntl, os, shutil, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "open(sys.argv[2], 'w').close()\n"
        "time.sleep(1.0)\n"
        "shutil.copyfile(sys.argv[3], sys.argv[4])\n"
    )
    lock = path.with_name(path.name + ".lock")
    argv = [sys.executable, "-c", script, str(lock), str(ready), str(finished), str(path)]
    trainer = subprocess.Popen(argv)
    while not ready.exists():
        assert trainer.poll() is None, "the other process did not start"
        time.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="aimc_lsh.train.default"):
        assert default_checkpoint(**kwargs) == path
    assert path.read_bytes() == finished.read_bytes()  # the other process's file, not trained again here
    assert "waiting for another process that is training" in caplog.text
    assert trainer.wait(60) == 0
