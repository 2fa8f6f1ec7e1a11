import pytest

from aimc_lsh.train import TrainConfig, default_checkpoint, default_checkpoint_path, load_checkpoint


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
