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
